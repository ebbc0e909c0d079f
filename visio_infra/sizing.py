"""From a ministry's audience to node counts and flavors per role (pure: no Pulumi, no I/O).

The model is deliberately simple and fully explained in `SizingPlan.reasoning`, so an operator can
check every number `visio plan` prints:

- SFU: CPU and NIC bandwidth per participant from LiveKit's published benchmark (the named,
  overridable `sizing.coefficients`), UDP ports (two per participant in range mode); at least 2
  serving nodes plus `sizing.spare_nodes` so one can drain during an upgrade; a room lives on one
  node, so the largest meeting must fit on one node on its own.
- TURN: the relayed share of participants; a relayed stream crosses the TURN NIC twice (client <->
  TURN <-> SFU), allocations are limited per relay address and per vCPU; same 2 + spare floor.
- DB: a primary and a streaming replica (a second replica for large ministries), flavor from users.
- Redis: one node (LiveKit keeps only room-routing state there, rebuilt by the nodes after a restart).
- Bastion: one in OpenStack, none in the lab (the host reaches the machines directly).

Flavors are the cheapest of the offer's price table (`visio_infra.pricing`) able to do the job with
the resulting count, unless `cloud.flavors` pins them; `sizing.nodes` pins counts (the lab pins all).
Choosing the cheapest feasible flavor keeps the monthly cost monotonic in every audience figure: a
bigger audience only removes candidates or raises their counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from visio_infra.config import ROLES, Coefficients, LabCloud, StackConfig
from visio_infra.pricing import BOOT_VOLUME_GIB, Flavor, Offer, offer

MIN_SERVING = 2
"""Production roles keep at least two serving nodes (one can fail), before spares."""

MIN_RAM_GIB = {"sfu": 4, "turn": 2, "db": 4, "redis": 2, "bastion": 1}
"""Smallest RAM per node a role is given whatever the load."""

MIN_VCPU = {"sfu": 2, "turn": 2, "db": 2, "redis": 1, "bastion": 1}

DB_MIN_VOLUME_GIB = 20

PUBLIC_ROLES = frozenset({"sfu", "turn", "bastion"})
"""Roles paying for a floating IP (kept in step with topology.PUBLIC_ROLES)."""


class SizingError(ValueError):
    """The audience cannot be served with this cloud's flavors or the pinned counts/flavors.

    `field` is the `visio:<section>.<field>` to change.
    """

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True)
class Reason:
    """One line of reasoning: what, how it is computed, the result."""

    what: str
    formula: str
    value: str


@dataclass(frozen=True)
class Constraint:
    """A resource a role needs in total and what one node of the chosen flavor provides."""

    name: str
    unit: str
    demand: float
    per_node: float

    @property
    def nodes(self) -> int:
        if self.demand <= 0:
            return 0
        return math.ceil(self.demand / self.per_node)


_ConstraintsFor = Callable[[Flavor], list[Constraint]]
"""flavor -> what the role needs in total and what one node of that flavor gives."""
_Fits = Callable[[Flavor, list[Constraint]], str | None]
"""flavor, constraints -> why the flavor cannot hold the role (None when it can)."""


@dataclass(frozen=True)
class RolePlan:
    """Count, flavor and the reasoning for one role."""

    role: str
    count: int
    serving: int
    """Nodes that must carry the load; `count - serving` are spares."""
    flavor: Flavor
    constraints: tuple[Constraint, ...]
    reasoning: tuple[Reason, ...]
    monthly_eur: float
    count_pinned: bool = False
    flavor_pinned: bool = False


@dataclass(frozen=True)
class SizingPlan:
    """The result of `plan`: counts and flavors per role, the reasoning and the monthly cost."""

    offer: Offer
    roles: dict[str, RolePlan]
    db_volume_gib: int
    """Size of each DB node's encrypted data volume."""
    largest_meeting: dict[str, float] = field(default_factory=dict)
    """Load of the largest meeting (vcpu, mbps_out, mbps_in, udp_ports) that one SFU node must hold."""

    @property
    def counts(self) -> dict[str, int]:
        return {role: self.roles[role].count for role in ROLES}

    @property
    def flavors(self) -> dict[str, str]:
        """Flavor name per role (roles with 0 nodes included, for a stable shape)."""
        return {role: self.roles[role].flavor.name for role in ROLES}

    @property
    def reasoning(self) -> dict[str, tuple[Reason, ...]]:
        return {role: self.roles[role].reasoning for role in ROLES}

    @property
    def monthly_eur(self) -> float:
        return round(sum(r.monthly_eur for r in self.roles.values()), 2)

    @property
    def yearly_eur(self) -> float:
        return round(self.monthly_eur * 12, 2)


