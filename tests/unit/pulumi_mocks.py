"""Test helpers: a sample OpenStack stack config, and Pulumi mocks that record every registration."""

from __future__ import annotations

import copy
from typing import Any

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHq5m0tZ1yQ0m7l8CxkO1cV7o3bqB0o0bq2kHk0T9pWz ops@exemple.fr"

OPENSTACK_SAMPLE: dict[str, Any] = {
    "visio:ministry": {"slug": "sample", "name": "Ministère de l'Exemple"},
    "visio:cloud": {
        "kind": "openstack",
        "offer": "nubo",
        "cloud": "sample",
        "region": "RegionOne",
        "external_network": "ext-net",
        "image": "debian-12-genericcloud",
        "availability_zones": ["az1", "az2", "az3"],
        "encrypted_volume_type": "ceph-ssd-luks",
        "dns_zone": "visio.exemple.gouv.fr",
        "package_mirror": "https://miroir.exemple.gouv.fr/debian",
        "ssh_public_keys": [SSH_KEY],
    },
    "visio:audience": {"users": 20000, "peak_participants": 2000, "video_share": 0.5,
                       "largest_meeting": 150, "turn_share": 0.2},
    "visio:versions": {"livekit": "1.13.11"},
    "visio:network": {
        "edge_cidr": "10.20.0.0/24",
        "data_cidr": "10.20.1.0/24",
        "admin_cidr": "10.20.2.0/24",
        "app_cidr": "10.30.0.0/24",
        "monitoring_cidr": "10.40.0.0/28",
        "admin_cidrs": ["192.0.2.0/28", "2001:db8::/48"],
    },
    "visio:domains": {"signalling": "sfu.visio.exemple.gouv.fr", "turn": "turn.visio.exemple.gouv.fr"},
    "visio:tls": {"source": "stack-ca"},
}


def sample_raw(**overrides: Any) -> dict[str, Any]:
    """A deep copy of the sample config; `section={...}` overrides merge into that `visio:` section."""
    raw = copy.deepcopy(OPENSTACK_SAMPLE)
    for section, value in overrides.items():
        key = f"visio:{section}"
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return raw


def sample_config(**overrides: Any):
    from visio_infra.config import parse_stack_config

    return parse_stack_config(sample_raw(**overrides), source="tests/sample")
