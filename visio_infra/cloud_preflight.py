"""Can the cloud hold the stack? Judged before anything is created (`visio plan <stack> --check-cloud`).

A ministry stack that meets a missing flavor or an exhausted quota half-way through `pulumi up` leaves
a partial deployment behind. This module reads the cloud first and names each problem, one line each:

- `needs(config, sizing)`: what the OpenStack program will create (pure), computed from the same
  functions the program calls: `topology.plan_nodes`/`node_volumes`/`server_group_number`/`TIERS`,
  the sizing plan's flavors, `security_rules.security_rules`;
- `read_cloud(cloud)`: the only I/O, a dozen read-only API calls through openstacksdk;
- `problems(needs, facts)`: the judgement (pure): each line names the stack file, the resource or
  quota, the numbers and the fix.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from visio_infra.config import ROLES, OpenStackCloud, StackConfig
from visio_infra.pricing import Offer
from visio_infra.security_rules import security_rules
from visio_infra.sizing import SizingPlan
from visio_infra.topology import (
    TIERS,
    VolumeSpec,
    node_volumes,
    plan_nodes,
    server_group_count,
    server_group_number,
)

NEUTRON_DEFAULT_EGRESS_RULES = 2
"""Neutron gives every new security group an IPv4 and an IPv6 allow-all egress rule. The program
deletes them as it creates the group (`delete_default_rules`), but until then they count against the
project's rule quota, so the rule need includes them for every group the stack creates."""

DHCP_PORTS_PER_NETWORK = 1
"""Neutron's DHCP agent takes one port of the project on the stack's network (one agent per network,
Neutron's default `dhcp_agents_per_network`)."""

SHOWN_CHOICES = 8
"""How many existing names a fix line lists at most."""


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


# --- What the cloud has --------------------------------------------------------------------------


@dataclass(frozen=True)
class FlavorFacts:
    vcpus: int
    ram_mib: int
    disk_gib: int


@dataclass(frozen=True)
class ImageFacts:
    min_disk_gib: int = 0
    min_ram_mib: int = 0
    virtual_size_bytes: int | None = None


@dataclass(frozen=True)
class Quota:
    limit: int
    """Negative: unlimited."""
    used: int
    """In use plus reserved."""

    @property
    def free(self) -> int | None:
        return None if self.limit < 0 else max(0, self.limit - self.used)


@dataclass(frozen=True)
class CloudFacts:
    """What the project sees of the cloud, as `read_cloud` found it. None: not read (these credentials
    may not), so not judged; `unread` says why."""

    flavors: Mapping[str, FlavorFacts] | None = None
    images: Mapping[str, ImageFacts] | None = None
    """Active images visible to the project, by name."""
    external_networks: tuple[str, ...] | None = None
    volume_types: Mapping[str, bool | None] | None = None
    """Volume type -> has an encryption spec (None: these credentials may not read it)."""
    compute_zones: tuple[str, ...] | None = None
    volume_zones: tuple[str, ...] | None = None
    quotas: Mapping[str, Quota] = field(default_factory=dict)
    """Nova, Cinder and Neutron quota names (`cores`, `gigabytes`, `security_group_rule`...); a quota
    the cloud did not report is absent."""
    existing_servers: frozenset[str] = frozenset()
    """Names of the project's servers: a node that already exists needs nothing new."""
    unread: tuple[str, ...] = ()
    """What could not be read (and so was not judged), with why."""


# --- The judgement -------------------------------------------------------------------------------

_QUOTAS: dict[str, tuple[str, str]] = {
    "instances": ("Nova", "servers"),
    "cores": ("Nova", "vCPU"),
    "ram": ("Nova", "MiB of RAM"),
    "server_groups": ("Nova", "server groups"),
    "volumes": ("Cinder", "volumes"),
    "gigabytes": ("Cinder", "GiB of volumes"),
    "floatingip": ("Neutron", "floating IPs"),
    "security_group": ("Neutron", "security groups"),
    "security_group_rule": ("Neutron", "security group rules"),
    "network": ("Neutron", "networks"),
    "subnet": ("Neutron", "subnets"),
    "router": ("Neutron", "routers"),
    "port": ("Neutron", "ports"),
}
"""Quota name -> (service, unit of the need)."""


