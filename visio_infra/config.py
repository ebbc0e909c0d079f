"""Typed, validated stack configuration.

A ministry's stack file (`stacks/Pulumi.<stack>.yaml`) holds its whole description under `visio:*`
keys. Everything here is pure (no Pulumi, no I/O besides `load_stack_file`), so the same checks run
in `pulumi up`, in `visio plan` and in unit tests, and a wrong file fails *before* any resource is
registered or any host is touched, with one line per problem naming the file, the field and the fix.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from visio_infra import pricing
from visio_infra.sovereignty import describe_foreign_endpoints

DEFAULT_NTP_SERVERS: tuple[str, ...] = ("0.fr.pool.ntp.org", "1.fr.pool.ntp.org", "2.fr.pool.ntp.org")
"""The French zone of the NTP Pool (volunteers' servers), when a ministry names no NTP servers."""

PROJECT = "visio"
"""Pulumi project name; every config key is `visio:<section>`."""

MIN_LIVEKIT_VERSION = (1, 10, 0)
"""LiveKit hands out coturn REST credentials from a shared secret soundly only from v1.10 on."""

FORBIDDEN_LIVEKIT_VERSIONS = {(1, 9, 10)}
"""Releases that must never be deployed (see shared/REFERENCE.md)."""

ROLES = ("sfu", "turn", "db", "redis", "bastion")
"""Node roles a deployment is made of."""

WORLD = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))

LIVEKIT_RESERVED_TCP_PORTS = {7880: "LiveKit's HTTP/WebSocket listener", 6789: "LiveKit's metrics listener"}
"""TCP ports on an SFU node the ICE/TCP port must not take (kept in step with security_rules)."""

TURN_LISTENING_PORTS = {3478: "TURN listener", 5349: "TURN over TLS listener", 9641: "coturn metrics"}
"""Ports on a TURN node the relay range must not contain."""

BROADEST_PUBLIC_ADMIN_PREFIX = {4: 16, 6: 32}
"""A public admin CIDR broader than this is "SSH open to a large part of the Internet"."""

IPv4Net = ipaddress.IPv4Network
AnyNet = ipaddress.IPv4Network | ipaddress.IPv6Network


class StackConfigError(ValueError):
    """The stack file is wrong. `problems` holds one readable line per mistake."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"{source}: {len(problems)} problem(s) in the stack config; nothing was changed.\n{lines}"
        )


class _Model(BaseModel):
    """Strict base: unknown keys are errors, never silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def _version_tuple(text: str) -> tuple[int, int, int]:
    match = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)", text)
    if not match:
        raise ValueError(f"'{text}' is not a version like 1.13.11")
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


class Ministry(_Model):
    """Who this deployment is for."""

    slug: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{1,23}$")]
    """Short lowercase name used in resource names and tags (e.g. `interieur`)."""
    name: Annotated[str, Field(min_length=3)]
    """Display name (e.g. `Ministère de l'Intérieur`)."""


class Flavors(_Model):
    """OpenStack flavor per role. When a role is absent, sizing picks from the price table."""

    sfu: str | None = None
    turn: str | None = None
    db: str | None = None
    redis: str | None = None
    bastion: str | None = None


class _NodeSources(_Model):
    """Where every node takes its packages and its time from: the same keys for every cloud kind."""

    package_mirror: str | None = None
    """Debian mirror the nodes use; the lab may leave it out to use this host's apt sources."""
    security_mirror: str | None = None
    """Debian security mirror (bookworm-security); default: the package mirror's `-security`
    sibling (http://miroir.interieur.gouv.fr/debian -> .../debian-security)."""
    ntp_servers: list[str] = Field(default_factory=lambda: list(DEFAULT_NTP_SERVERS))
    """Time sources of the nodes' chrony (usually the ministry's own NTP servers). The lab's
    containers share the host's clock and run no chrony."""

    @field_validator("package_mirror", "security_mirror")
    @classmethod
    def _mirror(cls, url: str | None) -> str | None:
        return None if url is None else _mirror_url(url)

    @field_validator("ntp_servers")
    @classmethod
    def _ntp(cls, servers: list[str]) -> list[str]:
        return _ntp_servers(servers)


