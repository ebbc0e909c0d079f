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


def _served_by_every_node(inventory: dict[str, Any], config: Any) -> list[tuple[str, str, x509.Certificate]]:
    """(node name, listener, certificate) for every TLS listener of every SFU, TURN and DB node, read
    from the wire at once."""
    listeners = [
        (host["name"], address, port, name, postgres)
        for role in ROLES
        for host in inventory["groups"].get(role, [])
        for address, port, name, postgres in _listeners(role, host, config)
    ]

    def read(item: tuple[str, str, int, str | None, bool]) -> tuple[str, str, x509.Certificate]:
        node, address, port, name, postgres = item
        cert = served_certificate(address, port, server_name=name, postgres=postgres)
        return node, f"{address}:{port}", cert

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(read, listeners))


def _public_key(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_no_two_nodes_serve_the_same_key(inventory, config):
    holders: dict[bytes, set[str]] = {}
    for node, _listener, cert in _served_by_every_node(inventory, config):
        holders.setdefault(_public_key(cert), set()).add(node)
    shared = sorted(sorted(nodes) for nodes in holders.values() if len(nodes) > 1)
    assert not shared, (
        f"these nodes serve one and the same key: {shared}; every node needs its own "
        "(tls.source stack-ca issues one per node: run `pulumi up`)"
    )


def test_each_node_certificate_names_that_node_alone(inventory, config):
    """A node's certificate carries its own name and addresses, and its role's public name only."""
    service = {"sfu": config.domains.signalling, "turn": config.domains.turn}
    role_of = {h["name"]: role for role in ROLES for h in inventory["groups"].get(role, [])}
    hosts = {h["name"]: h for role in ROLES for h in inventory["groups"].get(role, [])}
    problems = []
    for node, listener, cert in _served_by_every_node(inventory, config):
        host = hosts[node]
        allowed_dns = {node} | ({service[role_of[node]]} if role_of[node] in service else set())
        allowed_ips = {str(host["private_ip"]), str(host.get("public_ip") or host["private_ip"])}
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        extra_dns = set(alt.get_values_for_type(x509.DNSName)) - allowed_dns
        served_ips = {str(ipaddress.ip_address(ip)) for ip in alt.get_values_for_type(x509.IPAddress)}
        extra_ips = served_ips - allowed_ips
        extra = sorted(extra_dns | extra_ips)
        if extra:
            more = f" and {len(extra) - 6} more" if len(extra) > 6 else ""
            problems.append(f"{node} {listener} also names {', '.join(extra[:6])}{more}")
    assert not problems, "; ".join(problems)