@dataclass(frozen=True)
class _Load:
    """Per-participant averages for the audience's video/audio mix."""

    vcpu: float
    mbps_out: float
    mbps_in: float


def _mix(c: Coefficients, video_share: float) -> _Load:
    audio = 1 - video_share
    return _Load(
        vcpu=video_share * c.vcpu_per_video_participant + audio * c.vcpu_per_audio_participant,
        mbps_out=video_share * c.mbps_out_per_video_participant + audio * c.mbps_per_audio_participant,
        mbps_in=video_share * c.mbps_in_per_video_participant + audio * c.mbps_per_audio_participant,
    )


def _fmt(x: float) -> str:
    if float(x).is_integer():
        return f"{int(x):,}".replace(",", " ")
    return f"{x:,.3g}".replace(",", " ") if abs(x) < 100 else f"{x:,.1f}".replace(",", " ")


def _node_extras(offer_: Offer, role: str) -> float:
    """Per-node monthly cost besides the flavor: boot volume, floating IP for public roles."""
    extra = BOOT_VOLUME_GIB * offer_.block_eur_per_gib_month
    if role in PUBLIC_ROLES:
        extra += offer_.floating_ip_eur_month
    return extra


def _pinned_count(config: StackConfig, role: str) -> int | None:
    pinned: dict[str, int] = {str(k): v for k, v in config.sizing.nodes.items()}
    return pinned.get(role)


def _candidates(config: StackConfig, offer_: Offer, role: str) -> list[Flavor]:
    pinned = getattr(config.cloud, "flavors", None)
    name = getattr(pinned, role, None) if pinned is not None else None
    if name:
        return [offer_.flavor(name)]
    return list(offer_.flavors)


def _flavor_pinned(config: StackConfig, role: str) -> bool:
    pinned = getattr(config.cloud, "flavors", None)
    return bool(pinned is not None and getattr(pinned, role, None))


def _choose(
    config: StackConfig,
    offer_: Offer,
    role: str,
    constraints_for: _ConstraintsFor,
    *,
    minimum: int,
    spares: int,
    extra_monthly: float = 0.0,
    fits: _Fits | None = None,
) -> tuple[RolePlan | None, list[str]]:
    """Cheapest candidate flavor for a role; returns the plan or the reasons every candidate failed."""
    pinned_count = _pinned_count(config, role)
    rejected: list[str] = []
    best: tuple[tuple[float, int, str], RolePlan] | None = None
    for flavor in _candidates(config, offer_, role):
        if flavor.vcpu < MIN_VCPU[role] or flavor.ram_gib < MIN_RAM_GIB[role]:
            rejected.append(
                f"{flavor.name} ({flavor.vcpu} vCPU, {flavor.ram_gib} GiB) is below the role minimum"
            )
            continue
        constraints = constraints_for(flavor)
        if any(c.per_node <= 0 for c in constraints):
            rejected.append(f"{flavor.name} has no usable capacity for {role}")
            continue
        if fits is not None:
            why_not = fits(flavor, constraints)
            if why_not:
                rejected.append(f"{flavor.name}: {why_not}")
                continue
        needed = max([minimum, *(c.nodes for c in constraints)])
        if pinned_count is not None:
            serving = pinned_count if config.is_lab else pinned_count - spares
            if serving < needed:
                rejected.append(f"{flavor.name} needs {needed} serving nodes, {_PINNED_TOO_LOW} {serving}")
                continue
            count = pinned_count
        else:
            serving = needed
            count = needed + spares
        monthly = round(count * (flavor.eur_month + _node_extras(offer_, role)) + extra_monthly, 2)
        plan = RolePlan(
            role=role,
            count=count,
            serving=serving,
            flavor=flavor,
            constraints=tuple(constraints),
            reasoning=(),
            monthly_eur=monthly,
            count_pinned=pinned_count is not None,
            flavor_pinned=_flavor_pinned(config, role),
        )
        key = (monthly, count, flavor.name)
        if best is None or key < best[0]:
            best = (key, plan)
    return (best[1] if best else None), rejected


