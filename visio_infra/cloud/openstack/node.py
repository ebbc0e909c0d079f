"""One OpenStack server: fixed-IP port, boot volume (or local disk), server, data volume, floating IP."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_openstack as openstack

from visio_infra.model import tagging
from visio_infra.model.topology import NodeSpec

INSTANCE_IGNORE_CHANGES = ["user_data", "key_pair"]
"""Nova replaces a server when its user data or key pair changes. Cloud-init only acts on first
boot and Ansible owns the users and keys afterwards, so such a change would only destroy a running
node: a database (and its data volume's attachment) or an SFU/TURN node with calls on it. Ignored
on every role; rebuilding a node is explicit (REBUILD)."""

REBUILD = "pulumi destroy --target <server urn> --target-dependents, then pulumi up"
"""How one node is rebuilt, after draining it. Every server sits on its own fixed-IP port and Pulumi
creates a replacement before deleting the original, so Nova refuses the new server (409, port still
in use): a replacement that slips through (`pulumi up --replace`, a changed boot source or server
group) stops at its first server with nothing deleted (tests/openstack). Removing the server first
keeps its port, address, floating IP and data volume; `pulumi up` then recreates it on them."""

BOOT_VOLUME_IGNORE_CHANGES = ["image_id"]
"""A new Glance image would recreate the boot volume and so the server. On stateful roles (DB,
Redis) that loses the node's state and triggers a failover; on SFU/TURN it would rebuild every node
at once and cut every call. New images apply to new nodes; existing nodes are rebuilt one at a time
(drain, then REBUILD). Only the bastion (stateless, no calls) follows the image: a new boot volume
replaces its server, delete-first so the port is free for the new one (a minute without SSH)."""

LOCAL_DISK_IGNORE_CHANGES = ["image_id"]
"""The same rule for a server booting from the flavor's local disk (`cloud.boot_from: image`): the
provider moves such a server to a new image with Nova's rebuild (same server and port, root disk
rewritten from the image), which wipes the node and cuts its calls. The bastion follows the image
that way; the other nodes are rebuilt one at a time (REBUILD)."""


@dataclass
class NodeArgs:
    spec: NodeSpec
    ministry: str
    flavor: str
    image_id: pulumi.Input[str]
    boot_volume_gib: int | None
    """Size of the Cinder boot volume; None boots from the image on the flavor's local disk."""
    network_id: pulumi.Input[str]
    subnet_id: pulumi.Input[str]
    security_group_id: pulumi.Input[str]
    server_group_id: pulumi.Input[str]
    key_pair: pulumi.Input[str]
    user_data: str
    external_network: str | None = None
    """Floating IP pool; set for public roles only."""
    boot_volume_type: str | None = None
    """Encrypted Cinder volume type of the boot volume (it holds the node's secrets)."""
    data_volume_gib: int | None = None
    data_volume_type: str | None = None
    """Encrypted Cinder volume type of the data volume (DB nodes)."""
    floating_ip_after: list[pulumi.Resource] | None = None
    """Resources (router interfaces) the floating IP needs first."""