@dataclass(frozen=True)
class QuotaRow:
    """One quota, what the stack needs of it and what the project has left."""

    name: str
    service: str
    unit: str
    need: int
    quota: Quota | None
    """None: the cloud did not report this quota."""
    detail: str = ""

    @property
    def exceeded(self) -> bool:
        free = self.quota.free if self.quota else None
        return free is not None and self.need > free


def _to_create(needs_: CloudNeeds, facts: CloudFacts) -> tuple[list[NodeNeed], bool]:
    """Nodes whose server does not exist yet, and whether the stack-wide resources are still to create
    (none of the stack's servers exists: a stack being grown already has its network and groups)."""
    new = [n for n in needs_.nodes if n.name not in facts.existing_servers]
    return new, len(new) == len(needs_.nodes)


def quota_rows(needs_: CloudNeeds, facts: CloudFacts) -> list[QuotaRow]:
    """Every quota the stack draws on, with its need (pure)."""
    new, fresh = _to_create(needs_, facts)
    flavors = [(facts.flavors or {}).get(n.flavor) for n in new]
    volumes = [v for n in new for v in n.volumes]
    existing_groups = {n.server_group for n in needs_.nodes if n.name in facts.existing_servers}
    new_groups = {n.server_group for n in new} - existing_groups
    sgs = needs_.security_groups if fresh else 0
    transient = NEUTRON_DEFAULT_EGRESS_RULES * sgs
    rows: list[tuple[str, int, str]] = [
        ("instances", len(new), ""),
        # A missing flavor is its own problem line; its size is unknown, so it adds nothing here.
        ("cores", sum(f.vcpus for f in flavors if f), ""),
        ("ram", sum(f.ram_mib for f in flavors if f), ""),
        ("server_groups", len(new_groups), ""),
        ("volumes", len(volumes), ""),
        ("gigabytes", sum(v.size_gib for v in volumes), ""),
    ]
    for type_ in sorted({v.volume_type for v in volumes if v.volume_type}):
        typed = [v for v in volumes if v.volume_type == type_]
        rows += [
            (f"volumes_{type_}", len(typed), ""),
            (f"gigabytes_{type_}", sum(v.size_gib for v in typed), ""),
        ]
    rule_detail = (
        f" ({needs_.security_group_rules} declared + {transient} default egress rules Neutron adds to "
        "each new group until the program deletes them)"
        if fresh
        else ""
    )
    rows += [
        ("floatingip", sum(1 for n in new if n.floating_ip), ""),
        ("security_group", sgs, ""),
        ("security_group_rule", needs_.security_group_rules + transient if fresh else 0, rule_detail),
        ("network", needs_.networks if fresh else 0, ""),
        ("subnet", needs_.subnets if fresh else 0, ""),
        ("router", needs_.routers if fresh else 0, ""),
        (
            "port",
            len(new) + ((needs_.router_interfaces + DHCP_PORTS_PER_NETWORK) if fresh else 0),
            f" (one per server{', one per router interface and the DHCP port' if fresh else ''})",
        ),
    ]
    out = []
    for name, need, detail in rows:
        service, unit = _QUOTAS.get(name) or ("Cinder", _typed_unit(name))
        quota = facts.quotas.get(name)
        if quota is None and name not in _QUOTAS:
            continue  # no per-type Cinder quota on this cloud
        out.append(QuotaRow(name, service, unit, need, quota, detail))
    return out


def _typed_unit(name: str) -> str:
    kind, _, type_ = name.partition("_")
    return f"volumes of type '{type_}'" if kind == "volumes" else f"GiB of type '{type_}'"


