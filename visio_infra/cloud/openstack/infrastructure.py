"""`Infrastructure` on a sovereign OpenStack region: network, security groups, server groups, nodes."""

from __future__ import annotations

import pulumi
import pulumi_openstack as openstack

from visio_infra.cloud.infrastructure import InfrastructureArgs
from visio_infra.cloud.openstack.cloud_init import ADMIN_USER, user_data
from visio_infra.cloud.openstack.network import NetworkArgs, VisioNetwork
from visio_infra.cloud.openstack.node import NodeArgs, OpenStackNode
from visio_infra.cloud.openstack.security import SecurityGroups, SecurityGroupsArgs
from visio_infra.model import tagging
from visio_infra.model.config.base import ROLES
from visio_infra.model.config.cloud import OpenStackCloud
from visio_infra.model.topology import PUBLIC_ROLES, TIER_OF_ROLE, node_volumes, server_group_number

SERVER_GROUP_POLICY = "anti-affinity"
"""Strict: two nodes of a role never share a hypervisor, so losing one host loses at most one node
per role. (pulumi-openstack v5 takes the policy as a single string.)"""


class OpenStackInfrastructure(pulumi.ComponentResource):
    """A ministry's machines on OpenStack, behind one explicit provider.

    The provider gets only the cloud's name (clouds.yaml entry) or Keystone URL and the region from
    the stack config; credentials come from the operator's clouds.yaml/secure.yaml or OS_*
    environment (application credentials), never from the stack file or the state.
    """

    public_ips: dict[str, pulumi.Output[str | None]]
    connection: pulumi.Output[dict]
    ready: list[pulumi.Resource]

    def __init__(
        self, name: str, args: InfrastructureArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("visio:openstack:Infrastructure", name, None, opts)
        config = args.config
        cloud = config.cloud
        if not isinstance(cloud, OpenStackCloud):
            raise TypeError("OpenStackInfrastructure needs a `kind: openstack` cloud")
        slug = config.ministry.slug

        provider = openstack.Provider(
            f"{name}-provider",
            cloud=cloud.cloud,
            auth_url=cloud.auth_url,
            region=cloud.region,
            opts=pulumi.ResourceOptions(parent=self),
        )
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        invoke = pulumi.InvokeOutputOptions(provider=provider, parent=self)

        external = openstack.networking.get_network_output(
            name=cloud.external_network, external=True, opts=invoke
        )
        image = openstack.images.get_image_output(name=cloud.image, most_recent=True, opts=invoke)

        network = VisioNetwork(
            f"{name}-network", NetworkArgs(config=config, external_network_id=external.id), opts=child
        )
        counts = {role: sum(1 for n in args.nodes if n.role == role) for role in ROLES}
        security = SecurityGroups(
            f"{name}-security", SecurityGroupsArgs(config=config, counts=counts), opts=child
        )
        # One strict anti-affinity group per role, or several when the role outgrows Nova's
        # server_group_members quota. Group 1 keeps the unnumbered names, so growing never renames it.
        server_groups: dict[tuple[str, int], openstack.compute.ServerGroup] = {}
        group_of: dict[str, openstack.compute.ServerGroup] = {}
        for spec in args.nodes:
            key = (spec.role, server_group_number(spec.index, cloud.server_group_max_members))
            if key not in server_groups:
                suffix = "" if key[1] == 1 else f"-{key[1]}"
                server_groups[key] = openstack.compute.ServerGroup(
                    f"{name}-{spec.role}-group{suffix}",
                    name=f"visio-{slug}-{spec.role}{suffix}",
                    policies=SERVER_GROUP_POLICY,
                    opts=child,
                )
            group_of[spec.name] = server_groups[key]
        keypair = openstack.compute.Keypair(
            f"{name}-keypair", name=f"visio-{slug}", public_key=cloud.ssh_public_keys[0], opts=child
        )

        flavors = {role: args.flavors.get(role) or getattr(cloud.flavors, role) for role in ROLES}
        self.nodes: dict[str, OpenStackNode] = {}
        self.public_ips = {}
        self.ready = list(network.router_interfaces)
        for spec in args.nodes:
            flavor = flavors[spec.role]
            if not flavor:
                raise ValueError(f"no flavor for role {spec.role}: set visio:cloud.flavors.{spec.role}")
            volumes = {v.purpose: v for v in node_volumes(config, spec)}
            boot, data = volumes.get("boot"), volumes.get("data")
            node = OpenStackNode(
                spec.name,
                NodeArgs(
                    spec=spec,
                    ministry=slug,
                    flavor=flavor,
                    image_id=image.id,
                    boot_volume_gib=boot.size_gib if boot else None,  # None: the flavor's local disk
                    boot_volume_type=boot.volume_type if boot else None,
                    network_id=network.network_id,
                    subnet_id=network.subnet_ids[TIER_OF_ROLE[spec.role]],
                    security_group_id=security.group_ids[spec.role],
                    server_group_id=group_of[spec.name].id,
                    key_pair=keypair.name,
                    user_data=user_data(config, spec),
                    external_network=cloud.external_network if spec.role in PUBLIC_ROLES else None,
                    data_volume_gib=data.size_gib if data else None,
                    data_volume_type=data.volume_type if data else None,
                    floating_ip_after=list(network.router_interfaces),
                ),
                opts=child,
            )
            self.nodes[spec.name] = node
            self.public_ips[spec.name] = node.public_ip
            self.ready.extend(node.ready)

        bastions = [n for n in args.nodes if n.role == "bastion"]
        bastion_ip = self.public_ips[bastions[0].name] if bastions else pulumi.Output.from_input(None)
        self.connection = pulumi.Output.from_input(bastion_ip).apply(
            lambda host: {
                "user": ADMIN_USER,
                "bastion": {"host": host, "user": ADMIN_USER} if host else None,
                "ssh_key_file": None,
            }
        )
        self.register_outputs({"connection": self.connection, "tags": tagging.tags(slug, "infrastructure")})
