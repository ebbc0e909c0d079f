"""TURN nodes: an allocation from outside with LiveKit-style credentials, wrong credentials refused,
and no relaying towards loopback, cloud metadata or private addresses that are not SFU nodes (SSRF)."""

from __future__ import annotations

import pytest

from visio_infra.model.security_rules import HTTPS_PORT, TURN_PORT, TURNS_PORT
from visio_infra.probes.turn_probe import check_server

ROLES = ("turn",)

LISTENERS = [("udp", TURN_PORT), ("tcp", TURN_PORT), ("tls", HTTPS_PORT), ("tls", TURNS_PORT)]
METADATA_ADDRESS = "169.254.169.254"
"""OpenStack/cloud metadata service: a TURN relay to it would leak instance credentials."""


def _denied_peers(inventory) -> list[str]:
    """Loopback, metadata, and every private address of a node that is not an SFU (DB, Redis...)."""
    peers = ["127.0.0.1", METADATA_ADDRESS]
    for role in ("db", "redis", "turn"):
        peers += [str(h["private_ip"]) for h in inventory["groups"].get(role) or []]
    allowed = set(_allowed_peers(inventory))
    return [peer for peer in dict.fromkeys(peers) if peer not in allowed]


def _allowed_peers(inventory) -> list[str]:
    return [str(h.get("public_ip") or h["private_ip"]) for h in inventory["groups"]["sfu"]]


@pytest.mark.parametrize(("transport", "port"), LISTENERS, ids=[f"{t}-{p}" for t, p in LISTENERS])
def test_turn_listener_allocates_and_refuses_what_it_must(node, transport, port, outputs, inventory,
                                                           ca_file, config):
    report = check_server(
        node.public_ip, port, transport, str(outputs["turn_shared_secret"]),
        allowed_peers=_allowed_peers(inventory), denied_peers=_denied_peers(inventory),
        ca_file=ca_file if transport == "tls" else None,
        server_name=config.domains.turn if transport == "tls" else None,
    )
    failed = [f"{c.name}: {c.detail}" for c in report.checks if not c.passed]
    assert report.passed, f"{node} {transport}/{port}: " + "; ".join(failed)
