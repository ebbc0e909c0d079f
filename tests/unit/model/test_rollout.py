"""Rolling-upgrade plan: ordering, min-serving refusal, DB replica-first, resume and rollback state."""

from __future__ import annotations

import pytest

from visio_infra.model.rollout import (
    NodeState,
    Plan,
    PlanRefused,
    RolloutState,
    Step,
    build_plan,
    classify,
    resume_plan,
    stop_message,
    targets_from_versions,
)

OLD, NEW = "1.13.4", "1.13.5"


def sfu(name: str, version: str = OLD, serving: bool = True, load: int = 0) -> NodeState:
    return NodeState(name, "sfu", version, serving, load=load)


def turn(name: str, version: str = "4.6.1-1", serving: bool = True) -> NodeState:
    return NodeState(name, "turn", version, serving)


def db(name: str, version: str, primary: bool, serving: bool = True) -> NodeState:
    return NodeState(name, "db", version, serving, primary=primary, candidate="15.20-0+deb12u1")


def nodes_of(plan: Plan) -> list[str]:
    return [s.node for s in plan.steps]


def test_sfu_one_at_a_time_emptiest_first() -> None:
    plan = build_plan([sfu("sfu-1", load=5), sfu("sfu-2", load=0), sfu("sfu-3", load=2)],
                      {"sfu": NEW}, min_serving=1)
    assert nodes_of(plan) == ["sfu-2", "sfu-3", "sfu-1"]
    assert all(s.from_version == OLD and s.to_version == NEW and s.kind == "rolling" for s in plan.steps)


def test_node_out_of_service_goes_first_and_costs_no_capacity() -> None:
    # Two SFU nodes, min_serving 1, one already down: upgrading it first is allowed, and the
    # healthy one may still drain afterwards because the down one is back by then (health gate).
    plan = build_plan([sfu("sfu-1"), sfu("sfu-2", serving=False)], {"sfu": NEW}, min_serving=1)
    assert nodes_of(plan) == ["sfu-2", "sfu-1"]


def test_a_role_with_every_node_down_is_upgraded_node_by_node() -> None:
    # Nothing serves, so no call can be cut: each node comes back through its health gate.
    plan = build_plan([sfu("sfu-1", serving=False), sfu("sfu-2", serving=False)], {"sfu": NEW}, min_serving=1)
    assert nodes_of(plan) == ["sfu-1", "sfu-2"]


def test_hosts_without_the_service_are_left_to_the_converge() -> None:
    # New hosts (e.g. machines recreated in the same `pulumi up` as a version change): nothing to
    # drain or upgrade; this once refused the whole `up` with "0 of 2 serving".
    nodes = [sfu("sfu-1", version=None, serving=False), sfu("sfu-2", version=None, serving=False)]
    plan = build_plan(nodes, {"sfu": NEW}, min_serving=1)
    assert plan.empty
    assert any(f"sfu-1: no sfu version installed; the converge installs {NEW}" in n for n in plan.notes)
    mixed = build_plan([sfu("sfu-1", version=None, serving=False), sfu("sfu-2", load=3), sfu("sfu-3")],
                       {"sfu": NEW}, min_serving=1)
    assert nodes_of(mixed) == ["sfu-3", "sfu-2"]


def test_nodes_on_target_are_untouched() -> None:
    plan = build_plan([sfu("sfu-1", NEW), sfu("sfu-2")], {"sfu": NEW}, min_serving=1)
    assert nodes_of(plan) == ["sfu-2"]
    assert plan.unchanged == ("sfu-1",)


def test_nothing_to_do_is_an_empty_plan() -> None:
    plan = build_plan([sfu("sfu-1", NEW), sfu("sfu-2", NEW)], {"sfu": NEW}, min_serving=1)
    assert plan.empty
    assert "Nothing to upgrade" in plan.describe()


def test_refuses_to_drain_below_min_serving() -> None:
    with pytest.raises(PlanRefused) as error:
        build_plan([sfu("sfu-1"), sfu("sfu-2")], {"sfu": NEW}, min_serving=2)
    assert len(error.value.problems) == 2
    assert "leave 1 serving sfu node(s), fewer than upgrade.min_serving = 2" in error.value.problems[0]


