"""The one interface both clouds implement: "give me a network and these nodes".

`deployment.py` asks an `Infrastructure` (OpenStack or the local lab) for the nodes planned by
`topology.plan_nodes`; everything above it (secrets, certificates, inventory, configuration,
outputs) is shared and identical for both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import pulumi

from visio_infra.model.config.stack import StackConfig
from visio_infra.model.topology import NodeSpec


@dataclass
class InfrastructureArgs:
    """What a backend needs to build a deployment's machines."""

    config: StackConfig
    nodes: list[NodeSpec]
    flavors: dict[str, str] = field(default_factory=dict)
    """Flavor per role chosen by sizing (OpenStack only)."""


class Infrastructure(Protocol):
    """What `deployment.py` reads from a backend once it is declared."""

    public_ips: dict[str, pulumi.Output[str | None]]
    """Node name -> public address (floating IP; in the lab, the address on the lab bridge) or None."""

    connection: pulumi.Output[dict]
    """How Ansible and testinfra reach the nodes:
    {"user": str, "bastion": {"host": str, "user": str} | None, "ssh_key_file": str | None}."""

    ready: list[pulumi.Resource]
    """Resources that must exist before hosts are configured (machines, routes, floating IPs)."""
