"""The stack CA and the per-node certificates: right names and usages, one key per node, verifiable,
re-issued under the same CA only for the nodes that need it."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from visio_infra.cloud.pki import (
    _CertificatesProvider,
    issue_ca,
    issue_certificate,
    issue_node_certificates,
    needs_renewal,
    not_after,
    subject_alt_names,
)
from visio_infra.model.stack_file import load_stack_file, stack_file
from visio_infra.model.topology import plan_nodes

NOW = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def lab():
    return load_stack_file(stack_file("lab"))


@pytest.fixture(scope="module")
def nodes(lab):
    return plan_nodes(lab, lab.sizing.nodes)


@pytest.fixture(scope="module")
def sans(lab, nodes):
    public = {n.name: (str(n.private_ip) if n.public else None) for n in nodes}
    return subject_alt_names(lab, nodes, public)


def test_each_node_is_named_with_its_own_addresses_only(lab, nodes, sans):
    assert set(sans) == {n.name for n in nodes}
    for node in nodes:
        # The node name first: it becomes the subject's CN.
        assert sans[node.name]["dns"][0] == node.name
        assert sans[node.name]["ips"] == [str(node.private_ip)]  # the lab's public IP is the private one
    by_role = {n.role: sans[n.name]["dns"] for n in nodes}
    assert by_role["sfu"][1:] == ["sfu.lab.visio.test"]
    assert by_role["turn"][1:] == ["turn.lab.visio.test"]
    # A DB or Redis node answers for no public name: its key cannot pass for the signalling or TURN.
    assert by_role["db"][1:] == [] and by_role["redis"][1:] == []


def test_public_address_is_named_too(lab, nodes):
    turn = next(n for n in nodes if n.role == "turn")
    sans = subject_alt_names(lab, [turn], {turn.name: "192.0.2.40"})
    assert sans[turn.name]["ips"] == [str(turn.private_ip), "192.0.2.40"]


def test_node_certificate_verifies_against_ca_with_its_sans(sans):
    ca_pem, ca_key = issue_ca("Visio lab CA", "Visio - lab", NOW)
    name = next(iter(sans))
    cert_pem, key_pem = issue_certificate(ca_pem, ca_key, "Visio - lab", sans[name], NOW)
    ca = x509.load_pem_x509_certificate(ca_pem.encode())
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    cert.verify_directly_issued_by(ca)
    alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert alt.get_values_for_type(x509.DNSName) == sans[name]["dns"]
    assert [str(ip) for ip in alt.get_values_for_type(x509.IPAddress)] == sans[name]["ips"]
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == name
    # Client auth as well: the DB nodes authenticate to each other's etcd with it.
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert "PRIVATE KEY" in key_pem and isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    # Under the browsers' 398-day ceiling.
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 398


def _public_key(pem: str) -> bytes:
    from cryptography.hazmat.primitives import serialization

    key = x509.load_pem_x509_certificate(pem.encode()).public_key()
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_no_two_nodes_share_a_key(sans):
    ca_pem, ca_key = issue_ca("Visio lab CA", "Visio - lab", NOW)
    issued = issue_node_certificates(ca_pem, ca_key, "Visio - lab", sans, NOW)
    assert set(issued) == set(sans)
    assert len({entry["private_key"] for entry in issued.values()}) == len(sans)
    assert len({_public_key(entry["certificate"]) for entry in issued.values()}) == len(sans)


def test_reissue_touches_only_the_nodes_that_changed_or_are_due(sans):
    ca_pem, ca_key = issue_ca("Visio lab CA", "Visio - lab", NOW)
    first = issue_node_certificates(ca_pem, ca_key, "Visio - lab", sans, NOW)
    moved, kept, *_ = sorted(sans)
    changed = {**sans, moved: {"dns": sans[moved]["dns"], "ips": [*sans[moved]["ips"], "10.77.0.99"]}}
    gone = sorted(sans)[-1]
    del changed[gone]
    second = issue_node_certificates(ca_pem, ca_key, "Visio - lab", changed, NOW, first)
    assert second[kept] == first[kept]  # same key, same certificate
    assert second[moved]["private_key"] != first[moved]["private_key"]
    assert gone not in second
    ca = x509.load_pem_x509_certificate(ca_pem.encode())
    x509.load_pem_x509_certificate(second[moved]["certificate"].encode()).verify_directly_issued_by(ca)
    # A certificate inside the renewal window is re-issued with a new key, the others are kept.
    later = not_after(first[kept]["certificate"]) - dt.timedelta(days=10)
    third = issue_node_certificates(ca_pem, ca_key, "Visio - lab", changed, later, second)
    assert all(third[n]["private_key"] != second[n]["private_key"] for n in changed)


def test_renewal_window():
    ca_pem, ca_key = issue_ca("Visio lab CA", "Visio - lab", NOW)
    cert, _ = issue_certificate(ca_pem, ca_key, "Visio - lab", {"dns": ["a.test"], "ips": []}, NOW)
    assert not needs_renewal(cert, NOW)
    assert needs_renewal(cert, not_after(cert) - dt.timedelta(days=10))
    assert needs_renewal(None, NOW)


def test_provider_diff_is_quiet_when_nothing_is_due_and_copes_with_unknown_sans(sans):
    """A no-op `pulumi up` changes nothing; a preview in which a node is being recreated (its address,
    so the SANs, unknown until it exists) must not fail: a DB drill's rebuild found it did."""
    from pulumi.output import UNKNOWN

    provider = _CertificatesProvider()
    props = {"ca_name": "Visio lab CA", "organisation": "Visio - lab", "sans": sans}
    olds = provider.create(props).outs
    assert not provider.diff("id", olds, dict(props)).changes
    assert provider.diff("id", olds, {**props, "sans": UNKNOWN}).changes
    some = next(iter(sans))
    assert provider.diff("id", olds, {**props, "sans": {**sans, some: UNKNOWN}}).changes
    # The update then keeps every node whose SANs did not change.
    updated = provider.update("id", olds, dict(props)).outs
    assert updated["nodes"] == olds["nodes"] and updated["ca_private_key"] == olds["ca_private_key"]