def _choices(names: list[str] | tuple[str, ...], prefer: Callable[[str], bool] | None = None) -> str:
    ordered = sorted(names, key=lambda n: (not prefer(n) if prefer else False, n.lower()))
    if not ordered:
        return "(none visible to this project)"
    shown = ", ".join(f"'{n}'" for n in ordered[:SHOWN_CHOICES])
    return shown + (f" (and {len(ordered) - SHOWN_CHOICES} more)" if len(ordered) > SHOWN_CHOICES else "")


def _where(needs_: CloudNeeds) -> str:
    return f"cloud '{needs_.cloud}' (region {needs_.region})"


def _flavor_problems(needs_: CloudNeeds, facts: CloudFacts) -> list[str]:
    if facts.flavors is None:
        return []
    lines = []
    table = set(needs_.offer.flavor_names)
    usable = [name for name in facts.flavors if name in table]
    for role, name in needs_.flavors.items():
        field_ = f"visio:cloud.flavors.{role}"
        how = (
            "pinned"
            if role in needs_.pinned_flavors
            else f"chosen by sizing from the '{needs_.offer.name}' table"
        )
        real = facts.flavors.get(name)
        if real is None:
            if usable:
                fix = f"set {field_} to one of: {_choices(usable)}, or ask the cloud team to create '{name}'"
            else:
                fix = (
                    f"none of the '{needs_.offer.name}' price table's flavors exists here (the cloud has "
                    f"{_choices(list(facts.flavors))}); check visio:cloud.offer and visio_infra/pricing.py"
                )
            lines.append(
                f"{needs_.source}: {field_}: flavor '{name}' ({how}) does not exist in "
                f"{_where(needs_)}; {fix}"
            )
            continue
        assumed = needs_.offer.flavor(name)
        if real.vcpus < assumed.vcpu or real.ram_mib < assumed.ram_gib * 1024:
            lines.append(
                f"{needs_.source}: {field_}: flavor '{name}' has {real.vcpus} vCPU/{real.ram_mib} MiB in "
                f"{_where(needs_)} but the '{needs_.offer.name}' price table sizing used says "
                f"{assumed.vcpu} vCPU/{assumed.ram_gib * 1024} MiB; correct the table in "
                "visio_infra/pricing.py"
            )
    return lines


def _image_problems(needs_: CloudNeeds, facts: CloudFacts) -> list[str]:
    if facts.images is None:
        return []
    image = facts.images.get(needs_.image)
    if image is None:
        return [
            f"{needs_.source}: visio:cloud.image: image '{needs_.image}' does not exist (or is not active or "
            f"not visible to the project) in {_where(needs_)}; set visio:cloud.image to one of: "
            f"{_choices(list(facts.images), prefer=lambda n: 'debian' in n.lower())}"
        ]
    lines = []
    virtual_gib = math.ceil(image.virtual_size_bytes / 2**30) if image.virtual_size_bytes else 0
    disk_need = max(image.min_disk_gib, virtual_gib)
    boot_sizes = {v.size_gib for n in needs_.nodes for v in n.volumes if v.from_image}
    if boot_sizes and min(boot_sizes) < disk_need:
        lines.append(
            f"{needs_.source}: visio:cloud.image: image '{needs_.image}' needs a {disk_need} GiB disk but "
            f"the boot volumes have {min(boot_sizes)} GiB; use a smaller image (or raise BOOT_VOLUME_GIB in "
            "visio_infra/pricing.py)"
        )
    image_booted = sorted({n.role for n in needs_.nodes if not any(v.from_image for v in n.volumes)})
    for role in image_booted:
        flavor = (facts.flavors or {}).get(needs_.flavors[role])
        if flavor is None:
            continue  # already a flavor problem
        if flavor.disk_gib == 0 or flavor.disk_gib < disk_need or flavor.ram_mib < image.min_ram_mib:
            lines.append(
                f"{needs_.source}: visio:cloud.flavors.{role}: flavor '{needs_.flavors[role]}' "
                f"({flavor.disk_gib} GiB disk, {flavor.ram_mib} MiB) cannot boot image '{needs_.image}' "
                f"(needs a disk of at least {max(disk_need, 1)} GiB and {image.min_ram_mib} MiB); "
                "pick a flavor with a large enough root disk"
            )
    return lines