_PINNED_TOO_LOW = "the pinned count gives"


def _no_flavor(config: StackConfig, role: str, what: str, rejected: list[str]) -> SizingError:
    if rejected and all(_PINNED_TOO_LOW in r for r in rejected):
        field_ = f"visio:sizing.nodes.{role}"
    elif _flavor_pinned(config, role):
        field_ = f"visio:cloud.flavors.{role}"
    elif _pinned_count(config, role) is not None:
        field_ = f"visio:sizing.nodes.{role}"
    else:
        field_ = what
    hint = {
        f"visio:sizing.nodes.{role}": "raise the pinned count, or remove it to let sizing decide",
        f"visio:cloud.flavors.{role}": "pin a bigger flavor, or remove the pin to let sizing choose",
    }.get(field_, "add a bigger flavor to the offer's price table or lower the audience figures")
    return SizingError(field_, f"no flavor can serve the {role} role: {'; '.join(rejected)}; {hint}")


def _count_reason(plan: RolePlan, minimum: int, spares: int, lab: bool) -> Reason:
    parts = [f"{c.name} {c.nodes}" for c in plan.constraints]
    if plan.count_pinned:
        return Reason(
            "nodes (pinned by sizing.nodes)",
            f"needs max({', '.join(parts)}, minimum {minimum}); pinned "
            + ("as is (lab)" if lab else f"{plan.count} = {plan.serving} serving + {spares} spare"),
            str(plan.count),
        )
    spare_text = f" + {spares} spare" if spares else ""
    return Reason("nodes", f"max({', '.join(parts)}, minimum {minimum}){spare_text}", str(plan.count))


def _flavor_reason(plan: RolePlan, offer_: Offer) -> Reason:
    f = plan.flavor
    how = (
        "pinned by cloud.flavors" if plan.flavor_pinned else f"cheapest feasible in the '{offer_.name}' table"
    )
    return Reason(
        "flavor",
        f"{how}: {f.vcpu} vCPU, {f.ram_gib} GiB, {_fmt(f.nic_gbps)} Gbit/s, EUR {_fmt(f.eur_month)}/month",
        f.name,
    )


def _meeting_capacity(config: StackConfig, flavor: Flavor, load: _Load, ports: int | None) -> int:
    """Largest meeting of this audience mix one node of `flavor` can hold."""
    c = config.sizing.coefficients
    limits = [
        (flavor.vcpu - c.sfu_reserved_vcpu_per_node) * c.target_cpu_utilisation / load.vcpu,
        flavor.nic_gbps * 1000 * c.nic_utilisation / load.mbps_out,
        flavor.nic_gbps * 1000 * c.nic_utilisation / load.mbps_in,
    ]
    if ports is not None:
        limits.append(ports / 2)
    return max(0, math.floor(min(limits)))


