"""Choosing a flavor and a count from the offer's price table, and saying why."""

from __future__ import annotations

from visio_infra.model.config.cloud import LabCloud
from visio_infra.model.config.stack import StackConfig
from visio_infra.model.pricing import BOOT_VOLUME_GIB, Flavor, Offer, offer
from visio_infra.model.sizing.results import (
    MIN_RAM_GIB,
    MIN_VCPU,
    PUBLIC_ROLES,
    Reason,
    RolePlan,
    SizingError,
    _ConstraintsFor,
    _Fits,
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


def _with_reasons(plan: RolePlan, rows: list[Reason]) -> RolePlan:
    return RolePlan(**{**plan.__dict__, "reasoning": tuple(rows)})


def _replace_cost(plan: RolePlan, monthly: float) -> RolePlan:
    return RolePlan(**{**plan.__dict__, "monthly_eur": round(monthly, 2)})


def offer_of(config: StackConfig) -> Offer:
    return offer("lab" if isinstance(config.cloud, LabCloud) else config.cloud.offer)
