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
- Redis: three nodes, a master and two replicas each with a Sentinel (quorum 2), so LiveKit's room
  routing survives the loss of any one node (automatic failover).
- Bastion: one in OpenStack, none in the lab (the host reaches the machines directly).

Flavors are the cheapest of the offer's price table (`visio_infra.model.pricing`) able to do the job with
the resulting count, unless `cloud.flavors` pins them; `sizing.nodes` pins counts (the lab pins all).
Choosing the cheapest feasible flavor keeps the monthly cost monotonic in every audience figure: a
bigger audience only removes candidates or raises their counts.
"""

from __future__ import annotations

from visio_infra.model.config.base import REDIS_MIN_NODES
from visio_infra.model.config.stack import StackConfig
from visio_infra.model.sizing.flavors import offer_of
from visio_infra.model.sizing.results import MIN_SERVING, SizingPlan
from visio_infra.model.sizing.roles import _db, _sfu, _single, _turn


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
        REDIS_MIN_NODES,
        "three: a master and two replicas, each with a Sentinel (quorum 2), so losing any one node "
        "fails over automatically; LiveKit keeps only room-routing state there",
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
    monitoring = _single(
        config,
        offer_,
        "monitoring",
        config.monitoring.node_count,
        "one: Prometheus, Alertmanager and the dashboard of the stack"
        if config.monitoring.node_count
        else "none: the ministry's own Prometheus scrapes the exporters (monitoring.prometheus: external)",
    )
    return SizingPlan(
        offer=offer_,
        roles={
            "sfu": sfu,
            "turn": turn,
            "db": db,
            "redis": redis,
            "bastion": bastion,
            "monitoring": monitoring,
        },
        db_volume_gib=volume,
        largest_meeting=meeting,
    )