def _network_problems(needs_: CloudNeeds, facts: CloudFacts) -> list[str]:
    if facts.external_networks is None or needs_.external_network in facts.external_networks:
        return []
    return [
        f"{needs_.source}: visio:cloud.external_network: external network '{needs_.external_network}' does "
        f"not exist in {_where(needs_)}; set visio:cloud.external_network to one of: "
        f"{_choices(facts.external_networks)}"
    ]


def _volume_type_problems(needs_: CloudNeeds, facts: CloudFacts) -> list[str]:
    if facts.volume_types is None:
        return []
    wanted = sorted({v.volume_type for n in needs_.nodes for v in n.volumes if v.volume_type})
    encrypted = [t for t, enc in facts.volume_types.items() if enc]
    lines = []
    for type_ in wanted:
        choices = _choices(encrypted or list(facts.volume_types))
        kind = "encrypted volume types" if encrypted else "volume types"
        if type_ not in facts.volume_types:
            lines.append(
                f"{needs_.source}: visio:cloud.encrypted_volume_type: volume type '{type_}' does not exist "
                f"in {_where(needs_)}; set visio:cloud.encrypted_volume_type to one of the {kind}: {choices}"
            )
        elif facts.volume_types[type_] is False:
            lines.append(
                f"{needs_.source}: visio:cloud.encrypted_volume_type: volume type '{type_}' has no "
                f"encryption in {_where(needs_)}, so DB data would be stored in clear; set it to one of the "
                f"{kind}: {choices}"
            )
    return lines


def _zone_problems(needs_: CloudNeeds, facts: CloudFacts) -> list[str]:
    volumes_in_zones = any(n.volumes for n in needs_.nodes)
    lines = []
    for index, zone in enumerate(needs_.zones):
        missing = []
        if facts.compute_zones is not None and zone not in facts.compute_zones:
            missing.append(f"for servers (Nova zones: {_choices(facts.compute_zones)})")
        if volumes_in_zones and facts.volume_zones is not None and zone not in facts.volume_zones:
            missing.append(f"for volumes (Cinder zones: {_choices(facts.volume_zones)})")
        if missing:
            lines.append(
                f"{needs_.source}: visio:cloud.availability_zones[{index}]: availability zone '{zone}' does "
                f"not exist in {_where(needs_)} {' nor '.join(missing)}; list zones that exist in both"
            )
    return lines


def _member_problems(needs_: CloudNeeds, facts: CloudFacts) -> list[str]:
    quota = facts.quotas.get("server_group_members")
    if quota is None or quota.limit < 0:
        return []
    lines = []
    sizes = needs_.group_sizes
    for role in ROLES:
        groups = {k: v for k, v in sizes.items() if k[0] == role}
        too_big = {k: v for k, v in groups.items() if v > quota.limit}
        if not too_big:
            continue
        count = sum(groups.values())
        per_role = Counter(node.role for node in needs_.nodes)
        total = sum(server_group_count(per_role[r], max(quota.limit, 1)) for r in ROLES)
        largest = max(too_big.values())
        lines.append(
            f"{needs_.source}: quota server_group_members (Nova): the {count} {role} nodes' anti-affinity "
            f"group{'s' if len(groups) > 1 else ''} of up to {largest} members (visio:cloud."
            f"server_group_max_members {needs_.server_group_max_members}) exceed the project's limit of "
            f"{quota.limit} per group; set visio:cloud.server_group_max_members to {quota.limit} ({total} "
            f"groups in all) or ask the cloud team to raise server_group_members to at least {largest}"
        )
    return lines


