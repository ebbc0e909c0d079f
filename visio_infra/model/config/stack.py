"""The whole stack config (`StackConfig`) and the rules that span several sections."""

from __future__ import annotations

from pydantic import ValidationInfo, model_validator

from visio_infra.model.config.base import REDIS_MIN_NODES, ROLES, _Model
from visio_infra.model.config.capacity import Audience, Sizing
from visio_infra.model.config.cloud import Cloud, LabCloud
from visio_infra.model.config.network import Network, Ports
from visio_infra.model.config.sections import (
    Domains,
    Hosts,
    Meet,
    Ministry,
    Monitoring,
    Tls,
    Upgrade,
    Versions,
)

MIN_DB_NODES = 3
"""Patroni + etcd on the DB nodes: three etcd members keep a quorum when one node is lost."""


class StackConfig(_Model):
    """One ministry's Visio deployment, as written in its stack file."""

    ministry: Ministry
    """Who the deployment is for: {slug, name}."""
    cloud: Cloud
    """Where it runs: {kind: openstack, offer, cloud or auth_url, region, ...} or {kind: lab, ...}."""
    audience: Audience
    """Who uses it: {users, peak_participants, video_share, largest_meeting, turn_share}."""
    versions: Versions
    """Pinned component versions: {livekit, coturn, postgresql}."""
    network: Network
    """Address plan: {edge_cidr, data_cidr, admin_cidr, app_cidr, monitoring_cidr, admin_cidrs}."""
    ports: Ports = Ports()
    domains: Domains
    """Public names: {signalling, turn}."""
    tls: Tls
    """Certificate source: {source: stack-ca} or {source: files, cert_file, key_file}."""
    meet: Meet = Meet()
    monitoring: Monitoring = Monitoring()
    """Metrics and alerts: {prometheus: node | external, remote_write_url, alert_webhook_url}."""
    sizing: Sizing = Sizing()
    upgrade: Upgrade = Upgrade()
    hosts: Hosts = Hosts()
    """Host configuration in `pulumi up`: {configure_on_up: true} (default) or false (provisioning only)."""

    @property
    def is_lab(self) -> bool:
        return isinstance(self.cloud, LabCloud)

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> StackConfig:
        # parse_stack_config runs these itself to report one line per problem with its own field.
        if info.context and info.context.get("deferred_cross_checks"):
            return self
        problems = cross_problems(self)
        if problems:
            raise ValueError("\n".join(f"{field}: {message}" for field, message in problems))
        return self


def cross_problems(config: StackConfig) -> list[tuple[str, str]]:
    """Checks spanning several sections, as (`section.field`, message) pairs."""
    problems: list[tuple[str, str]] = []
    pinned: dict[str, int] = {str(k): v for k, v in config.sizing.nodes.items()}
    if pinned.get("db") is not None and pinned["db"] < MIN_DB_NODES:
        problems.append(
            (
                "sizing.nodes.db",
                f"{pinned['db']} is below {MIN_DB_NODES}: Patroni's etcd needs three members for a quorum "
                f"that survives one lost node (a leader plus a synchronous standby); use db: {MIN_DB_NODES}",
            )
        )
    wanted = config.monitoring.node_count
    if pinned.get("monitoring") is not None and pinned["monitoring"] != wanted:
        problems.append(
            (
                "sizing.nodes.monitoring",
                f"{pinned['monitoring']} does not match monitoring.prometheus "
                f"'{config.monitoring.prometheus}' (which means {wanted} monitoring node); use {wanted} "
                "or change monitoring.prometheus",
            )
        )
    if isinstance(config.cloud, LabCloud):
        lab = config.cloud
        if config.tls.source != "stack-ca":
            problems.append(("tls.source", "the lab issues its own certificates; use 'stack-ca'"))
        missing = [role for role in ROLES if role not in pinned]
        if missing:
            problems.append(
                (
                    "sizing.nodes",
                    f"the lab pins every count (missing: {', '.join(missing)}); e.g. "
                    "{sfu: 2, turn: 1, db: 3, redis: 3, bastion: 0, monitoring: 1}",
                )
            )
        if pinned.get("bastion", 0) != 0:
            problems.append(
                ("sizing.nodes.bastion", "the lab has no bastion (the host reaches the machines); use 0")
            )
        if not config.hosts.configure_on_up:
            problems.append(
                (
                    "hosts.configure_on_up",
                    "the lab's machines are configured by the same `pulumi up` that starts them; use true "
                    "(or leave it out)",
                )
            )
        bridge = next(lab.subnet.hosts())
        for tier in ("edge_cidr", "data_cidr", "admin_cidr"):
            net = getattr(config.network, tier)
            if not net.subnet_of(lab.subnet):
                problems.append((f"network.{tier}", f"{net} must lie inside the lab subnet {lab.subnet}"))
            elif bridge in net:
                problems.append((f"network.{tier}", f"{net} contains the bridge address {bridge}"))
    else:
        cloud = config.cloud
        spare = config.sizing.spare_nodes
        for role in ("sfu", "turn"):
            count = pinned.get(role)
            if count is not None and count < 2 + spare:
                problems.append(
                    (
                        f"sizing.nodes.{role}",
                        f"{count} is below 2 + spare_nodes ({2 + spare}); a production role needs two "
                        "serving nodes while one drains",
                    )
                )
        if pinned.get("bastion") is not None and pinned["bastion"] != 1:
            problems.append(
                ("sizing.nodes.bastion", f"{pinned['bastion']}: an OpenStack stack has exactly 1 bastion")
            )
        zone = cloud.dns_zone.rstrip(".")
        for name in ("signalling", "turn"):
            host = getattr(config.domains, name)
            if host != zone and not host.endswith("." + zone):
                problems.append(
                    (
                        f"domains.{name}",
                        f"'{host}' is outside cloud.dns_zone '{zone}'; use a name like {name[:4]}.{zone}",
                    )
                )
    redis = pinned.get("redis")
    if redis is not None and redis < REDIS_MIN_NODES:
        problems.append(
            (
                "sizing.nodes.redis",
                f"{redis} is below {REDIS_MIN_NODES}: Sentinel needs three Redis nodes for a quorum of 2 "
                f"(a master and two replicas); use redis: {REDIS_MIN_NODES}",
            )
        )
    if config.upgrade.min_serving > 1 + config.sizing.spare_nodes and not config.is_lab:
        problems.append(
            (
                "upgrade.min_serving",
                f"{config.upgrade.min_serving} cannot be kept while a node drains with spare_nodes "
                f"{config.sizing.spare_nodes}; use at most {1 + config.sizing.spare_nodes}",
            )
        )
    return problems


SECTIONS = tuple(StackConfig.model_fields)
"""The `visio:<section>` keys a stack file may hold."""
