"""A ministry's whole deployment: infrastructure, secrets, certificates, configuration, outputs.

This is the only place that wires the pieces together. The cloud-specific part is behind
`Infrastructure`; what is above it is identical for OpenStack and the lab.
"""

from __future__ import annotations

import os
import signal
import sys

import pulumi

from visio_infra.cloud import outputs
from visio_infra.cloud.infrastructure import Infrastructure, InfrastructureArgs
from visio_infra.cloud.secrets import StackSecrets
from visio_infra.hosts import inventory
from visio_infra.model.config.cloud import LabCloud
from visio_infra.model.config.stack import StackConfig
from visio_infra.model.sizing.plan import plan as sizing_plan
from visio_infra.model.topology import plan_nodes


def _infrastructure(config: StackConfig, args: InfrastructureArgs) -> Infrastructure:
    if isinstance(config.cloud, LabCloud):
        from visio_infra.cloud.lab import LabInfrastructure

        return LabInfrastructure(f"{config.ministry.slug}-lab", args)
    from visio_infra.cloud.openstack import OpenStackInfrastructure

    return OpenStackInfrastructure(f"{config.ministry.slug}-openstack", args)


CANCELLED_EXIT = 130
"""Exit status of a program stopped by SIGINT (128 + 2)."""


def exit_quietly_when_cancelled() -> None:
    """Let the program end without a traceback when the engine cancels it.

    When an update fails (a resource refused, a cloud API down), the engine cancels the program and
    the Python language host sends it SIGINT. Python would print a KeyboardInterrupt traceback (two,
    with the executor's shutdown) into the stack's diagnostics, under the resource error that caused
    the failure; the engine has already recorded what failed, so the program just exits. Called by
    `__main__` only: the mock tests run the program inside pytest, whose Ctrl-C must keep working."""

    def stop(_signum: int, _frame: object) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(CANCELLED_EXIT)

    signal.signal(signal.SIGINT, stop)


def build_deployment(config: StackConfig) -> None:
    """Declare every resource of the stack and export the output contract (the Ansible host
    configuration too, unless the stack is provisioning-only)."""
    sizing = sizing_plan(config)
    nodes = plan_nodes(config, sizing.counts)
    infra = _infrastructure(config, InfrastructureArgs(config=config, nodes=nodes, flavors=sizing.flavors))
    secrets = StackSecrets(f"{config.ministry.slug}-secrets", config)

    inv = inventory.inventory_output(nodes, infra.public_ips, infra.connection)

    certificates = None
    if config.tls.source == "stack-ca":
        from visio_infra.cloud.pki import StackCertificates

        certificates = StackCertificates(
            f"{config.ministry.slug}-pki", config=config, nodes=nodes, public_ips=infra.public_ips
        )

    if config.hosts.configure_on_up:
        from visio_infra.hosts.configuration import HostConfiguration

        HostConfiguration(
            f"{config.ministry.slug}-configuration",
            config=config,
            inventory=inv,
            secrets=secrets,
            certificates=certificates,
            opts=pulumi.ResourceOptions(depends_on=infra.ready),
        )
    # Provisioning only (`hosts.configure_on_up: false`): the outputs below are all `visio configure`
    # needs to configure the hosts later.

    outputs.export_all(config, inv, secrets, certificates)
