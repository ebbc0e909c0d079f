"""What the OpenStack program will create for a stack, counted before anything is created
(`visio plan <stack> --check-cloud`), from the same functions the program calls:
`topology.plan_nodes`/`node_volumes`/`server_group_number`/`TIERS`, the sizing plan's
flavors and `security_rules.security_rules` (pure).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from visio_infra.model.config.base import ROLES
from visio_infra.model.config.cloud import OpenStackCloud
from visio_infra.model.config.stack import StackConfig
from visio_infra.model.pricing import Offer
from visio_infra.model.security_rules import security_rules
from visio_infra.model.sizing.results import SizingPlan
from visio_infra.model.topology import TIERS, VolumeSpec, node_volumes, plan_nodes, server_group_number

NEUTRON_DEFAULT_EGRESS_RULES = 2
"""Neutron gives every new security group an IPv4 and an IPv6 allow-all egress rule. The program
deletes them as it creates the group (`delete_default_rules`), but until then they count against the
project's rule quota, so the rule need includes them for every group the stack creates."""

DHCP_PORTS_PER_NETWORK = 1
"""Neutron's DHCP agent takes one port of the project on the stack's network (one agent per network,
Neutron's default `dhcp_agents_per_network`)."""


# --- What the stack needs ------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeNeed:
    """One server the program creates, with what comes with it."""

    name: str
    role: str
    flavor: str
    zone: str | None
    volumes: tuple[VolumeSpec, ...]
    floating_ip: bool
    server_group: tuple[str, int]
    """(role, group number): the anti-affinity group the server joins."""


@dataclass(frozen=True)
class CloudNeeds:
    """Everything `pulumi up` would create in the project for one stack."""

    source: str
    """The stack file, named in every problem line."""
    cloud: str
    """clouds.yaml entry or Keystone URL (for messages)."""
    region: str
    offer: Offer
    flavors: Mapping[str, str]
    """Flavor per role with nodes, as sizing picked it."""
    pinned_flavors: frozenset[str]
    """Roles whose flavor the stack pins (`visio:cloud.flavors.<role>`)."""
    image: str
    external_network: str
    zones: tuple[str, ...]
    nodes: tuple[NodeNeed, ...]
    server_group_max_members: int
    security_groups: int
    security_group_rules: int
    """Declared rules (without Neutron's transient default rules)."""
    networks: int = 1
    subnets: int = len(TIERS)
    routers: int = 1
    router_interfaces: int = len(TIERS)

    @property
    def group_sizes(self) -> dict[tuple[str, int], int]:
        return dict(Counter(node.server_group for node in self.nodes))


def needs(config: StackConfig, sizing: SizingPlan, *, source: str) -> CloudNeeds:
    """What the OpenStack program creates for this stack (pure)."""
    cloud = config.cloud
    if not isinstance(cloud, OpenStackCloud):
        raise TypeError("the cloud preflight is for `kind: openstack` stacks")
    counts = sizing.counts
    specs = plan_nodes(config, counts)
    limit = cloud.server_group_max_members
    nodes = tuple(
        NodeNeed(
            name=spec.name,
            role=spec.role,
            flavor=sizing.flavors[spec.role],
            zone=spec.zone,
            volumes=node_volumes(config, spec),
            floating_ip=spec.public,
            server_group=(spec.role, server_group_number(spec.index, limit)),
        )
        for spec in specs
    )
    rules = security_rules(config, counts)
    return CloudNeeds(
        source=source,
        cloud=cloud.cloud or str(cloud.auth_url),
        region=cloud.region,
        offer=sizing.offer,
        flavors={role: sizing.flavors[role] for role in ROLES if counts[role]},
        pinned_flavors=frozenset(role for role in ROLES if getattr(cloud.flavors, role)),
        image=cloud.image,
        external_network=cloud.external_network,
        zones=tuple(cloud.availability_zones),
        nodes=nodes,
        server_group_max_members=limit,
        security_groups=len(ROLES),
        security_group_rules=sum(len(r) for r in rules.values()),
    )