def _sfu(config: StackConfig, offer_: Offer, spares: int, minimum: int) -> tuple[RolePlan, dict[str, float]]:
    c = config.sizing.coefficients
    a = config.audience
    load = _mix(c, a.video_share)
    peak = a.peak_participants
    ports = config.ports.sfu_udp_range.size if config.ports.sfu_udp_range is not None else None
    meeting = {
        "vcpu": a.largest_meeting * load.vcpu,
        "mbps_out": a.largest_meeting * load.mbps_out,
        "mbps_in": a.largest_meeting * load.mbps_in,
        "udp_ports": 2 * a.largest_meeting if ports is not None else 0,
    }

    def constraints_for(flavor: Flavor) -> list[Constraint]:
        usable_mbps = flavor.nic_gbps * 1000 * c.nic_utilisation
        out = [
            Constraint(
                "cpu",
                "vCPU",
                peak * load.vcpu,
                (flavor.vcpu - c.sfu_reserved_vcpu_per_node) * c.target_cpu_utilisation,
            ),
            Constraint("egress", "Mbit/s", peak * load.mbps_out, usable_mbps),
            Constraint("ingress", "Mbit/s", peak * load.mbps_in, usable_mbps),
        ]
        if ports is not None:
            out.append(Constraint("udp ports", "ports", 2 * peak, ports))
        return out

    def fits(flavor: Flavor, constraints: list[Constraint]) -> str | None:
        per = {k.name: k.per_node for k in constraints}
        if meeting["vcpu"] > per["cpu"]:
            return f"largest meeting needs {_fmt(meeting['vcpu'])} vCPU, one node gives {_fmt(per['cpu'])}"
        if meeting["mbps_out"] > per["egress"]:
            sends = _fmt(meeting["mbps_out"])
            return f"largest meeting sends {sends} Mbit/s, one node gives {_fmt(per['egress'])}"
        if meeting["mbps_in"] > per["ingress"]:
            receives = _fmt(meeting["mbps_in"])
            return f"largest meeting receives {receives} Mbit/s, one node gives {_fmt(per['ingress'])}"
        if ports is not None and meeting["udp_ports"] > ports:
            return f"largest meeting needs {meeting['udp_ports']} UDP ports, the range has {ports}"
        return None

    plan, rejected = _choose(
        config, offer_, "sfu", constraints_for, minimum=minimum, spares=spares, fits=fits
    )
    if plan is None:
        if ports is not None and meeting["udp_ports"] > ports:
            raise SizingError(
                "visio:ports.sfu_udp_range",
                f"the largest meeting ({a.largest_meeting}) needs {meeting['udp_ports']} UDP ports (two per "
                f"participant) on one node but the range has {ports}; widen the range",
            )
        if not _flavor_pinned(config, "sfu") and _pinned_count(config, "sfu") is None:
            best = max(offer_.flavors, key=lambda f: _meeting_capacity(config, f, load, ports))
            holds = _meeting_capacity(config, best, load, ports)
            raise SizingError(
                "visio:audience.largest_meeting",
                f"{a.largest_meeting} participants ({_fmt(meeting['vcpu'])} vCPU, "
                f"{_fmt(meeting['mbps_out'])} Mbit/s out, {_fmt(meeting['mbps_in'])} Mbit/s in at "
                f"video_share {a.video_share}) do not fit on one "
                f"SFU node of any '{offer_.name}' flavor; the largest, {best.name}, holds {holds}. "
                "A room lives on one node: lower "
                f"largest_meeting to at most {holds} or add a bigger flavor to the price table",
            )
        raise _no_flavor(config, "sfu", "visio:audience.largest_meeting", rejected)
    cpu, egress, ingress = plan.constraints[:3]
    f = plan.flavor
    rows = [
        Reason("participants at peak", "audience.peak_participants", _fmt(peak)),
        Reason("on video", f"{_fmt(peak)} × video_share {a.video_share}", _fmt(peak * a.video_share)),
        Reason(
            "vCPU per participant (mix)",
            f"{a.video_share} × {c.vcpu_per_video_participant} + {_fmt(1 - a.video_share)} × "
            f"{c.vcpu_per_audio_participant}",
            _fmt(load.vcpu),
        ),
        Reason("CPU demand", f"{_fmt(peak)} × {_fmt(load.vcpu)}", f"{_fmt(cpu.demand)} vCPU"),
        Reason(
            "usable vCPU per node",
            f"({f.vcpu} − {_fmt(c.sfu_reserved_vcpu_per_node)} reserved) × {c.target_cpu_utilisation} target",
            _fmt(cpu.per_node),
        ),
        Reason(
            "egress demand",
            f"{_fmt(peak)} × ({a.video_share} × {c.mbps_out_per_video_participant} + "
            f"{_fmt(1 - a.video_share)} × {c.mbps_per_audio_participant}) Mbit/s",
            f"{_fmt(egress.demand)} Mbit/s",
        ),
        Reason(
            "ingress demand",
            f"{_fmt(peak)} × ({a.video_share} × {c.mbps_in_per_video_participant} + "
            f"{_fmt(1 - a.video_share)} × {c.mbps_per_audio_participant}) Mbit/s",
            f"{_fmt(ingress.demand)} Mbit/s",
        ),
        Reason(
            "usable NIC per node",
            f"{_fmt(f.nic_gbps)} Gbit/s × {c.nic_utilisation}",
            f"{_fmt(egress.per_node)} Mbit/s",
        ),
    ]
    for k in plan.constraints:
        rows.append(
            Reason(f"nodes for {k.name}", f"ceil({_fmt(k.demand)} / {_fmt(k.per_node)})", str(k.nodes))
        )
    rows.append(
        Reason(
            "largest meeting on one node",
            f"{a.largest_meeting} × {_fmt(load.vcpu)} = {_fmt(meeting['vcpu'])} vCPU ≤ {_fmt(cpu.per_node)}; "
            f"{_fmt(meeting['mbps_out'])} ≤ {_fmt(egress.per_node)} Mbit/s out; "
            f"{_fmt(meeting['mbps_in'])} ≤ {_fmt(ingress.per_node)} Mbit/s in"
            + (f"; {meeting['udp_ports']} ≤ {_fmt(ports)} UDP ports" if ports is not None else ""),
            "fits",
        )
    )
    rows.append(_count_reason(plan, minimum, spares, config.is_lab))
    rows.append(_flavor_reason(plan, offer_))
    return _with_reasons(plan, rows), meeting


