"""Which nodes a deployment has and where they sit on the network (pure).

Both backends (OpenStack and the lab) get the same list of `NodeSpec`s, so names and fixed
addresses are identical whatever the cloud. Each role owns a fixed block of its tier, so adding an
SFU node never renumbers (and so never replaces) a TURN node.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from visio_infra.model.config.stack import StackConfig
from visio_infra.model.pricing import BOOT_VOLUME_GIB
from visio_infra.model.sizing.roles import db_volume_gib

FIRST_HOST_OFFSET = 10
"""Addresses below this in each tier are left to the cloud (gateway, DHCP, metadata)."""

TIER_OF_ROLE = {
    "sfu": "edge",
    "turn": "edge",
    "db": "data",
    "redis": "data",
    "bastion": "admin",
    "monitoring": "admin",
}
"""Roles sharing a tier split it into equal blocks, in this order. A role added to a tier goes last,
so the blocks before it keep their first addresses (the bastion keeps its address when the
monitoring node joins the admin tier)."""

PUBLIC_ROLES = frozenset({"sfu", "turn", "bastion"})
"""Roles reachable from outside (floating IP in OpenStack). DB and Redis never are."""

TIERS = ("edge", "data", "admin")
"""One OpenStack subnet each, created whatever the node counts: edge for SFU and TURN (floating IPs),
data for PostgreSQL and Redis (never public), admin for the bastion and the monitoring node."""


@dataclass(frozen=True)
class NodeSpec:
    """One node to create: stable name, role, index within the role, fixed private address."""

    name: str
    role: str
    index: int
    private_ip: ipaddress.IPv4Address
    public: bool
    zone: str | None = None


class TopologyError(ValueError):
    """The requested node counts do not fit the address plan."""


def _tier_net(config: StackConfig, tier: str) -> ipaddress.IPv4Network:
    return {
        "edge": config.network.edge_cidr,
        "data": config.network.data_cidr,
        "admin": config.network.admin_cidr,
    }[tier]


def role_block(config: StackConfig, role: str) -> list[ipaddress.IPv4Address]:
    """The addresses reserved for `role` in its tier."""
    tier = TIER_OF_ROLE[role]
    sharing = [r for r, t in TIER_OF_ROLE.items() if t == tier]
    hosts = list(_tier_net(config, tier).hosts())[FIRST_HOST_OFFSET - 1 :]
    block = len(hosts) // len(sharing)
    start = sharing.index(role) * block
    return hosts[start : start + block]


def plan_nodes(config: StackConfig, counts: Mapping[str, int]) -> list[NodeSpec]:
    """Nodes for the given per-role counts, spread round-robin over availability zones."""
    zones: list[str | None] = list(getattr(config.cloud, "availability_zones", [None]))
    nodes: list[NodeSpec] = []
    for role in TIER_OF_ROLE:
        count = counts.get(role, 0)
        block = role_block(config, role)
        if count > len(block):
            tier = TIER_OF_ROLE[role]
            raise TopologyError(
                f"{count} {role} nodes do not fit the {len(block)} addresses reserved for them in the "
                f"{tier} tier ({_tier_net(config, tier)}); widen network.{tier}_cidr"
            )
        for index in range(count):
            nodes.append(
                NodeSpec(
                    name=f"{config.ministry.slug}-{role}-{index + 1}",
                    role=role,
                    index=index,
                    private_ip=block[index],
                    public=role in PUBLIC_ROLES,
                    zone=zones[index % len(zones)],
                )
            )
    return nodes


def server_group_number(index: int, max_members: int) -> int:
    """Which anti-affinity group of its role the node at `index` (0-based, `NodeSpec.index`) joins
    (1, 2, ...), at most `max_members` each.

    Nova refuses a server group beyond its `server_group_members` quota, and a strict group of N
    servers needs N hypervisors. Filling groups in index order keeps every existing node in its
    group when the role grows (a changed group would replace the server): the 11th SFU node opens
    group 2, nodes 1-10 stay in group 1. Within a group no two nodes share a hypervisor, so losing
    one hypervisor costs at most one node per group.
    """
    if max_members < 1:
        raise ValueError("max_members must be at least 1")
    return index // max_members + 1


def server_group_count(count: int, max_members: int) -> int:
    """How many anti-affinity groups a role of `count` nodes needs (0 for none)."""
    return server_group_number(count - 1, max_members) if count else 0


def nodes_by_role(nodes: list[NodeSpec]) -> dict[str, list[NodeSpec]]:
    grouped: dict[str, list[NodeSpec]] = {role: [] for role in TIER_OF_ROLE}
    for node in nodes:
        grouped[node.role].append(node)
    return grouped


@dataclass(frozen=True)
class VolumeSpec:
    """One Cinder volume the OpenStack program creates for a node."""

    purpose: Literal["boot", "data"]
    size_gib: int
    volume_type: str | None
    """The stack's encrypted volume type (None only for a config without one: refused by the policy)."""
    from_image: bool


def node_volumes(config: StackConfig, spec: NodeSpec) -> tuple[VolumeSpec, ...]:
    """The volumes of one OpenStack node: its boot volume (from the image) and, on DB nodes, the data
    volume, both on the stack's encrypted volume type: every node's boot disk holds secrets in its
    configuration (API and TURN secrets, passwords, TLS keys), so it is encrypted at rest like the
    data. The program and the cloud preflight both read this, so the preflight's volume and gigabyte
    counts are what `pulumi up` creates."""
    encrypted = getattr(config.cloud, "encrypted_volume_type", None)
    volumes: list[VolumeSpec] = []
    if getattr(config.cloud, "boot_from", "volume") == "volume":  # `image`: the flavor's local disk
        volumes.append(VolumeSpec("boot", BOOT_VOLUME_GIB, encrypted, from_image=True))
    if spec.role == "db":
        volumes.append(VolumeSpec("data", db_volume_gib(config), encrypted, from_image=False))
    return tuple(volumes)
