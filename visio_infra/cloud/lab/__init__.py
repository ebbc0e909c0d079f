"""The lab backend: a whole ministry deployment on this machine, as systemd-nspawn machines.

`LabInfrastructure` implements the `Infrastructure` interface of `visio_infra.cloud.infrastructure` with
Python dynamic providers (real create/read/diff/update/delete, so `pulumi refresh` notices a dead
machine and `pulumi up` recreates it): the host network (`bridge.py`), the cached Debian 12 base
image (`base_image.py`), the stack's SSH key pair (`ssh.py`) and one machine per planned node
(`machine.py`). Everything above it (secrets, certificates, inventory, Ansible) is shared with
OpenStack. Nothing here talks to a service outside this machine except the Debian mirror, the one
this host's apt uses unless the lab stack names one (`visio_infra.model.apt_sources`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi

from visio_infra.cloud.infrastructure import InfrastructureArgs
from visio_infra.cloud.lab.base_image import BaseImage
from visio_infra.cloud.lab.bridge import LabNetwork
from visio_infra.cloud.lab.machine import LabMachine
from visio_infra.cloud.lab.plan import LAB_ROOT, host_resolvers, hosts_entries, lab_cloud, plan_machines
from visio_infra.cloud.lab.ssh import LabKeyPair
from visio_infra.model.apt_sources import AptSourcesError, node_mirrors

RESOLV_CONF = Path("/etc/resolv.conf")


def _resolvers() -> list[str]:
    servers = host_resolvers(RESOLV_CONF.read_text(encoding="utf-8") if RESOLV_CONF.exists() else "")
    if not servers:
        raise pulumi.RunError(
            f"{RESOLV_CONF} lists no non-loopback IPv4 nameserver the lab machines could use through "
            "NAT; add your network's resolver there (a local stub such as 127.0.0.53 is not reachable "
            "from the lab)"
        )
    return servers


class LabInfrastructure(pulumi.ComponentResource):
    """Lab network, base image, key pair and one systemd-nspawn machine per node."""

    public_ips: dict[str, pulumi.Output[str | None]]
    connection: pulumi.Output[dict]
    ready: list[pulumi.Resource]

    def __init__(
        self,
        name: str,
        args: InfrastructureArgs,
        opts: pulumi.ResourceOptions | None = None,
        root: str = str(LAB_ROOT),
    ) -> None:
        super().__init__("visio:lab:LabInfrastructure", name, None, opts)
        config = args.config
        lab = lab_cloud(config)
        stack = pulumi.get_stack()
        machines = plan_machines(config, args.nodes)
        child = pulumi.ResourceOptions(parent=self)

        network = LabNetwork(
            f"{name}-network",
            stack=stack,
            bridge=lab.bridge,
            subnet=str(lab.subnet),
            machines=[m.name for m in machines],
            root=root,
            opts=child,
        )
        try:
            mirrors = node_mirrors(lab)  # the stack's, else this host's apt sources
        except AptSourcesError as exc:
            raise pulumi.RunError(str(exc)) from exc
        image = BaseImage(
            f"{name}-base-image", mirrors=mirrors, machines=len(machines), root=root, opts=child
        )
        keys = LabKeyPair(f"{name}-ssh", stack=stack, root=root, opts=child)
        dns = _resolvers()
        entries = hosts_entries(config, machines)

        self.machines: dict[str, LabMachine] = {}
        self.public_ips = {}
        for spec in machines:
            machine = LabMachine(
                f"{name}-{spec.name}",
                {
                    "stack": stack,
                    "root": root,
                    "name": spec.name,
                    "role": spec.role,
                    "address": str(spec.address),
                    "prefixlen": spec.prefixlen,
                    "gateway": str(spec.gateway),
                    "bridge": network.bridge,
                    "image": image.path,
                    "public_key": keys.public_key,
                    "hosts": entries,
                    "dns": dns,
                },
                pulumi.ResourceOptions(parent=self, depends_on=[network]),
            )
            self.machines[spec.name] = machine
            self.public_ips[spec.name] = (
                machine.address.apply(lambda address: address)
                if spec.public
                else machine.address.apply(lambda _address: None)
            )

        host_keys = {spec_name: machine.host_key for spec_name, machine in self.machines.items()}
        self.connection = pulumi.Output.all(keys.private_key_file, keys.known_hosts_file, host_keys).apply(
            lambda values: _connection(values[0], values[1], values[2])
        )
        self.ready = [network, *self.machines.values()]
        self.register_outputs({"public_ips": self.public_ips, "connection": self.connection})


def _connection(key_file: str, known_hosts: str, host_keys: dict[str, Any]) -> dict[str, Any]:
    """How Ansible and testinfra reach lab machines: directly as root with the lab key, host keys
    checked against the lab's known_hosts (the host keys are part of it so a recreated machine
    changes the inventory, and so re-runs the configuration)."""
    return {
        "user": "root",
        "bastion": None,
        "ssh_key_file": key_file,
        "known_hosts_file": known_hosts,
        "host_keys": dict(sorted(host_keys.items())),
    }


__all__ = ["LabInfrastructure"]