def _turn(config: StackConfig, offer_: Offer, spares: int, minimum: int) -> RolePlan:
    c = config.sizing.coefficients
    a = config.audience
    load = _mix(c, a.video_share)
    relayed = a.peak_participants * a.turn_share
    allocations = relayed * c.turn_allocations_per_participant
    relay_ports = config.ports.turn_relay_range.size

    def constraints_for(flavor: Flavor) -> list[Constraint]:
        return [
            # A relayed participant's upload and download both enter and leave the TURN node.
            Constraint(
                "bandwidth",
                "Mbit/s",
                relayed * (load.mbps_in + load.mbps_out),
                flavor.nic_gbps * 1000 * c.nic_utilisation,
            ),
            Constraint(
                "allocations",
                "allocations",
                allocations,
                min(c.turn_allocations_per_relay_ip, relay_ports, flavor.vcpu * c.turn_allocations_per_vcpu),
            ),
        ]

    plan, rejected = _choose(config, offer_, "turn", constraints_for, minimum=minimum, spares=spares)
    if plan is None:
        raise _no_flavor(config, "turn", "visio:cloud.offer", rejected)
    bw, alloc = plan.constraints
    f = plan.flavor
    rows = [
        Reason(
            "relayed participants", f"{_fmt(a.peak_participants)} × turn_share {a.turn_share}", _fmt(relayed)
        ),
        Reason(
            "relay bandwidth per direction",
            f"{_fmt(relayed)} × ({_fmt(load.mbps_in)} in + {_fmt(load.mbps_out)} out) Mbit/s (each stream "
            "crosses the node twice)",
            f"{_fmt(bw.demand)} Mbit/s",
        ),
        Reason(
            "usable NIC per node",
            f"{_fmt(f.nic_gbps)} Gbit/s × {c.nic_utilisation}",
            f"{_fmt(bw.per_node)} Mbit/s",
        ),
        Reason(
            "allocations",
            f"{_fmt(relayed)} × {c.turn_allocations_per_participant} peer connections",
            _fmt(alloc.demand),
        ),
        Reason(
            "allocations per node",
            f"min({c.turn_allocations_per_relay_ip} per relay IP, {relay_ports} relay ports, "
            f"{f.vcpu} vCPU × {c.turn_allocations_per_vcpu})",
            _fmt(alloc.per_node),
        ),
    ]
    for k in plan.constraints:
        rows.append(
            Reason(f"nodes for {k.name}", f"ceil({_fmt(k.demand)} / {_fmt(k.per_node)})", str(k.nodes))
        )
    rows.append(_count_reason(plan, minimum, spares, config.is_lab))
    rows.append(_flavor_reason(plan, offer_))
    return _with_reasons(plan, rows)


def db_volume_gib(config: StackConfig) -> int:
    """Encrypted data volume per DB node, from the number of users."""
    c = config.sizing.coefficients
    data_gib = config.audience.users * c.db_kib_per_user / (1024 * 1024)
    return max(DB_MIN_VOLUME_GIB, math.ceil(data_gib * c.db_volume_headroom))


