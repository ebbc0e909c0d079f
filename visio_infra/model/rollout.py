"""The rolling-upgrade plan: which nodes change version, in which order, and whether it is safe (pure).

A room lives on one SFU node and a relayed call on one TURN node, so a version change is rolled out
one node at a time: the node is drained (it takes nothing new and keeps what it has), upgraded,
checked healthy and back in rotation before the next one starts. PostgreSQL minor updates go
replicas first (verified streaming again), then the primary (leadership handed over by a Patroni
switchover first). This module only decides: it takes the
nodes as they are now (installed version, serving or not, load) and the versions the stack config
asks for, and returns the ordered steps, or refuses with one line per reason. It also holds the
rollout state kept between runs, so a stopped rollout can be resumed or rolled back by the same path.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

ROLLING_ROLES = ("sfu", "turn", "db")
"""Roles whose version changes roll out node by node, in this order."""

COMPONENT_OF_ROLE = {"sfu": "livekit", "turn": "coturn", "db": "postgresql"}
"""The `versions.<component>` key of the stack config each role follows."""

DRAINED_ROLES = frozenset({"sfu", "turn"})
"""Roles whose nodes serve in parallel: one is drained at a time and `min_serving` applies.
The database has one primary; calls never go through it (Meet only reads/writes room metadata),
so its primary restart is a short write pause, not a cut call."""


class PlanRefused(ValueError):
    """The rollout would be unsafe or cannot be planned. `problems` has one readable line each."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("rolling upgrade refused:\n" + "\n".join(f"  - {p}" for p in self.problems))


@dataclass(frozen=True)
class NodeState:
    """A node as it is now, read from the host before planning."""

    name: str
    role: str
    version: str | None
    """Installed version (LiveKit release, coturn or postgresql-NN package version); None if unknown."""
    serving: bool
    """Healthy and in rotation now (SFU in Redis as SERVING, coturn active, replica streaming)."""
    load: int = 0
    """Participants (SFU) or allocations (TURN) on the node now: the emptiest drains first."""
    primary: bool = False
    """DB only: this node is the primary (not in recovery)."""
    candidate: str | None = None
    """DB only: newest minor version of the pinned major the package mirror offers."""


@dataclass(frozen=True)
class Step:
    """Upgrade one node: drain it, install `to_version`, gate on health before the next step."""

    role: str
    node: str
    from_version: str | None
    to_version: str
    kind: str = "rolling"
    """rolling (SFU/TURN drain), replica or primary (DB), recheck (a resumed node already on target),
    restart (SFU/TURN already on target, drained and restarted by a rolling restart)."""


@dataclass(frozen=True)
class Plan:
    """Ordered steps plus what stays untouched, with the reasoning an SRE reads before saying yes."""

    steps: tuple[Step, ...]
    unchanged: tuple[str, ...]
    notes: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.steps

    def describe(self) -> str:
        if not self.steps:
            lines = ["Nothing to upgrade: every node already runs the version the stack asks for."]
        else:
            lines = [f"Rolling upgrade plan ({len(self.steps)} node(s), one at a time, in this order):"]
            for number, step in enumerate(self.steps, 1):
                what = {
                    "rolling": "drain, install, health + rotation gate",
                    "replica": "replica: install, restart, streaming gate",
                    "primary": "primary: install, switchover to the sync standby, restart, streaming gate",
                    "recheck": "resume: finish and re-run its health gate",
                    "restart": "drain, restart on the same version, health + rotation gate",
                }[step.kind]
                lines.append(
                    f"  {number}. {step.role:<4} {step.node:<20} {step.from_version or '?'} -> "
                    f"{step.to_version}   ({what})"
                )
        if self.unchanged:
            lines.append(f"Untouched (already on target or not selected): {', '.join(self.unchanged)}")
        lines += [f"Note: {note}" for note in self.notes]
        return "\n".join(lines)