class OpenStackCloud(_NodeSources):
    """A sovereign OpenStack region (private cloud, Nubo, a SecNumCloud public region...)."""

    kind: Literal["openstack"]
    package_mirror: str
    """The ministry's own Debian mirror, e.g. `package_mirror: http://miroir.interieur.gouv.fr/debian`
    under visio:cloud; the repository names no public mirror"""
    offer: Annotated[str, Field(min_length=2)]
    """Which price table in `visio_infra.pricing` applies (e.g. `nubo`, `interieur-pi`, `outscale`)."""
    cloud: str | None = None
    """Entry in clouds.yaml (OS_CLOUD); give this or `auth_url`."""
    auth_url: str | None = None
    region: Annotated[str, Field(min_length=1)]
    external_network: Annotated[str, Field(min_length=1)]
    image: Annotated[str, Field(min_length=1)]
    """Glance image name of a Debian 12 image."""
    availability_zones: Annotated[list[str], Field(min_length=1)]
    flavors: Flavors = Flavors()
    encrypted_volume_type: Annotated[str, Field(min_length=1)]
    """Cinder volume type with encryption at rest, for DB data volumes."""
    dns_zone: Annotated[str, Field(min_length=3)]
    ssh_public_keys: Annotated[list[str], Field(min_length=1)]
    """Operators' SSH public keys, installed for the admin user through cloud-init."""
    server_group_max_members: Annotated[int, Field(ge=2, le=1000)] = 10
    """Most servers Nova accepts in one server group (its `server_group_members` quota, 10 by
    default). A role with more nodes is split into several strict anti-affinity groups."""
    boot_from: Literal["volume", "image"] = "volume"
    """What servers boot from. `volume`: a Cinder boot volume copied from the image. `image`: the
    flavor's local disk, no boot volume (offers that boot servers from local disk, or a volume
    backend that cannot copy images). DB data volumes stay on `encrypted_volume_type` either way.
    Chosen when the stack is created: switching it on a stack with servers plans a replacement of
    every server, which Nova refuses on their ports still in use, so the `up` stops at the first one
    with nothing deleted (`visio_infra.openstack.node.REBUILD`); rebuild nodes one at a time instead."""

    @model_validator(mode="after")
    def _auth(self) -> OpenStackCloud:
        if not self.cloud and not self.auth_url:
            raise ValueError("give `cloud` (a clouds.yaml entry) or `auth_url`")
        if self.cloud and self.auth_url:
            raise ValueError("give either `cloud` or `auth_url`, not both")
        return self

    @field_validator("ssh_public_keys")
    @classmethod
    def _keys(cls, keys: list[str]) -> list[str]:
        problems = [p for p in (ssh_key_problem(k) for k in keys) if p]
        if len(set(keys)) != len(keys):
            problems.append("the same key is listed twice")
        if problems:
            raise ValueError("; ".join(problems))
        return keys

    @field_validator("offer")
    @classmethod
    def _offer(cls, name: str) -> str:
        known = sorted(o for o in pricing.OFFERS if o != "lab")
        if name not in known:
            raise ValueError(f"unknown offer '{name}'; known offers (price tables): {', '.join(known)}")
        return name

    @field_validator("availability_zones")
    @classmethod
    def _zones(cls, zones: list[str]) -> list[str]:
        if len(set(zones)) != len(zones) or not all(zones):
            raise ValueError("availability zones must be distinct, non-empty names")
        return zones

    @field_validator("auth_url")
    @classmethod
    def _auth_url(cls, url: str | None) -> str | None:
        if url is not None:
            if not re.fullmatch(r"https://[^\s/]+(/\S*)?", url):
                raise ValueError(
                    f"'{url}' is not an https:// Keystone URL (e.g. https://keystone.example.fr:5000/v3)"
                )
            _check_sovereign(url)
        return url

    @model_validator(mode="after")
    def _pinned_flavors(self) -> OpenStackCloud:
        table = pricing.OFFERS.get(self.offer)
        if table is None:
            return self
        problems = []
        for role in ROLES:
            name = getattr(self.flavors, role)
            if name is not None and name not in table.flavor_names:
                problems.append(
                    f"flavors.{role}: '{name}' is not in the '{self.offer}' price table; "
                    f"valid flavors: {', '.join(table.flavor_names)}"
                )
        if problems:
            raise ValueError("\n".join(problems))
        return self


