"""What sizing returns: per role a count, a flavor and the reasoning behind both."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from visio_infra.model.config.base import ROLES
from visio_infra.model.pricing import Flavor, Offer

MIN_SERVING = 2
"""Production roles keep at least two serving nodes (one can fail), before spares."""

MIN_RAM_GIB = {"sfu": 4, "turn": 2, "db": 4, "redis": 2, "bastion": 1, "monitoring": 4}
"""Smallest RAM per node a role is given whatever the load."""

MIN_VCPU = {"sfu": 2, "turn": 2, "db": 2, "redis": 1, "bastion": 1, "monitoring": 2}

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
