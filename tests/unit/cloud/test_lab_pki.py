"""The stack CA and service certificate: right names and usages, verifiable, re-issued under the same CA."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from visio_infra.cloud.pki import issue_ca, issue_certificate, needs_renewal, not_after, subject_alt_names
from visio_infra.model.stack_file import load_stack_file, stack_file
from visio_infra.model.topology import plan_nodes

NOW = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def lab():
    return load_stack_file(stack_file("lab"))


@pytest.fixture(scope="module")
def sans(lab):
    nodes = plan_nodes(lab, lab.sizing.nodes)
    public = {n.name: (str(n.private_ip) if n.public else None) for n in nodes}
    return subject_alt_names(lab, nodes, public)


def test_sans_cover_service_names_nodes_and_addresses(lab, sans):
    nodes = plan_nodes(lab, lab.sizing.nodes)
    assert {"sfu.lab.visio.test", "turn.lab.visio.test"} <= set(sans["dns"])
    assert {n.name for n in nodes} <= set(sans["dns"])
    # Every node address, DB included: database_url uses sslmode=verify-full on the primary's IP.
    assert sans["ips"] == sorted({str(n.private_ip) for n in nodes}, key=ipaddress.ip_address)


def test_certificate_verifies_against_ca_with_sans(sans):
    ca_pem, ca_key = issue_ca("Visio lab CA", "Visio - lab", NOW)
    cert_pem, key_pem = issue_certificate(ca_pem, ca_key, "Visio - lab", sans, NOW)
    ca = x509.load_pem_x509_certificate(ca_pem.encode())
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    cert.verify_directly_issued_by(ca)
    alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(alt.get_values_for_type(x509.DNSName)) == sans["dns"]
    assert [str(ip) for ip in alt.get_values_for_type(x509.IPAddress)] == sans["ips"]
    # Client auth as well: the DB nodes authenticate to each other's etcd with it.
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert "PRIVATE KEY" in key_pem and isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    # Under the browsers' 398-day ceiling.
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 398


def test_reissue_keeps_the_ca_and_changes_the_key(sans):
    ca_pem, ca_key = issue_ca("Visio lab CA", "Visio - lab", NOW)
    first, first_key = issue_certificate(ca_pem, ca_key, "Visio - lab", sans, NOW)
    more = {"dns": sans["dns"], "ips": [*sans["ips"], "10.77.0.99"]}
    second, second_key = issue_certificate(ca_pem, ca_key, "Visio - lab", more, NOW)
    ca = x509.load_pem_x509_certificate(ca_pem.encode())
    x509.load_pem_x509_certificate(second.encode()).verify_directly_issued_by(ca)
    assert first != second and first_key != second_key


def test_renewal_window():
    ca_pem, ca_key = issue_ca("Visio lab CA", "Visio - lab", NOW)
    cert, _ = issue_certificate(ca_pem, ca_key, "Visio - lab", {"dns": ["a.test"], "ips": []}, NOW)
    assert not needs_renewal(cert, NOW)
    assert needs_renewal(cert, not_after(cert) - dt.timedelta(days=10))
    assert needs_renewal(None, NOW)
