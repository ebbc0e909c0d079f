"""Can the cloud hold the stack? The judgement, pure: what the cloud has (`CloudFacts`, read
by `visio_infra.commands.cloud_check`) against what the stack needs (`cloud_needs`). A
stack that meets a missing flavor or an exhausted quota half-way through `pulumi up`
leaves a partial deployment behind, so each problem is named first, one line each with
the stack file, the resource or quota, the numbers and the fix.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from visio_infra.model.cloud_needs import (
    DHCP_PORTS_PER_NETWORK,
    NEUTRON_DEFAULT_EGRESS_RULES,
    CloudNeeds,
    NodeNeed,
)
from visio_infra.model.config.base import ROLES
from visio_infra.model.topology import server_group_count

SHOWN_CHOICES = 8
"""How many existing names a fix line lists at most."""


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
                    f"{_choices(list(facts.flavors))}); check visio:cloud.offer and "
                    "visio_infra/model/pricing.py"
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
                "visio_infra/model/pricing.py"
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
            "visio_infra/model/pricing.py)"
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