def _quota_problems(needs_: CloudNeeds, facts: CloudFacts) -> list[str]:
    lines = []
    for row in quota_rows(needs_, facts):
        if not row.exceeded or row.quota is None:
            continue
        q = row.quota
        lines.append(
            f"{needs_.source}: quota {row.name} ({row.service}): the stack needs {row.need} {row.unit}"
            f"{row.detail}, {q.free} free of the project's limit {q.limit} ({q.used} used); ask the cloud "
            f"team to raise the project's {row.service} {row.name} quota to at least {q.used + row.need}"
        )
    return lines


def problems(needs_: CloudNeeds, facts: CloudFacts) -> list[str]:
    """Every reason the cloud cannot hold the stack, one line each (empty: it can)."""
    return [
        *_flavor_problems(needs_, facts),
        *_image_problems(needs_, facts),
        *_network_problems(needs_, facts),
        *_volume_type_problems(needs_, facts),
        *_zone_problems(needs_, facts),
        *_member_problems(needs_, facts),
        *_quota_problems(needs_, facts),
    ]


def not_judged(needs_: CloudNeeds, facts: CloudFacts) -> list[str]:
    """What the check could not vouch for with these credentials (said, never silently passed)."""
    notes = list(facts.unread)
    wanted = sorted({v.volume_type for n in needs_.nodes for v in n.volumes if v.volume_type})
    types = facts.volume_types or {}
    for type_ in wanted:
        if type_ in types and types[type_] is None:
            notes.append(
                f"encryption of volume type '{type_}': these credentials may not read Cinder's encryption "
                f"specs; ask the cloud team to confirm '{type_}' encrypts at rest"
            )
    return notes


def summary(needs_: CloudNeeds, facts: CloudFacts) -> str:
    """One line saying what was judged (for a passing check)."""
    new, _ = _to_create(needs_, facts)
    rows = {r.name: r for r in quota_rows(needs_, facts)}
    existing = len(needs_.nodes) - len(new)
    head = (
        f"{existing} of the stack's {len(needs_.nodes)} servers already exist; judged the {len(new)} to "
        "create: "
        if existing
        else ""
    )
    return (
        f"{head}{rows['instances'].need} servers ({rows['cores'].need} vCPU, {rows['ram'].need} MiB RAM), "
        f"{rows['volumes'].need} volumes ({rows['gigabytes'].need} GiB), {rows['floatingip'].need} floating "
        f"IPs, {rows['security_group'].need} security groups ({rows['security_group_rule'].need} rules at "
        f"most), {rows['server_groups'].need} server groups"
    )


# --- Reading the cloud (the only I/O) ------------------------------------------------------------


class CloudReadError(RuntimeError):
    """The cloud could not be reached or refused the credentials (the message carries no secret)."""


@dataclass
class CheckResult:
    needs: CloudNeeds
    facts: CloudFacts
    problems: list[str]
    seconds: float
    rows: list[QuotaRow] = field(default_factory=list)


def connect(cloud: OpenStackCloud) -> Any:
    """An openstacksdk connection from the operator's clouds.yaml entry (the stack's `cloud`) or, with
    `auth_url`, the OS_* environment. Nothing of the credentials is printed."""
    import openstack

    if cloud.cloud:
        return openstack.connect(cloud=cloud.cloud, region_name=cloud.region, api_timeout=60)
    return openstack.connect(auth_url=cloud.auth_url, region_name=cloud.region, api_timeout=60)


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _nova_quotas(conn: Any) -> dict[str, Quota]:
    absolute = conn.compute.get("/limits").json()["limits"]["absolute"]
    pairs = {
        "instances": ("maxTotalInstances", "totalInstancesUsed"),
        "cores": ("maxTotalCores", "totalCoresUsed"),
        "ram": ("maxTotalRAMSize", "totalRAMUsed"),
        "server_groups": ("maxServerGroups", "totalServerGroupsUsed"),
        "server_group_members": ("maxServerGroupMembers", None),
    }
    return {
        name: Quota(_int(absolute.get(limit), -1), _int(absolute.get(used)) if used else 0)
        for name, (limit, used) in pairs.items()
        if limit in absolute
    }