def test_single_turn_node_cannot_be_drained_with_min_serving_one() -> None:
    with pytest.raises(PlanRefused, match="draining turn-1 would leave 0 serving turn"):
        build_plan([turn("turn-1", "4.6.1-1")], {"turn": "4.6.2-1"}, min_serving=1)


def test_an_already_degraded_role_refuses_draining_a_serving_node() -> None:
    # sfu-2 is already on the target but down: the plan does not touch it, so it never comes back.
    nodes = [sfu("sfu-1"), sfu("sfu-2", serving=False, version=NEW)]
    with pytest.raises(PlanRefused, match="draining sfu-1 would leave 0 serving"):
        build_plan(nodes, {"sfu": NEW}, min_serving=1)


def test_roles_in_order_and_role_filter() -> None:
    nodes = [sfu("sfu-1"), sfu("sfu-2"), turn("turn-1"), turn("turn-2"),
             db("db-1", "15.18-0+deb12u1", primary=True), db("db-2", "15.18-0+deb12u1", primary=False)]
    targets = {"sfu": NEW, "turn": "4.6.2-1", "db": "15.20-0+deb12u1"}
    plan = build_plan(nodes, targets, min_serving=1)
    assert [s.role for s in plan.steps] == ["sfu", "sfu", "turn", "turn", "db", "db"]
    only_turn = build_plan(nodes, targets, min_serving=1, roles=["turn"])
    assert nodes_of(only_turn) == ["turn-1", "turn-2"]
    assert set(only_turn.unchanged) == {"sfu-1", "sfu-2", "db-1", "db-2"}


def test_unknown_role_is_refused() -> None:
    with pytest.raises(PlanRefused, match="unknown role 'redis'"):
        build_plan([sfu("sfu-1")], {"sfu": NEW}, min_serving=1, roles=["redis"])


def test_db_replica_first_then_primary() -> None:
    # The primary is listed first in the inventory; it must still come last.
    nodes = [db("db-1", "15.18-0+deb12u1", primary=True), db("db-2", "15.18-0+deb12u1", primary=False)]
    plan = build_plan(nodes, {"db": "15.20-0+deb12u1"}, min_serving=1)
    assert [(s.node, s.kind) for s in plan.steps] == [("db-2", "replica"), ("db-1", "primary")]


def test_db_primary_needs_a_streaming_replica() -> None:
    nodes = [db("db-1", "15.18-0+deb12u1", primary=True), db("db-2", "15.20-0+deb12u1", False, serving=False)]
    with pytest.raises(PlanRefused, match="no replica of db-1 is streaming"):
        build_plan(nodes, {"db": "15.20-0+deb12u1"}, min_serving=1)


def test_db_needs_exactly_one_primary() -> None:
    nodes = [db("db-1", "15.18-0+deb12u1", primary=True), db("db-2", "15.18-0+deb12u1", primary=True)]
    with pytest.raises(PlanRefused, match="expected exactly one primary, found 2"):
        build_plan(nodes, {"db": "15.20-0+deb12u1"}, min_serving=1)


def test_db_without_replica_is_allowed_with_a_note() -> None:
    plan = build_plan([db("db-1", "15.18-0+deb12u1", primary=True)], {"db": "15.20-0+deb12u1"}, min_serving=1)
    assert nodes_of(plan) == ["db-1"]
    assert any("no replica" in note for note in plan.notes)


def test_targets_from_versions() -> None:
    versions = {"livekit": NEW, "coturn": "4.6.1-1", "postgresql": 15}
    assert targets_from_versions(versions) == {"sfu": NEW, "turn": "4.6.1-1"}
    assert targets_from_versions(versions, {"db": "15.20-0+deb12u1"})["db"] == "15.20-0+deb12u1"


def stopped_state() -> RolloutState:
    plan = Plan((Step("sfu", "sfu-1", OLD, NEW), Step("sfu", "sfu-2", OLD, NEW)), ())
    state = RolloutState.start("lab", {"sfu": NEW}, plan, "2026-11-27T10:00:00Z")
    state.steps[0].status = "done"
    state.steps[1].status = "failed"
    state.steps[1].message = "health gate: GET / answered 406"
    state.status = "stopped"
    return state