class OpenStackNode(pulumi.ComponentResource):
    """A node of one role, on its fixed address, in its role's anti-affinity group."""

    public_ip: pulumi.Output[str | None]
    ready: list[pulumi.Resource]

    def __init__(self, name: str, args: NodeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("visio:openstack:Node", name, None, opts)
        spec = args.spec
        role = spec.role
        child = pulumi.ResourceOptions(parent=self)
        labels = {"node": spec.name}
        address = str(spec.private_ip)

        port = openstack.networking.Port(
            f"{name}-port",
            name=spec.name,
            network_id=args.network_id,
            fixed_ips=[openstack.networking.PortFixedIpArgs(subnet_id=args.subnet_id, ip_address=address)],
            security_group_ids=[args.security_group_id],
            admin_state_up=True,
            tags=tagging.tags(args.ministry, role, **labels),
            opts=child,
        )
        follows_image = role == "bastion"
        local_image: pulumi.Input[str] | None = None
        block_devices: list[openstack.compute.InstanceBlockDeviceArgs] | None = None
        instance_ignore = list(INSTANCE_IGNORE_CHANGES)
        if args.boot_volume_gib is None:
            # Local disk: Nova copies the image onto the hypervisor; no Cinder boot volume.
            local_image = args.image_id
            instance_ignore += [] if follows_image else LOCAL_DISK_IGNORE_CHANGES
        else:
            volume = self._encrypted_volume(
                name, args, "boot", args.boot_volume_gib, args.boot_volume_type, f"Boot disk of {spec.name}",
                image_id=args.image_id,
                opts=pulumi.ResourceOptions(
                    parent=self, ignore_changes=[] if follows_image else BOOT_VOLUME_IGNORE_CHANGES
                ),
            )
            block_devices = [
                openstack.compute.InstanceBlockDeviceArgs(
                    source_type="volume",
                    destination_type="volume",
                    uuid=volume.id,
                    boot_index=0,
                    delete_on_termination=False,
                )
            ]
        # The bastion is deleted before its replacement is created (it follows the image); any other
        # server keeps Pulumi's create-first order, which Nova refuses on the port in use (REBUILD).
        instance = openstack.compute.Instance(
            f"{name}-server",
            name=spec.name,
            flavor_name=args.flavor,
            availability_zone=spec.zone,
            key_pair=args.key_pair,
            user_data=args.user_data,
            networks=[openstack.compute.InstanceNetworkArgs(port=port.id)],
            image_id=local_image,
            block_devices=block_devices,
            scheduler_hints=[openstack.compute.InstanceSchedulerHintArgs(group=args.server_group_id)],
            metadata=tagging.metadata(args.ministry, role, **labels),
            tags=tagging.tags(args.ministry, role, **labels),
            stop_before_destroy=True,
            opts=pulumi.ResourceOptions(
                parent=self, ignore_changes=instance_ignore, delete_before_replace=follows_image or None
            ),
        )
        self.instance = instance
        self.ready: list[pulumi.Resource] = [instance]

        if args.data_volume_gib:
            data = self._encrypted_volume(
                name, args, "data", args.data_volume_gib, args.data_volume_type, f"Data of {spec.name}",
                opts=child,
            )
            self.ready.append(
                openstack.compute.VolumeAttach(
                    f"{name}-data-attach", instance_id=instance.id, volume_id=data.id, opts=child
                )
            )

        if args.external_network:
            floating_ip = openstack.networking.FloatingIp(
                f"{name}-fip",
                pool=args.external_network,
                port_id=port.id,
                description=f"Public address of {spec.name}",
                tags=tagging.tags(args.ministry, role, **labels),
                opts=pulumi.ResourceOptions(parent=self, depends_on=args.floating_ip_after or []),
            )
            self.ready.append(floating_ip)
            self.public_ip = floating_ip.address
        else:
            self.public_ip = pulumi.Output.from_input(None)
        self.register_outputs({"private_ip": str(spec.private_ip), "public_ip": self.public_ip})

    @staticmethod
    def _encrypted_volume(
        name: str, args: NodeArgs, purpose: str, size_gib: int, volume_type: str | None, what: str,
        opts: pulumi.ResourceOptions, image_id: pulumi.Input[str] | None = None,
    ) -> openstack.blockstorage.Volume:
        """A node's boot or data volume, always on the encrypted type: both hold secrets."""
        spec = args.spec
        if not volume_type:
            raise ValueError(f"{spec.name}: a {purpose} volume needs the encrypted volume type")
        return openstack.blockstorage.Volume(
            f"{name}-{purpose}",
            name=f"{spec.name}-{purpose}",
            description=f"{what} (encrypted at rest)",
            size=size_gib,
            volume_type=volume_type,
            image_id=image_id,
            availability_zone=spec.zone,
            metadata=tagging.metadata(args.ministry, spec.role, purpose=purpose, node=spec.name),
            opts=opts,
        )