class LabCloud(_NodeSources):
    """The local lab: systemd-nspawn machines on a host bridge of this machine."""

    kind: Literal["lab"]
    bridge: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{1,14}$")]
    """Host bridge name (Linux limits interface names to 15 characters)."""
    subnet: IPv4Net
    """Lab subnet; the bridge takes the first address, machines the following ones."""
    @field_validator("subnet")
    @classmethod
    def _subnet(cls, net: IPv4Net) -> IPv4Net:
        if net.prefixlen > 28:
            raise ValueError(f"{net} is too small for the lab; use a /24 (e.g. 10.77.0.0/24)")
        if not net.is_private:
            raise ValueError(f"{net} is not a private range; use e.g. 10.77.0.0/24")
        return net


Cloud = Annotated[OpenStackCloud | LabCloud, Field(discriminator="kind")]


class Audience(_Model):
    """Who will use it, which drives sizing and the cost comparison."""

    users: Annotated[int, Field(gt=0)]
    """Accounts that may use Visio (DB sizing, licence cost replaced)."""
    peak_participants: Annotated[int, Field(gt=0)]
    """Simultaneous participants at the busiest hour, across all meetings."""
    video_share: Annotated[float, Field(ge=0, le=1)]
    """Share of participants publishing video (the rest is audio-only)."""
    largest_meeting: Annotated[int, Field(gt=1)]
    """Participants in the largest single meeting (it must fit on one SFU node)."""
    turn_share: Annotated[float, Field(ge=0, le=1)]
    """Share of participants behind firewalls that only allow TURN over TCP/TLS."""

    @model_validator(mode="after")
    def _coherent(self) -> Audience:
        problems = []
        if self.peak_participants > self.users:
            problems.append(
                f"peak_participants: {self.peak_participants} exceeds users ({self.users}); "
                "simultaneous participants are at most the number of accounts"
            )
        if self.largest_meeting > self.peak_participants:
            problems.append(
                f"largest_meeting: {self.largest_meeting} exceeds peak_participants "
                f"({self.peak_participants}); a meeting is part of the peak"
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self


class Versions(_Model):
    """Pinned component versions. Changing one triggers a rolling upgrade."""

    livekit: str
    coturn: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+(-[0-9A-Za-z.+~]+)?$")] = "4.6.1-1"
    """Debian package version of coturn."""
    postgresql: Annotated[int, Field(ge=15, le=15)] = 15
    """PostgreSQL major version (Debian 12 ships 15)."""

    @field_validator("livekit")
    @classmethod
    def _livekit(cls, value: str) -> str:
        version = _version_tuple(value)
        if version in FORBIDDEN_LIVEKIT_VERSIONS:
            raise ValueError(
                f"LiveKit {value} is a known-bad release that must not be deployed; use 1.13.11 or later"
            )
        if version < MIN_LIVEKIT_VERSION:
            floor = ".".join(map(str, MIN_LIVEKIT_VERSION))
            raise ValueError(
                f"LiveKit {value} is below the supported floor {floor} (TURN shared-secret support); "
                "use 1.13.11 or later"
            )
        return value.lstrip("v")


class Network(_Model):
    """Address plan: one subnet per tier, plus who may reach what."""

    edge_cidr: IPv4Net
    """SFU and TURN nodes."""
    data_cidr: IPv4Net
    """Database and Redis nodes."""
    admin_cidr: IPv4Net
    """Bastion."""
    app_cidr: AnyNet
    """Where the Meet backend runs: the only clients allowed to reach PostgreSQL."""
    monitoring_cidr: AnyNet
    """Prometheus scrapers: the only clients allowed to reach metrics ports."""
    admin_cidrs: Annotated[list[AnyNet], Field(min_length=1)]
    """Operators' networks allowed to SSH to the bastion. Never the whole Internet."""
    dns_nameservers: list[ipaddress.IPv4Address] = []

    @field_validator("admin_cidrs")
    @classmethod
    def _no_world_ssh(cls, nets: list[AnyNet]) -> list[AnyNet]:
        for net in nets:
            if net.prefixlen == 0:
                raise ValueError(
                    f"{net} opens SSH to the whole Internet; list the operators' own networks "
                    "(e.g. 192.0.2.0/28)"
                )
            broadest = BROADEST_PUBLIC_ADMIN_PREFIX[net.version]
            if not net.is_private and net.prefixlen < broadest:
                raise ValueError(
                    f"{net} opens SSH to a large part of the Internet; list the operators' own networks "
                    f"(public ranges no broader than /{broadest})"
                )
        return nets

    @field_validator("edge_cidr", "data_cidr", "admin_cidr")
    @classmethod
    def _private_tier(cls, net: IPv4Net) -> IPv4Net:
        if not net.is_private:
            raise ValueError(f"{net} is not a private range; tiers use RFC 1918 space (e.g. 10.20.0.0/24)")
        return net

    @field_validator("monitoring_cidr", "app_cidr")
    @classmethod
    def _not_world(cls, net: AnyNet) -> AnyNet:
        if net.prefixlen == 0:
            raise ValueError(f"{net} is the whole Internet; give the scrapers'/backend's own network")
        return net

    @model_validator(mode="after")
    def _tiers_disjoint(self) -> Network:
        tiers = {"edge_cidr": self.edge_cidr, "data_cidr": self.data_cidr, "admin_cidr": self.admin_cidr}
        problems: list[str] = []
        names = list(tiers)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                if tiers[a].overlaps(tiers[b]):
                    problems.append(f"{b}: {tiers[b]} overlaps {a} {tiers[a]}; tiers must be disjoint")
        for name, net in tiers.items():
            if net.prefixlen > 28:
                problems.append(f"{name}: {net} is too small; use at least a /28")
        if problems:
            raise ValueError("\n".join(problems))
        return self


class PortRange(_Model):
    start: Annotated[int, Field(ge=1024, le=65535)]
    end: Annotated[int, Field(ge=1024, le=65535)]

    @model_validator(mode="after")
    def _ordered(self) -> PortRange:
        if self.start > self.end:
            raise ValueError(f"start {self.start} is above end {self.end}; the range is inverted, swap them")
        return self

    @property
    def size(self) -> int:
        return self.end - self.start + 1


class Ports(_Model):
    """Media ports. LiveKit uses either a UDP range (two ports per participant) or one mux port."""

    sfu_udp_range: PortRange | None = PortRange(start=50000, end=60000)
    sfu_udp_mux_port: Annotated[int, Field(ge=1024, le=65535)] | None = None
    sfu_ice_tcp_port: Annotated[int, Field(ge=1024, le=65535)] = 7881
    turn_relay_range: PortRange = PortRange(start=49152, end=65535)

    @model_validator(mode="after")
    def _one_udp_mode(self) -> Ports:
        problems = []
        if self.sfu_udp_range is not None and self.sfu_udp_mux_port is not None:
            problems.append(
                "sfu_udp_mux_port: set together with sfu_udp_range; LiveKit uses one or the other "
                "(set sfu_udp_range: null to use the mux port)"
            )
        if self.sfu_udp_range is None and self.sfu_udp_mux_port is None:
            problems.append(
                "sfu_udp_range: set a range (e.g. {start: 50000, end: 60000}) or sfu_udp_mux_port"
            )
        if self.sfu_ice_tcp_port in LIVEKIT_RESERVED_TCP_PORTS:
            problems.append(
                f"sfu_ice_tcp_port: {self.sfu_ice_tcp_port} is "
                f"{LIVEKIT_RESERVED_TCP_PORTS[self.sfu_ice_tcp_port]}; use 7881"
            )
        relay = self.turn_relay_range
        inside = [
            f"{port} ({what})"
            for port, what in TURN_LISTENING_PORTS.items()
            if relay.start <= port <= relay.end
        ]
        if inside:
            problems.append(
                f"turn_relay_range: {relay.start}-{relay.end} contains port(s) {', '.join(inside)}; "
                "keep the relay range above them (default 49152-65535)"
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self


class Domains(_Model):
    """Public names. Certificates are issued for these."""

    signalling: Annotated[
        str, Field(pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$")
    ]
    """LiveKit signalling name, served over TLS on 443 (wss://<signalling>)."""
    turn: Annotated[str, Field(pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$")]
    """TURN name (turns:<turn>:443)."""

    @model_validator(mode="after")
    def _distinct(self) -> Domains:
        if self.signalling == self.turn:
            raise ValueError(
                f"turn: '{self.turn}' is also the signalling name; SFU and TURN both serve TLS on 443 from "
                "different addresses, give each its own name (e.g. sfu.<zone> and turn.<zone>)"
            )
        return self


class Tls(_Model):
    """Where service certificates come from."""

    source: Literal["stack-ca", "files"]
    """`stack-ca`: the stack issues its own CA and certificates (lab, internal PKI bootstrap);
    `files`: certificates from the ministry's PKI, given as paths on the operator's machine."""
    cert_file: str | None = None
    key_file: str | None = None
    ca_file: str | None = None

    @model_validator(mode="after")
    def _files(self) -> Tls:
        if self.source == "files" and not (self.cert_file and self.key_file):
            missing = "cert_file" if not self.cert_file else "key_file"
            raise ValueError(f"{missing}: source 'files' needs cert_file and key_file (paths to PEM files)")
        if self.source == "stack-ca" and (self.cert_file or self.key_file or self.ca_file):
            raise ValueError("source: cert_file/key_file/ca_file are only used with source 'files'")
        return self


class Meet(_Model):
    """The Meet (La Suite numérique) backend this SFU serves."""

    webhook_url: Annotated[str, Field(pattern=r"^https://[^\s/]+/.*$")] | None = None
    """LiveKit webhooks target, e.g. https://visio.example.gouv.fr/api/v1.0/rooms/webhooks-livekit/"""
    database: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,62}$")] = "meet"
    database_user: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,62}$")] = "meet"

    @field_validator("webhook_url")
    @classmethod
    def _sovereign_webhook(cls, url: str | None) -> str | None:
        if url is not None:
            _check_sovereign(url)
        return url


class Coefficients(_Model):
    """Capacity figures from LiveKit's published benchmark (shared/REFERENCE.md), overridable."""

    vcpu_per_video_participant: Annotated[float, Field(gt=0)] = 0.09
    vcpu_per_audio_participant: Annotated[float, Field(gt=0)] = 0.004
    mbps_in_per_video_participant: Annotated[float, Field(gt=0)] = 2.7
    mbps_out_per_video_participant: Annotated[float, Field(gt=0)] = 5.0
    mbps_per_audio_participant: Annotated[float, Field(gt=0)] = 0.06
    target_cpu_utilisation: Annotated[float, Field(gt=0, le=1)] = 0.7
    """Plan SFU CPU at this share of a node so a spike or a drained neighbour fits."""
    nic_utilisation: Annotated[float, Field(gt=0, le=1)] = 0.7
    """Plan NIC bandwidth at this share of a flavor's limit (bursts, retransmissions, key frames)."""
    sfu_reserved_vcpu_per_node: Annotated[float, Field(ge=0)] = 1.0
    """vCPU kept for the OS, kernel networking and agents on each SFU node (not from the benchmark)."""
    turn_allocations_per_relay_ip: Annotated[int, Field(gt=0)] = 16000
    """coturn allocations one relay address serves with the default port range (REFERENCE.md)."""
    turn_allocations_per_participant: Annotated[int, Field(gt=0)] = 2
    """LiveKit opens a publisher and a subscriber peer connection, each relayed separately."""
    turn_allocations_per_vcpu: Annotated[int, Field(gt=0)] = 2000
    """coturn is bandwidth-bound: "thousands of allocations per CPU" (REFERENCE.md), TLS included."""
    db_users_per_vcpu: Annotated[int, Field(gt=0)] = 50000
    """Meet backend queries per user are light (join, room rights); one vCPU serves this many accounts."""
    db_users_per_ram_gib: Annotated[int, Field(gt=0)] = 25000
    """RAM so the working set (users, rooms, accesses) and connections stay in memory."""
    db_kib_per_user: Annotated[float, Field(gt=0)] = 50.0
    """Data per account (user, rooms, accesses, recordings metadata, indexes)."""
    db_volume_headroom: Annotated[float, Field(ge=1)] = 4.0
    """Data volume = data x headroom (WAL, bloat, growth, dumps staged before upload)."""
    db_second_replica_users: Annotated[int, Field(gt=0)] = 200000
    """From this many users, a second replica keeps a standby while a failed node is rebuilt."""


class Sizing(_Model):
    """Sizing knobs. `nodes` pins counts (the lab); otherwise they are derived from the audience."""

    coefficients: Coefficients = Coefficients()
    nodes: dict[Literal["sfu", "turn", "db", "redis", "bastion"], Annotated[int, Field(ge=0)]] = {}
    spare_nodes: Annotated[int, Field(ge=1)] = 1
    """Extra SFU/TURN nodes so one can drain during upgrades without losing capacity."""


class Hosts(_Model):
    """How `pulumi up` treats the machines once they exist."""

    configure_on_up: bool = True
    """Run the Ansible host configuration as the last step of `pulumi up`. `false`: provisioning
    only; `pulumi up` creates and exports everything (inventory, secrets, certificates) and
    `visio configure <stack>` configures the hosts later (a separate change window, or servers that
    cannot be reached from where `pulumi up` runs). The lab always configures."""


class Upgrade(_Model):
    """Rolling upgrade behaviour."""

    drain_deadline_seconds: Annotated[int, Field(gt=0)] = 3600
    """How long to wait for a draining node to empty before stopping the rollout."""
    min_serving: Annotated[int, Field(ge=1)] = 1
    """Never leave fewer serving nodes of a role than this during a rollout."""


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
                    "{sfu: 2, turn: 1, db: 2, redis: 1, bastion: 0}",
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
        if pinned.get("db") is not None and pinned["db"] < 2:
            problems.append(
                ("sizing.nodes.db", f"{pinned['db']}: production needs a primary and a replica (2)")
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
    if config.upgrade.min_serving > 1 + config.sizing.spare_nodes and not config.is_lab:
        problems.append(
            (
                "upgrade.min_serving",
                f"{config.upgrade.min_serving} cannot be kept while a node drains with spare_nodes "
                f"{config.sizing.spare_nodes}; use at most {1 + config.sizing.spare_nodes}",
            )
        )
    return problems


def ssh_key_problem(key: str) -> str | None:
    """Why `key` is not a usable OpenSSH public key line, or None."""
    parts = key.split()
    shown = key[:40] + ("..." if len(key) > 40 else "")
    if len(parts) < 2:
        return f"'{shown}' is not an SSH public key line ('<type> <base64> [comment]')"
    kind, blob_text = parts[0], parts[1]
    if kind not in (
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "ssh-rsa",
    ):
        return (
            f"'{shown}': key type '{kind}' is not accepted; use ssh-ed25519 (or ecdsa-sha2-nistp*, ssh-rsa)"
        )
    try:
        blob = base64.b64decode(blob_text, validate=True)
        (length,) = struct.unpack(">I", blob[:4])
        embedded = blob[4 : 4 + length].decode("ascii")
    except (binascii.Error, struct.error, UnicodeDecodeError):
        return f"'{shown}': the key data is not valid base64 OpenSSH key material"
    if embedded != kind:
        return f"'{shown}': the key data is a '{embedded}' key but the line says '{kind}'"
    if kind == "ssh-ed25519" and len(blob) != 4 + len(kind) + 4 + 32:
        return f"'{shown}': truncated ed25519 key (copy the whole line of the .pub file)"
    if kind == "ssh-rsa":
        rest = blob[4 + length :]
        (elen,) = struct.unpack(">I", rest[:4])
        (nlen,) = struct.unpack(">I", rest[4 + elen : 8 + elen] or b"\0\0\0\0")
        bits = (nlen - 1) * 8 if nlen else 0
        if bits < 2048:
            return f"'{shown}': RSA key of about {bits} bits; use ssh-ed25519 or RSA of at least 2048 bits"
    return None


def _check_sovereign(url: str) -> None:
    """Refuse endpoints run by non-European companies (the list lives in `visio_infra.sovereignty`)."""
    found = describe_foreign_endpoints(url)
    if found:
        raise ValueError(
            f"'{url}' points to {', '.join(found)}, a non-European service; Visio's endpoints stay on "
            "sovereign infrastructure (the ministry's own or a SecNumCloud provider's)"
        )


_NTP_HOST = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9.:-]*[A-Za-z0-9])?$")


def _ntp_servers(servers: list[str]) -> list[str]:
    problems = []
    if not servers:
        problems.append("give at least one NTP server (e.g. ntp1.interieur.gouv.fr)")
    for server in servers:
        if not _NTP_HOST.match(server):
            problems.append(f"'{server}' is not a host name or an IP address (e.g. ntp1.interieur.gouv.fr)")
            continue
        found = describe_foreign_endpoints(server)
        if found:
            problems.append(
                f"'{server}' is {', '.join(found)}, a non-European time service; use the ministry's own "
                "NTP servers or the French NTP Pool zone (0.fr.pool.ntp.org)"
            )
    if len(set(servers)) != len(servers):
        problems.append("the same NTP server is listed twice")
    if problems:
        raise ValueError("; ".join(problems))
    return servers


def _mirror_url(url: str) -> str:
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
        raise ValueError(
            f"'{url}' is not an http(s) URL of a Debian mirror (e.g. http://miroir.interieur.gouv.fr/debian)"
        )
    _check_sovereign(url)
    return url.rstrip("/")


SECTIONS = tuple(StackConfig.model_fields)
"""The `visio:<section>` keys a stack file may hold."""

_TYPE_HINTS = {
    "ip_v4_network": "give an IPv4 network in CIDR form, e.g. 10.20.0.0/24",
    "ip_v6_network": "give an IPv6 network in CIDR form, e.g. 2001:db8::/48",
    "ip_any_network": "give a network in CIDR form, e.g. 10.20.0.0/24 or 2001:db8::/48",
    "ip_v4_address": "give an IPv4 address, e.g. 10.0.0.53",
    "int_parsing": "give a whole number",
    "int_from_float": "give a whole number",
    "float_parsing": "give a number",
    "bool_parsing": "give true or false",
    "list_type": "give a list",
    "model_type": "give a mapping of fields",
    "dict_type": "give a mapping",
    "string_type": "give a text value",
}
"""What would be valid, for pydantic's type errors whose own message does not say it."""


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if not (isinstance(p, str) and p in ("openstack", "lab"))]
    # pydantic adds the constraint/type name for unions of constrained types (e.g. "function-after[...]")
    parts = [p for p in parts if not re.match(r"^[a-z-]+\[", p)]
    if not parts:
        return f"{PROJECT}:*"
    head, *rest = parts
    path = f"{PROJECT}:{head}"
    for part in rest:
        path += f"[{part}]" if part.isdigit() else f".{part}"
    return path


def _model_at(loc: tuple[Any, ...]) -> Any:
    """The pydantic model the location points into (None when it is not a model)."""
    model: Any = StackConfig
    for part in loc:
        if isinstance(part, int) or part in ("openstack", "lab"):
            model = {"openstack": OpenStackCloud, "lab": LabCloud}.get(str(part), model)
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return None
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return None
    return model


def _field_doc(loc: tuple[Any, ...]) -> str | None:
    parent = _model_at(loc[:-1])
    field = getattr(parent, "model_fields", {}).get(loc[-1]) if parent is not None and loc else None
    if field is None or not field.description:
        return None
    return " ".join(field.description.split())


def _describe(error: Mapping[str, Any]) -> list[str]:
    """Readable lines for one pydantic error: `visio:<section>.<field>: what is wrong; what is valid`."""
    loc = tuple(error["loc"])
    kind = error["type"]
    field = _field_path(loc)
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        allowed = sorted(getattr(parent, "model_fields", {}))
        hint = f"; valid fields here: {', '.join(allowed)}" if allowed else ""
        return [f"{field}: unknown field; remove it or check the spelling{hint}"]
    if kind == "missing":
        doc = _field_doc(loc)
        return [f"{field}: required field is missing" + (f" ({doc})" if doc else "")]
    message = str(error["msg"]).removeprefix("Value error, ")
    got = error.get("input")
    already_shown = kind == "value_error" and str(got) in message
    shown = "" if isinstance(got, dict | list) or got is None or already_shown else f" (got {got!r})"
    if kind == "union_tag_invalid":
        return [f"{field}.{error.get('ctx', {}).get('discriminator', 'kind').strip(chr(39))}: {message}"]
    if kind in _TYPE_HINTS:
        return [f"{field}: {message}{shown}; {_TYPE_HINTS[kind]}"]
    if kind == "value_error" and isinstance(_model_at(loc), type):
        # Model-level checks write "subfield: message" lines; attach each to its own field.
        lines = []
        for line in message.splitlines():
            sub, sep, text = line.partition(": ")
            if sep and re.fullmatch(r"[a-z_]+(\.[a-z_]+)*", sub):
                lines.append(f"{field}.{sub}: {text}" if loc else f"{PROJECT}:{sub}: {text}")
            else:
                lines.append(f"{field}: {line}")
        return lines
    return [f"{field}: {message}{shown}"]


def parse_stack_config(raw: Mapping[str, Any], source: str) -> StackConfig:
    """Validate the `visio:*` keys of one stack (values as YAML/JSON data or JSON strings).

    Checks fields, then cross-section rules, then that sizing and the address plan can serve the
    audience. `source` names the stack file in every message. Raises StackConfigError listing every
    problem, one line each.
    """
    problems: list[str] = []
    data: dict[str, Any] = {}
    for key, value in raw.items():
        project, _, section = key.partition(":")
        if project != PROJECT:
            continue  # other namespaces (openstack:*, pulumi:*) are not ours to judge
        if section not in SECTIONS:
            problems.append(
                f"{key}: unknown section; valid sections: {', '.join(PROJECT + ':' + s for s in SECTIONS)}"
            )
            continue
        if isinstance(value, str) and value[:1] in "{[":
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                problems.append(f"{key}: not valid structured data ({exc.msg})")
                continue
        data[section] = value
    config: StackConfig | None = None
    try:
        config = StackConfig.model_validate(data, context={"deferred_cross_checks": True})
    except ValidationError as exc:
        for error in exc.errors():
            problems.extend(_describe(error))
    if config is not None:
        problems.extend(f"{PROJECT}:{field}: {message}" for field, message in cross_problems(config))
        if not problems:
            problems.extend(_capacity_problems(config))
    if problems or config is None:
        raise StackConfigError(source, problems)
    return config


def _capacity_problems(config: StackConfig) -> list[str]:
    """Whether sizing can serve the audience and the nodes fit their tiers (both pure)."""
    from visio_infra.sizing import SizingError, plan
    from visio_infra.topology import TopologyError, plan_nodes

    try:
        counts = plan(config).counts
    except SizingError as exc:
        return [str(exc)]
    try:
        plan_nodes(config, counts)
    except TopologyError as exc:
        tier = re.search(r"network\.(\w+_cidr)", str(exc))
        return [f"{PROJECT}:network.{tier.group(1) if tier else '*'}: {exc}"]
    return []


def stack_file(stack: str, root: Path | None = None) -> Path:
    """Path of a stack's config file."""
    base = root or Path(__file__).resolve().parent.parent
    return base / "stacks" / f"Pulumi.{stack}.yaml"


def load_stack_file(path: Path) -> StackConfig:
    """Read and validate a stack file without Pulumi (used by `visio plan` and tests)."""
    import yaml

    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        known = sorted(
            p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in path.parent.glob("Pulumi.*.yaml")
        )
        hint = f"; stacks in {path.parent}: {', '.join(known)}" if known else ""
        raise StackConfigError(
            str(path), [f"file not found; stacks live in stacks/Pulumi.<stack>.yaml{hint}"]
        ) from None
    except yaml.YAMLError as exc:
        raise StackConfigError(str(path), [f"not valid YAML: {exc}"]) from None
    raw = document.get("config") if isinstance(document, dict) else None
    if not isinstance(raw, dict):
        raise StackConfigError(str(path), ["no `config:` mapping with visio:* keys"])
    return parse_stack_config(raw, source=_display(path))


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def load_from_pulumi() -> StackConfig:
    """Validate the running stack's config; on error, fail before any resource is registered."""
    import pulumi
    from pulumi.runtime.config import get_config_env

    stack = pulumi.get_stack()
    try:
        return parse_stack_config(get_config_env(), source=f"stacks/Pulumi.{stack}.yaml")
    except StackConfigError as exc:
        # RunError prints the message without a Python traceback.
        raise pulumi.RunError(str(exc)) from None
