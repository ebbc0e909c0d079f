"""What every section of the stack config shares: the project key, the roles, the strict
base model (unknown keys are errors) and the error listing one line per problem.
"""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict

PROJECT = "visio"
"""Pulumi project name; every config key is `visio:<section>`."""

ROLES = ("sfu", "turn", "db", "redis", "bastion", "monitoring")
"""Node roles a deployment is made of."""

REDIS_MIN_NODES = 3
"""Redis runs as a master and two replicas, each with a Sentinel: three votes, so a quorum of 2
survives the loss of any one node (with two nodes, losing one leaves no majority to fail over)."""

WORLD = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))

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