def targets_from_versions(
    versions: Mapping[str, Any], candidates: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Target version per role from the stack's `versions` section.

    The DB target is the newest minor of the pinned major the mirror offers (`candidates['db']`),
    since the stack pins PostgreSQL's major version only; without a candidate the DB is left alone.
    """
    targets = {"sfu": str(versions["livekit"]), "turn": str(versions["coturn"])}
    if candidates and candidates.get("db"):
        targets["db"] = str(candidates["db"])
    return targets


def _order_key(node: NodeState) -> tuple[int, int, str]:
    # Nodes already out of service first (no capacity lost, capacity regained early), then the
    # emptiest (shortest drain), then by name so the plan is stable.
    return (1 if node.serving else 0, node.load, node.name)


def build_plan(
    nodes: Sequence[NodeState],
    targets: Mapping[str, str],
    *,
    min_serving: int,
    roles: Iterable[str] | None = None,
    restart: bool = False,
) -> Plan:
    """The ordered steps taking `nodes` to `targets`, or PlanRefused naming every unsafe point.

    SFU/TURN: a serving node may only be drained when the others of its role keep at least
    `min_serving` serving. DB: replicas first, then the primary, and the primary only when a
    replica is streaming (it is the fallback while the primary restarts).

    `restart`: a rolling restart. Nodes of the selected roles already on target are included too
    and go through the same drain and gates: what a security update of a library the service links
    (OpenSSL, glibc) needs, since the running process keeps the old one until it restarts.
    """
    if min_serving < 1:
        raise ValueError("min_serving must be at least 1")
    selected = tuple(roles) if roles else ROLLING_ROLES
    unknown = [r for r in selected if r not in ROLLING_ROLES]
    if unknown:
        raise PlanRefused(
            [f"unknown role {r!r}; rolling roles are {', '.join(ROLLING_ROLES)}" for r in unknown]
        )

    problems: list[str] = []
    steps: list[Step] = []
    unchanged: list[str] = []
    notes: list[str] = []
    by_role: dict[str, list[NodeState]] = {role: [] for role in ROLLING_ROLES}
    for node in nodes:
        if node.role in by_role:
            by_role[node.role].append(node)

    for role in ROLLING_ROLES:
        members = by_role[role]
        target = targets.get(role)
        if role not in selected or target is None:
            unchanged += [n.name for n in members]
            continue
        # A node with no installed version (a new host, or one that reported nothing) has no call
        # to protect and nothing to upgrade: the converge installs the target on it.
        fresh = [n for n in members if n.version is None]
        notes += [f"{n.name}: no {role} version installed; the converge installs {target}" for n in fresh]
        installed = [n for n in members if n.version is not None]
        todo = list(installed) if restart else [n for n in installed if n.version != target]
        unchanged += [n.name for n in installed if n not in todo]
        if not todo:
            continue
        if role in DRAINED_ROLES:
            serving = sum(1 for n in members if n.serving)
            for node in sorted(todo, key=_order_key):
                left = serving - (1 if node.serving else 0)
                # Taking a node that is already out of rotation costs no capacity.
                if node.serving and left < min_serving:
                    problems.append(
                        f"{role}: draining {node.name} would leave {left} serving {role} node(s), "
                        f"fewer than upgrade.min_serving = {min_serving} ({serving} of {len(members)} "
                        "serving now); add a node (sizing.spare_nodes) or restore the failed one first"
                    )
                    continue
                kind = "restart" if node.version == target else "rolling"
                steps.append(Step(role, node.name, node.version, target, kind=kind))
                if not node.serving:
                    serving += 1  # its health gate puts it back in rotation before the next step
        else:
            primaries = [n for n in members if n.primary]
            if len(primaries) != 1:
                problems.append(
                    f"db: expected exactly one primary, found {len(primaries)} "
                    f"({', '.join(n.name for n in primaries) or 'none'}); fix replication before upgrading"
                )
                continue
            primary = primaries[0]
            replicas = [n for n in members if not n.primary]
            for node in sorted((n for n in todo if not n.primary), key=lambda n: n.name):
                steps.append(Step(role, node.name, node.version, target, kind="replica"))
            if primary in todo:
                if replicas and not any(n.serving for n in replicas):
                    problems.append(
                        f"db: no replica of {primary.name} is streaming; the primary is upgraded only "
                        "with a streaming replica to fall back on (check `visio verify` db checks)"
                    )
                    continue
                if not replicas:
                    notes.append(f"db: {primary.name} has no replica; its restart pauses writes briefly")
                steps.append(Step(role, primary.name, primary.version, target, kind="primary"))
    if problems:
        raise PlanRefused(problems)
    if restart and steps:
        notes.append("rolling restart: nodes already on target are drained and restarted like an upgrade")
    return Plan(tuple(steps), tuple(sorted(unchanged)), tuple(notes))


# --------------------------------------------------------------------------- state between runs

STATE_VERSION = 1


@dataclass
class StepRecord:
    """What happened to one step of a rollout."""

    role: str
    node: str
    from_version: str | None
    to_version: str
    status: str = "pending"
    """pending, done, failed."""
    seconds: float | None = None
    drain_seconds: float | None = None
    message: str = ""


@dataclass
class RolloutState:
    """The last rollout of a stack, kept on the controller so it can be resumed or rolled back."""

    stack: str
    targets: dict[str, str]
    steps: list[StepRecord]
    status: str = "running"
    """running, stopped (a gate failed or a drain deadline passed), done."""
    started_at: str = ""
    finished_at: str = ""
    total_seconds: float | None = None
    version: int = STATE_VERSION

    @classmethod
    def start(cls, stack: str, targets: Mapping[str, str], plan: Plan, started_at: str) -> RolloutState:
        return cls(
            stack=stack,
            targets=dict(targets),
            steps=[StepRecord(s.role, s.node, s.from_version, s.to_version) for s in plan.steps],
            started_at=started_at,
        )

    @property
    def failed(self) -> StepRecord | None:
        return next((s for s in self.steps if s.status == "failed"), None)

    def previous_versions(self) -> dict[str, str]:
        """Per role, the version the nodes ran before this rollout (the rollback target)."""
        found: dict[str, str] = {}
        for step in self.steps:
            if step.from_version and step.role not in found:
                found[step.role] = step.from_version
        return found

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RolloutState:
        data = json.loads(text)
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"rollout state version {data.get('version')} is not {STATE_VERSION}")
        data["steps"] = [StepRecord(**s) for s in data["steps"]]
        return cls(**data)


@dataclass(frozen=True)
class Continuation:
    """How a new run relates to the last rollout of the stack."""

    kind: str
    """fresh (nothing pending), resume (same targets), rollback (back to the previous versions)."""
    problems: list[str] = field(default_factory=list)


def classify(state: RolloutState | None, targets: Mapping[str, str], *, resume: bool) -> Continuation:
    """Decide whether this run may start: a stopped rollout must be resumed on purpose, or rolled back."""
    if state is None or state.status != "stopped":
        if resume:
            return Continuation("fresh", ["--resume: there is no stopped rollout for this stack"])
        return Continuation("fresh")
    failed = state.failed
    where = f" at {failed.node} ({failed.message})" if failed else ""
    same = all(targets.get(role) == version for role, version in state.targets.items())
    if same:
        if resume:
            return Continuation("resume")
        return Continuation("resume", [
            f"the last rollout to {_fmt(state.targets)} stopped{where}; rerun with --resume to continue "
            "it, or set the previous version back in the stack config to roll back"
        ])
    previous = state.previous_versions()
    if previous and all(targets.get(role) == version for role, version in previous.items()):
        return Continuation("rollback")
    return Continuation("fresh", [
        f"the last rollout to {_fmt(state.targets)} stopped{where}; the stack now asks for {_fmt(targets)}. "
        f"Resume it (same versions, --resume) or roll back to {_fmt(previous)} first"
    ]) if resume else Continuation("fresh")


def _fmt(versions: Mapping[str, str]) -> str:
    return ", ".join(f"{COMPONENT_OF_ROLE.get(r, r)} {v}" for r, v in sorted(versions.items())) or "nothing"


def resume_plan(plan: Plan, state: RolloutState, nodes: Sequence[NodeState]) -> Plan:
    """On resume, a node whose step failed after its install (already on target but not proven
    healthy) comes first again, to re-run its gate; other nodes follow the fresh plan."""
    failed = state.failed
    if failed is None or any(s.node == failed.node for s in plan.steps):
        return plan
    node = next((n for n in nodes if n.name == failed.node), None)
    if node is None:
        return plan
    recheck = Step(node.role, node.name, node.version, failed.to_version, kind="recheck")
    unchanged = tuple(n for n in plan.unchanged if n != node.name)
    return Plan((recheck, *plan.steps), unchanged, plan.notes)


def stop_message(stack: str, state: RolloutState, *, component_file: str, resume_command: str = "") -> str:
    """What an SRE reads when a gate failed: where it stopped, what is left, how to go on or back."""
    failed = state.failed
    done = [s.node for s in state.steps if s.status == "done"]
    pending = [f"{s.node} (stopped here)" for s in state.steps if s.status == "failed"]
    pending += [s.node for s in state.steps if s.status == "pending"]
    previous = state.previous_versions()
    lines = ["ROLLOUT STOPPED"]
    if failed:
        lines.append(f"  at {failed.role} node {failed.node}: {failed.message}")
    lines.append(
        f"  upgraded: {', '.join(done) or 'none'}; left on the old version: {', '.join(pending) or 'none'}"
    )
    resume_command = resume_command or f"visio upgrade {stack} --resume"
    lines.append(f"  resume (after fixing the cause):  {resume_command}")
    if failed and "deadline" in failed.message:
        lines.append(f"  cut the remaining calls instead:  visio upgrade {stack} --resume --force")
    if previous:
        rollback = ", ".join(
            f"versions.{COMPONENT_OF_ROLE[r]}: {v}"
            for r, v in sorted(previous.items())
            if r in COMPONENT_OF_ROLE
        )
        lines.append(
            f"  roll back: set {rollback} in {component_file}, then `visio upgrade {stack}` "
            "(same path, nodes still on the old version are skipped)"
        )
    return "\n".join(lines)
