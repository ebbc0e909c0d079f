"""Each role's sizing: SFU and TURN from the audience and the benchmark figures, the
database from the number of accounts, Redis and the bastion fixed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from visio_infra.model.config.capacity import Coefficients
from visio_infra.model.config.stack import StackConfig
from visio_infra.model.pricing import Flavor, Offer
from visio_infra.model.sizing.flavors import (
    _choose,
    _count_reason,
    _flavor_pinned,
    _flavor_reason,
    _fmt,
    _no_flavor,
    _pinned_count,
    _replace_cost,
    _with_reasons,
)
from visio_infra.model.sizing.results import (
    DB_MIN_VOLUME_GIB,
    MIN_RAM_GIB,
    MIN_VCPU,
    Constraint,
    Reason,
    RolePlan,
    SizingError,
)


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
    # Always a leader and two standbys: the three nodes also carry Patroni's etcd quorum.
    replicas = 2
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
            "1 Patroni leader + 2 standbys (one synchronous), each with an etcd member (quorum of 3)"
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
