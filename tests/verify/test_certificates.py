"""Every TLS listener clients use serves a certificate with more than the renewal margin left.

Read on the wire, from outside, as a client sees it (a service not reloaded after a renewal still
serves the old certificate): the SFU's signalling front (443), coturn's TLS listeners (443, 5349) and
PostgreSQL (5432, after its SSLRequest). The stack-CA certificate is re-issued only by `pulumi up`
(issue 14: "visio verify warns 30 days ahead"), so this fails 30 days before the end and says what
to run. The chain and the names are checked by the role modules (test_sfu, test_turn, test_db).
"""

from __future__ import annotations

import datetime as dt

import pytest

from visio_infra.model.certificate_expiry import expiry_problem
from visio_infra.model.security_rules import HTTPS_PORT, POSTGRES_PORT, TURNS_PORT
from visio_infra.probes.served_certificate import served_not_after

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
