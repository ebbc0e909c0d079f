"""Every TLS listener clients use serves a certificate with more than the renewal margin left, and
no two nodes serve the same key.

Read on the wire, from outside, as a client sees it (a service not reloaded after a renewal still
serves the old certificate): the SFU's signalling front (443), coturn's TLS listeners (443, 5349) and
PostgreSQL (5432, after its SSLRequest). The stack-CA certificate is re-issued only by `pulumi up`
(issue 14: "visio verify warns 30 days ahead"), so this fails 30 days before the end and says what
to run. The chain and the names are checked by the role modules (test_sfu, test_turn, test_db).
Issue 14's "one key per node": whoever takes one node (a TURN node faces the internet) must not hold
a key another node serves, so it cannot pass for the database or the signalling; and each node's
certificate names that node alone (its name and addresses, plus its role's public name).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from visio_infra.cloud.pki import SERVICE_NAMES
from visio_infra.model.certificate_expiry import expiry_problem
from visio_infra.model.security_rules import HTTPS_PORT, POSTGRES_PORT, TURNS_PORT
from visio_infra.probes.served_certificate import served_certificate, served_not_after

ROLES = ("sfu", "turn", "db")


def _listeners(role: str, host: dict, config) -> list[tuple[str, int, str | None, bool]]:
    """(address, port, SNI name, PostgreSQL SSLRequest first) of each TLS listener of a node."""
    public = str(host.get("public_ip") or host["private_ip"])
    if role == "sfu":
        return [(public, HTTPS_PORT, config.domains.signalling, False)]
    if role == "turn":
        return [(public, port, config.domains.turn, False) for port in (HTTPS_PORT, TURNS_PORT)]
    return [(str(host["private_ip"]), POSTGRES_PORT, None, True)]


def test_served_certificates_are_not_near_their_end(node_spec, config, stack):
    role, host = node_spec
    if host is None:
        pytest.fail(f"the stack's inventory has no node of role {role}")
    now = dt.datetime.now(dt.UTC)
    problems = []
    for address, port, name, postgres in _listeners(role, host, config):
        not_after = served_not_after(address, port, server_name=name, postgres=postgres)
        problem = expiry_problem(
            f"{host['name']} {address}:{port}", not_after, now, tls_source=config.tls.source, stack=stack
        )
        if problem:
            problems.append(problem)
    assert not problems, "; ".join(problems)


@pytest.fixture(scope="module")
def served_by_every_node(inventory, config) -> list[tuple[str, dict[str, Any], str, x509.Certificate]]:
    """(role, host, listener, certificate) for every TLS listener of every SFU, TURN and DB node, read
    from the wire once, all at the same time, for both checks below."""
    listeners = [
        (role, host, address, port, name, postgres)
        for role in ROLES
        for host in inventory["groups"].get(role, [])
        for address, port, name, postgres in _listeners(role, host, config)
    ]

    def read(item: tuple[str, dict[str, Any], str, int, str | None, bool]) -> tuple[Any, ...]:
        role, host, address, port, name, postgres = item
        cert = served_certificate(address, port, server_name=name, postgres=postgres)
        return role, host, f"{address}:{port}", cert

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(read, listeners))


def _public_key(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_no_two_nodes_serve_the_same_key(served_by_every_node):
    holders: dict[bytes, set[str]] = {}
    for _role, host, _listener, cert in served_by_every_node:
        holders.setdefault(_public_key(cert), set()).add(host["name"])
    shared = sorted(sorted(nodes) for nodes in holders.values() if len(nodes) > 1)
    assert not shared, (
        f"these nodes serve one and the same key: {shared}; every node needs its own "
        "(tls.source stack-ca issues one per node: run `pulumi up`)"
    )


def test_each_node_certificate_names_that_node_alone(served_by_every_node, config):
    """A node's certificate carries its own name and addresses, and its role's public name only
    (the `domains` field pki.SERVICE_NAMES gives the role), read from the inventory, not from pki."""
    problems = []
    for role, host, listener, cert in served_by_every_node:
        service = SERVICE_NAMES.get(role)
        allowed_dns = {host["name"]} | ({getattr(config.domains, service)} if service else set())
        allowed_ips = {str(host["private_ip"]), str(host.get("public_ip") or host["private_ip"])}
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        extra_dns = set(alt.get_values_for_type(x509.DNSName)) - allowed_dns
        served_ips = {str(ipaddress.ip_address(ip)) for ip in alt.get_values_for_type(x509.IPAddress)}
        extra = sorted(extra_dns | (served_ips - allowed_ips))
        if extra:
            more = f" and {len(extra) - 6} more" if len(extra) > 6 else ""
            problems.append(f"{host['name']} {listener} also names {', '.join(extra[:6])}{more}")
    assert not problems, "; ".join(problems)