def _cinder_quotas(conn: Any) -> dict[str, Quota]:
    body = conn.block_storage.get(
        f"/os-quota-sets/{conn.current_project_id}", params={"usage": "True"}
    ).json()["quota_set"]
    return {
        name: Quota(_int(v.get("limit"), -1), _int(v.get("in_use")) + _int(v.get("reserved")))
        for name, v in body.items()
        if isinstance(v, dict) and name.startswith(("volumes", "gigabytes"))
    }


def _neutron_quotas(conn: Any) -> dict[str, Quota]:
    # Listing the project's security groups first makes Neutron create its `default` group if it
    # never did (it would on the first port anyway), so the usage read next counts it.
    list(conn.network.security_groups(project_id=conn.current_project_id))
    body = conn.network.get(f"/quotas/{conn.current_project_id}/details").json()["quota"]
    return {
        name: Quota(_int(v.get("limit"), -1), _int(v.get("used")) + _int(v.get("reserved")))
        for name, v in body.items()
        if isinstance(v, dict) and name in _QUOTAS
    }


def _flavors(conn: Any) -> dict[str, FlavorFacts]:
    return {
        f.name: FlavorFacts(vcpus=_int(f.vcpus), ram_mib=_int(f.ram), disk_gib=_int(f.disk))
        for f in conn.compute.flavors(details=True, is_public=None)
    }


def _images(conn: Any) -> dict[str, ImageFacts]:
    return {
        i.name: ImageFacts(_int(i.min_disk), _int(i.min_ram), i.virtual_size)
        for i in conn.image.images(status="active")
        if i.name
    }


def _volume_types(conn: Any) -> dict[str, bool | None]:
    import openstack

    types: dict[str, bool | None] = {}
    readable = True
    for t in conn.block_storage.types():
        if not readable:  # Cinder's policy refused the first one: it refuses them all
            types[t.name] = None
            continue
        try:
            encryption = conn.block_storage.get_type_encryption(t.id)
            types[t.name] = bool(encryption.encryption_id or encryption.provider)
        except openstack.exceptions.ForbiddenException:
            types[t.name], readable = None, False
        except openstack.exceptions.NotFoundException:
            types[t.name] = False
    return types


def read_cloud(cloud: OpenStackCloud) -> CloudFacts:
    """Read what `problems` judges, in parallel read-only calls. Raises CloudReadError when the cloud
    cannot be reached or the credentials are refused; a part these credentials may not read is
    listed in `unread` instead."""
    import keystoneauth1.exceptions as ks
    import openstack

    try:
        conn = connect(cloud)
        conn.authorize()
    except (openstack.exceptions.SDKException, ks.ClientException) as exc:
        raise CloudReadError(_safe(exc)) from None
    reads: dict[str, Callable[[], Any]] = {
        "flavors": lambda: _flavors(conn),
        "images": lambda: _images(conn),
        "external_networks": lambda: tuple(
            n.name for n in conn.network.networks(is_router_external=True) if n.name
        ),
        "volume_types": lambda: _volume_types(conn),
        "compute_zones": lambda: tuple(
            z.name for z in conn.compute.availability_zones() if (z.state or {}).get("available", True)
        ),
        "volume_zones": lambda: tuple(
            z.name for z in conn.block_storage.availability_zones() if (z.state or {}).get("available", True)
        ),
        "nova_quotas": lambda: _nova_quotas(conn),
        "cinder_quotas": lambda: _cinder_quotas(conn),
        "neutron_quotas": lambda: _neutron_quotas(conn),
        "existing_servers": lambda: frozenset(s.name for s in conn.compute.servers()),
    }
    got: dict[str, Any] = {}
    unread: list[str] = []
    with ThreadPoolExecutor(max_workers=len(reads)) as pool:
        futures = {name: pool.submit(read) for name, read in reads.items()}
        for name, future in futures.items():
            try:
                got[name] = future.result()
            except openstack.exceptions.ForbiddenException as exc:
                unread.append(f"{name}: {_safe(exc)}")
            except (openstack.exceptions.SDKException, ks.ClientException) as exc:
                raise CloudReadError(f"reading {name}: {_safe(exc)}") from None
    return CloudFacts(
        flavors=got.get("flavors"),
        images=got.get("images"),
        external_networks=got.get("external_networks"),
        volume_types=got.get("volume_types"),
        compute_zones=got.get("compute_zones"),
        volume_zones=got.get("volume_zones"),
        quotas={
            **got.get("nova_quotas", {}),
            **got.get("cinder_quotas", {}),
            **got.get("neutron_quotas", {}),
        },
        existing_servers=got.get("existing_servers", frozenset()),
        unread=tuple(unread),
    )


