"""The deployment's private network: one subnet per tier and a router to the external network."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_openstack as openstack

from visio_infra.model import tagging
from visio_infra.model.config.stack import StackConfig
from visio_infra.model.topology import TIERS


@dataclass
class NetworkArgs:
    config: StackConfig
    external_network_id: pulumi.Input[str]


class VisioNetwork(pulumi.ComponentResource):
    """Network, subnets with the tier CIDRs, router with SNAT to the external network."""

    network_id: pulumi.Output[str]
    subnet_ids: dict[str, pulumi.Output[str]]
    router_interfaces: list[openstack.networking.RouterInterface]
    """Floating IPs need the subnet attached to the router first."""

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("visio:openstack:Network", name, None, opts)
        config = args.config
        slug = config.ministry.slug
        child = pulumi.ResourceOptions(parent=self)

        network = openstack.networking.Network(
            f"{name}-net",
            name=f"visio-{slug}",
            description=f"Visio ({config.ministry.name})",
            admin_state_up=True,
            tags=tagging.tags(slug, "network"),
            opts=child,
        )
        router = openstack.networking.Router(
            f"{name}-router",
            name=f"visio-{slug}",
            description=f"Visio ({config.ministry.name}): SNAT and floating IPs",
            external_network_id=args.external_network_id,
            admin_state_up=True,
            tags=tagging.tags(slug, "network"),
            opts=child,
        )
        cidrs = {
            "edge": config.network.edge_cidr,
            "data": config.network.data_cidr,
            "admin": config.network.admin_cidr,
        }
        nameservers = [str(ip) for ip in config.network.dns_nameservers] or None
        self.subnet_ids = {}
        self.router_interfaces = []
        for tier in TIERS:
            subnet = openstack.networking.Subnet(
                f"{name}-{tier}",
                name=f"visio-{slug}-{tier}",
                network_id=network.id,
                cidr=str(cidrs[tier]),
                ip_version=4,
                enable_dhcp=True,
                dns_nameservers=nameservers,
                tags=tagging.tags(slug, "network", tier=tier),
                opts=child,
            )
            self.router_interfaces.append(
                openstack.networking.RouterInterface(
                    f"{name}-{tier}-router-interface", router_id=router.id, subnet_id=subnet.id, opts=child
                )
            )
            self.subnet_ids[tier] = subnet.id
        self.network_id = network.id
        self.router_id = router.id
        self.register_outputs({"network_id": network.id, "router_id": router.id, **self.subnet_ids})
