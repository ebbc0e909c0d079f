"""The end-of-deployment summary: endpoints, nodes, versions and next steps, no secret."""

from __future__ import annotations

from visio_infra.commands.summary import render_summary


def test_summary_lists_endpoints_nodes_and_next_steps():
    outputs = {
        "livekit_url": "wss://sfu.lab.visio.test",
        "livekit_api_url": "https://sfu.lab.visio.test",
        "turn_uris": [
            "turn:turn.lab.visio.test:3478?transport=udp",
            "turns:turn.lab.visio.test:443?transport=tcp",
        ],
        "ca_certificate": "-----BEGIN CERTIFICATE-----",
        "livekit_api_secret": "[secret]",
        "inventory": {
            "groups": {
                "sfu": [{"name": "lab-sfu-1", "private_ip": "10.77.0.74", "public_ip": "10.77.0.74"}],
                "db": [{"name": "lab-db-1", "private_ip": "10.77.0.106", "public_ip": None}],
                "bastion": [],
                "monitoring": [{"name": "lab-monitoring-1", "private_ip": "10.77.0.148", "public_ip": None}],
            }
        },
    }
    text = render_summary("lab", outputs, {"livekit": "1.13.11", "coturn": "4.6.1-1", "postgresql": 15},
                          "make destroy")
    assert "wss://sfu.lab.visio.test" in text
    assert "turns:turn.lab.visio.test:443?transport=tcp" in text
    assert "lab-sfu-1" in text and "10.77.0.74" in text and "lab-db-1" in text
    assert "LiveKit 1.13.11" in text and "PostgreSQL 15" in text
    assert "visio verify lab" in text and "make destroy" in text
    assert "http://10.77.0.148:9090/consoles/visio.html" in text  # the dashboard of the stack
    assert "[secret]" not in text