def _safe(exc: BaseException) -> str:
    """The exception's own words, one line (keystoneauth and openstacksdk never put secrets there)."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def check(config: StackConfig, sizing: SizingPlan, *, source: str) -> CheckResult:
    """Read the cloud and judge the stack against it, timed."""
    if not isinstance(config.cloud, OpenStackCloud):
        raise TypeError("the cloud preflight is for `kind: openstack` stacks")
    started = time.perf_counter()
    needs_ = needs(config, sizing, source=source)
    facts = read_cloud(config.cloud)
    found = problems(needs_, facts)
    return CheckResult(needs_, facts, found, time.perf_counter() - started, quota_rows(needs_, facts))


# --- Reporting -----------------------------------------------------------------------------------


def report(result: CheckResult) -> dict[str, Any]:
    """Plain data of a check (the JSON of `visio plan --check-cloud --format json`)."""
    return {
        "cloud": result.needs.cloud,
        "region": result.needs.region,
        "seconds": round(result.seconds, 3),
        "fits": not result.problems,
        "problems": result.problems,
        "not_checked": not_judged(result.needs, result.facts),
        "summary": summary(result.needs, result.facts),
        "quotas": [
            {
                "name": row.name,
                "service": row.service,
                "need": row.need,
                "used": row.quota.used if row.quota else None,
                "limit": row.quota.limit if row.quota else None,
                "free": row.quota.free if row.quota else None,
            }
            for row in result.rows
        ],
    }


def render_text(result: CheckResult) -> str:
    """The check as `visio plan --check-cloud` prints it (problem lines go to stderr separately)."""
    needs_ = result.needs
    lines = [
        f"Cloud check against {_where(needs_)}: {result.seconds:.2f} s, read-only (nothing was created)",
        f"  {'quota':<28} {'service':<8} {'needs':>6} {'used':>6} {'limit':>7} {'free':>7}",
    ]
    for row in result.rows:
        q = row.quota
        if q is None:
            used, limit, free = "-", "-", "-"
        elif q.free is None:
            used, limit, free = str(q.used), "none", "any"
        else:
            used, limit, free = str(q.used), str(q.limit), str(q.free)
        mark = "  <- exceeded" if row.exceeded else ""
        lines.append(f"  {row.name:<28} {row.service:<8} {row.need:>6} {used:>6} {limit:>7} {free:>7}{mark}")
    for note in not_judged(needs_, result.facts):
        lines.append(f"  not checked: {note}")
    if result.problems:
        lines.append(f"{len(result.problems)} problem(s), one line each on stderr; fix them before pulumi up")
    else:
        lines.append(f"The cloud can hold the stack: {summary(needs_, result.facts)}.")
    return "\n".join(lines) + "\n"
