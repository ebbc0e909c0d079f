"""Alert thresholds that follow the stack's sizing (pure), for the `monitoring` role.

The alert "SFU CPU above its sizing target" compares with the busy CPU fraction the sizing assumes
(`sizing.coefficients.target_cpu_utilisation`), and "participants near capacity" with what one SFU
node of the chosen flavor is sized to carry. Deriving both here keeps the alerts and `visio plan`
on the same numbers: change the audience or the coefficients and both move together.
"""

from __future__ import annotations

import math

from visio_infra.model.config.stack import StackConfig
from visio_infra.model.sizing.plan import plan

PARTICIPANT_CONSTRAINTS = ("cpu", "egress", "ingress", "udp ports")
"""SFU sizing constraints that grow with the participants (all of them, today)."""


def sfu_participants_per_node(config: StackConfig) -> int:
    """Participants one SFU node is sized for: the tightest of its constraints, per participant.

    Each constraint's demand is `peak_participants x per-participant load`, so `per_node / demand x
    peak` is how many participants fill one node on that resource.
    """
    sfu = plan(config).roles["sfu"]
    peak = config.audience.peak_participants
    ratios = [
        c.per_node / c.demand for c in sfu.constraints if c.name in PARTICIPANT_CONSTRAINTS and c.demand > 0
    ]
    if not ratios:
        raise ValueError("the SFU sizing has no participant constraint: audience.peak_participants is 0?")
    return max(1, math.floor(min(ratios) * peak))


LAB_CPU_TARGET = 1.0
"""The lab's SFU CPU alert threshold: never crossed (a busy fraction cannot exceed 1). The lab's
machines are containers sharing the host's cores, and /proc/stat in a container is the host's, so
the alert would report the host's other work (builds, the OpenStack tests) as SFU load. The rule
itself is tested by `promtool test rules`."""


DISK_FILLING_FREE_FRACTION = 0.25
"""DiskFillingSoon looks at a filesystem whose free space is below a quarter of it."""
LAB_DISK_FILLING_FREE_FRACTION = 0.0
"""The lab's: never. Its machines' filesystems are the host's (one directory each), so the forecast
would follow the host's other work: a CI machine's builds and test clouds filled it steadily for an
hour and the alert fired on a healthy lab. DiskAlmostFull (under 10 % free) stays on."""


def alert_thresholds(config: StackConfig) -> dict[str, float | int]:
    """The monitoring role's sizing variables for this stack."""
    return {
        "monitoring_disk_filling_free_fraction": (
            LAB_DISK_FILLING_FREE_FRACTION if config.is_lab else DISK_FILLING_FREE_FRACTION
        ),
        "monitoring_sfu_cpu_target": (
            LAB_CPU_TARGET if config.is_lab else config.sizing.coefficients.target_cpu_utilisation
        ),
        "monitoring_sfu_participants_per_node": sfu_participants_per_node(config),
    }