def test_state_round_trips_through_json() -> None:
    state = stopped_state()
    again = RolloutState.from_json(state.to_json())
    assert again == state
    assert again.failed is not None and again.failed.node == "sfu-2"
    assert again.previous_versions() == {"sfu": OLD}


def test_a_stopped_rollout_must_be_resumed_on_purpose() -> None:
    state = stopped_state()
    assert classify(state, {"sfu": NEW}, resume=True) == classify(state, {"sfu": NEW}, resume=True)
    assert classify(state, {"sfu": NEW}, resume=True).kind == "resume"
    assert not classify(state, {"sfu": NEW}, resume=True).problems
    refused = classify(state, {"sfu": NEW}, resume=False)
    assert refused.problems and "--resume" in refused.problems[0]


def test_rollback_to_previous_versions_is_allowed_without_resume() -> None:
    decision = classify(stopped_state(), {"sfu": OLD}, resume=False)
    assert decision.kind == "rollback" and not decision.problems


def test_resume_without_a_stopped_rollout_is_refused() -> None:
    assert classify(None, {"sfu": NEW}, resume=True).problems
    assert not classify(None, {"sfu": NEW}, resume=False).problems


def test_resume_rechecks_a_node_that_failed_after_its_install() -> None:
    state = stopped_state()
    # sfu-2 already runs the new version (its install went through) but its gate failed.
    nodes = [sfu("sfu-1", NEW), sfu("sfu-2", NEW, serving=False)]
    plan = build_plan(nodes, {"sfu": NEW}, min_serving=1)
    assert plan.empty
    resumed = resume_plan(plan, state, nodes)
    assert [(s.node, s.kind) for s in resumed.steps] == [("sfu-2", "recheck")]
    assert "sfu-2" not in resumed.unchanged


def test_resume_follows_the_fresh_plan_when_the_failed_node_is_still_old() -> None:
    state = stopped_state()
    nodes = [sfu("sfu-1", NEW), sfu("sfu-2", OLD)]
    plan = build_plan(nodes, {"sfu": NEW}, min_serving=1)
    assert resume_plan(plan, state, nodes) == plan


def test_stop_message_says_where_and_how_to_go_on_or_back() -> None:
    text = stop_message("lab", stopped_state(), component_file="stacks/Pulumi.lab.yaml")
    assert "at sfu node sfu-2: health gate" in text
    assert "upgraded: sfu-1; left on the old version: sfu-2 (stopped here)" in text
    assert "visio upgrade lab --resume" in text
    assert "versions.livekit: 1.13.4 in stacks/Pulumi.lab.yaml" in text


def test_rolling_restart_drains_nodes_already_on_target() -> None:
    nodes = [turn("turn-1"), turn("turn-2"), sfu("sfu-1", NEW), sfu("sfu-2", NEW)]
    assert build_plan(nodes, {"turn": "4.6.1-1", "sfu": NEW}, min_serving=1, roles=["turn"]).empty
    plan = build_plan(nodes, {"turn": "4.6.1-1", "sfu": NEW}, min_serving=1, roles=["turn"], restart=True)
    assert nodes_of(plan) == ["turn-1", "turn-2"]
    assert all(s.kind == "restart" and s.from_version == s.to_version == "4.6.1-1" for s in plan.steps)
    assert plan.unchanged == ("sfu-1", "sfu-2")
    assert "rolling restart" in plan.describe() and "restart on the same version" in plan.describe()


def test_rolling_restart_keeps_the_safety_rules() -> None:
    with pytest.raises(PlanRefused, match="draining turn-1 would leave 0 serving turn"):
        build_plan([turn("turn-1")], {"turn": "4.6.1-1"}, min_serving=1, restart=True)
    current = "15.20-0+deb12u1"
    plan = build_plan(
        [db("db-1", current, primary=True), db("db-2", current, primary=False)],
        {"db": current}, min_serving=1, restart=True,
    )
    assert [(s.node, s.kind) for s in plan.steps] == [("db-2", "replica"), ("db-1", "primary")]


def test_rolling_restart_still_upgrades_a_node_behind() -> None:
    plan = build_plan([sfu("sfu-1", NEW), sfu("sfu-2", OLD)], {"sfu": NEW}, min_serving=1, restart=True)
    assert [(s.node, s.kind) for s in plan.steps] == [("sfu-1", "restart"), ("sfu-2", "rolling")]