def _db(config: StackConfig, offer_: Offer) -> tuple[RolePlan, int]:
    c = config.sizing.coefficients
    users = config.audience.users
    vcpu = max(MIN_VCPU["db"], math.ceil(users / c.db_users_per_vcpu))
    ram = max(MIN_RAM_GIB["db"], math.ceil(users / c.db_users_per_ram_gib))
    replicas = 2 if users >= c.db_second_replica_users else 1
    minimum = 1 + replicas
    volume = db_volume_gib(config)
    volume_cost = volume * offer_.block_eur_per_gib_month

    def constraints_for(flavor: Flavor) -> list[Constraint]:
        return []

    def fits(flavor: Flavor, constraints: list[Constraint]) -> str | None:
        if flavor.vcpu < vcpu or flavor.ram_gib < ram:
            return f"{flavor.vcpu} vCPU/{flavor.ram_gib} GiB is below {vcpu} vCPU/{ram} GiB"
        return None

    plan, rejected = _choose(config, offer_, "db", constraints_for, minimum=minimum, spares=0, fits=fits)
    if plan is None:
        raise _no_flavor(config, "db", "visio:audience.users", rejected)
    plan = _replace_cost(plan, plan.monthly_eur + plan.count * volume_cost)
    rows = [
        Reason(
            "vCPU per node",
            f"max({MIN_VCPU['db']}, ceil({_fmt(users)} users / {c.db_users_per_vcpu}))",
            str(vcpu),
        ),
        Reason(
            "RAM per node",
            f"max({MIN_RAM_GIB['db']}, ceil({_fmt(users)} users / {c.db_users_per_ram_gib})) GiB",
            f"{ram} GiB",
        ),
        Reason(
            "data volume per node",
            f"max({DB_MIN_VOLUME_GIB}, {_fmt(users)} × {c.db_kib_per_user} KiB × "
            f"{c.db_volume_headroom} headroom)",
            f"{volume} GiB",
        ),
        Reason(
            "nodes",
            "1 primary + "
            + (
                f"2 replicas (users ≥ {c.db_second_replica_users})"
                if replicas == 2
                else "1 streaming replica"
            )
            + (" (pinned by sizing.nodes)" if plan.count_pinned else ""),
            str(plan.count),
        ),
        _flavor_reason(plan, offer_),
    ]
    return _with_reasons(plan, rows), volume


def _single(config: StackConfig, offer_: Offer, role: str, count: int, why: str) -> RolePlan:
    def constraints_for(flavor: Flavor) -> list[Constraint]:
        return []

    pinned = _pinned_count(config, role)
    plan, rejected = _choose(
        config, offer_, role, constraints_for, minimum=count if pinned is None else 0, spares=0
    )
    if plan is None:
        raise _no_flavor(config, role, "visio:cloud.offer", rejected)
    rows = [
        Reason("nodes" + (" (pinned by sizing.nodes)" if plan.count_pinned else ""), why, str(plan.count)),
        _flavor_reason(plan, offer_),
    ]
    return _with_reasons(plan, rows)


def _with_reasons(plan: RolePlan, rows: list[Reason]) -> RolePlan:
    return RolePlan(**{**plan.__dict__, "reasoning": tuple(rows)})


def _replace_cost(plan: RolePlan, monthly: float) -> RolePlan:
    return RolePlan(**{**plan.__dict__, "monthly_eur": round(monthly, 2)})


def offer_of(config: StackConfig) -> Offer:
    return offer("lab" if isinstance(config.cloud, LabCloud) else config.cloud.offer)


def plan(config: StackConfig) -> SizingPlan:
    """Node counts, flavors and cost for a validated stack config. Raises SizingError if impossible."""
    offer_ = offer_of(config)
    lab = config.is_lab
    spares = 0 if lab else config.sizing.spare_nodes
    minimum = 1 if lab else MIN_SERVING
    sfu, meeting = _sfu(config, offer_, spares, minimum)
    turn = _turn(config, offer_, spares, minimum)
    db, volume = _db(config, offer_)
    redis = _single(
        config,
        offer_,
        "redis",
        1,
        "one node: LiveKit keeps only room-routing state in Redis; nodes re-register after a "
        "restart, calls in progress keep their media",
    )
    bastion = _single(
        config,
        offer_,
        "bastion",
        0 if lab else 1,
        "none in the lab (the host reaches the machines)"
        if lab
        else "one: the only SSH entry point; DB/Redis have no public address",
    )
    return SizingPlan(
        offer=offer_,
        roles={"sfu": sfu, "turn": turn, "db": db, "redis": redis, "bastion": bastion},
        db_volume_gib=volume,
        largest_meeting=meeting,
    )
