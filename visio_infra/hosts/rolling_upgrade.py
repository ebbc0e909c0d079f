"""A version change rolled out node by node without cutting a call: plan, run, stop at the
first failed gate, resume. `visio upgrade` drives it from the command line; `pulumi up`
takes the same path when the `HostConfiguration` step sees a version change
(`rolling_converge`, run in a child process like the converge).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from visio_infra.hosts.upgrade_runner import ConvergeInputs, Runner, UpgradeError, db_candidate
from visio_infra.model.config.stack import StackConfig
from visio_infra.model.rollout import (
    COMPONENT_OF_ROLE,
    Plan,
    RolloutState,
    StepRecord,
    build_plan,
    classify,
    resume_plan,
    stop_message,
    targets_from_versions,
)

ROOT = Path(__file__).resolve().parent.parent.parent
ARTIFACTS = ROOT / "artifacts"


# --------------------------------------------------------------------------- the rollout


def state_path(stack: str) -> Path:
    return ARTIFACTS / stack / "upgrade-state.json"


def load_rollout_state(stack: str) -> RolloutState | None:
    path = state_path(stack)
    if not path.exists():
        return None
    return RolloutState.from_json(path.read_text(encoding="utf-8"))


def save_rollout_state(state: RolloutState) -> None:
    path = state_path(state.stack)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(state.to_json(), encoding="utf-8")
    tmp.replace(path)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def figures_lines(state: RolloutState) -> list[str]:
    """Machine-readable figures (one `UPGRADE-FIGURE key=value ...` line each) for scripts/bench.sh."""
    lines = []
    for step in state.steps:
        if step.status == "pending":
            continue
        lines.append(
            f"UPGRADE-FIGURE stack={state.stack} role={step.role} node={step.node} "
            f"from={step.from_version} to={step.to_version} status={step.status} "
            f"drain_seconds={step.drain_seconds if step.drain_seconds is not None else 'na'} "
            f"node_seconds={step.seconds if step.seconds is not None else 'na'}"
        )
    lines.append(
        f"UPGRADE-FIGURE stack={state.stack} total_seconds={state.total_seconds} status={state.status} "
        f"nodes={sum(1 for s in state.steps if s.status == 'done')}"
    )
    return lines


def execute(
    runner: Runner, plan: Plan, state: RolloutState, *, say: Callable[[str], None] = print
) -> RolloutState:
    """Run the plan's steps in order; stop at the first failed gate. The state is saved after each step."""
    started = time.monotonic()
    records = {(r.node, r.role): r for r in state.steps}
    for step in plan.steps:
        record = records.get((step.node, step.role))
        if record is None:
            record = StepRecord(step.role, step.node, step.from_version, step.to_version)
            state.steps.append(record)
            records[(step.node, step.role)] = record
        say(f"==> {step.role} {step.node}: {step.from_version or '?'} -> {step.to_version} ({step.kind})")
        node_started = time.monotonic()
        passed, message, drain = runner.run_step(step)
        record.seconds = round(time.monotonic() - node_started, 1)
        record.drain_seconds = drain
        record.message = message
        if not passed:
            record.status = "failed"
            state.status = "stopped"
            state.total_seconds = round(time.monotonic() - started, 1)
            save_rollout_state(state)
            return state
        record.status = "done"
        say(f"<== {step.node} done in {record.seconds} s (drain {drain if drain is not None else 'n/a'} s)")
        save_rollout_state(state)
    state.status = "done"
    state.finished_at = _now()
    state.total_seconds = round(time.monotonic() - started, 1)
    save_rollout_state(state)
    return state


def prepare(
    runner: Runner, *, roles: Sequence[str] | None, resume: bool, auto_resume: bool = False
) -> tuple[Plan, RolloutState]:
    """Read the nodes, plan, and reconcile with the last rollout (refusing what is unsafe).

    `auto_resume` (the `pulumi up` path): a stopped rollout with the same targets is resumed, since
    rerunning `pulumi up` after fixing the cause is how that path goes on."""
    nodes = runner.gather()
    candidate = db_candidate(nodes)
    targets = targets_from_versions(
        runner.config.versions.model_dump(), {"db": candidate} if candidate else None
    )
    plan = build_plan(
        nodes, targets, min_serving=runner.config.upgrade.min_serving, roles=roles, restart=runner.restart
    )
    previous = load_rollout_state(runner.stack)
    if auto_resume:
        resume = not classify(previous, targets, resume=True).problems
    decision = classify(previous, targets, resume=resume)
    if decision.problems:
        raise UpgradeError("\n".join(decision.problems))
    if decision.kind == "resume" and previous is not None:
        plan = resume_plan(plan, previous, nodes)
        previous.status = "running"
        for record in previous.steps:
            if record.status == "failed":
                record.status = "pending"
        return plan, previous
    return plan, RolloutState.start(runner.stack, targets, plan, _now())


# --------------------------------------------------------------------------- pulumi up path


def version_changes(old_config: Mapping[str, Any], new_config: Mapping[str, Any]) -> list[str]:
    """Roles whose pinned version differs between two stack configs (as model_dump(mode='json'))."""
    old, new = old_config.get("versions") or {}, new_config.get("versions") or {}
    return [role for role, component in COMPONENT_OF_ROLE.items()
            if role != "db" and old.get(component) != new.get(component)]


def rolling_converge(olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
    """Called by `HostConfiguration.update` when versions changed: roll them out node by node
    (resuming a rollout a previous `up` left stopped), raising on a failed gate so the `up` fails
    and the next one resumes. Returns the printed report lines.

    Runs in a child Python process, like the converge (ansible-runner must not fork inside the
    provider's gRPC server); props, secrets included, go through a pipe, never argv or environment.
    """
    if not version_changes(olds.get("config") or {}, news["config"]):
        return []
    with tempfile.TemporaryDirectory(prefix="visio-upgrade-") as scratch:
        result_file = Path(scratch) / "result.json"
        child = subprocess.run(
            [sys.executable, "-m", "visio_infra.hosts.rolling_upgrade", "--provider-child", str(result_file)],
            input=json.dumps({"olds": dict(olds), "news": dict(news)}), text=True, check=False,
        )
        outcome = json.loads(result_file.read_text()) if result_file.exists() else None
    if child.returncode != 0 or outcome is None or "error" in outcome:
        reason = outcome["error"] if outcome and "error" in outcome else f"exit status {child.returncode}"
        raise RuntimeError(reason)
    return list(outcome["lines"])


def _provider_child(result_path: str) -> int:
    data = json.loads(sys.stdin.read())
    try:
        outcome: dict[str, Any] = {"lines": rolling_in_process(data["olds"], data["news"])}
    except Exception as exc:  # reported to the parent, which fails the `up` with it
        outcome = {"error": str(exc)}
    Path(result_path).write_text(json.dumps(outcome), encoding="utf-8")
    return 0 if "lines" in outcome else 1


def rolling_in_process(olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
    """The rolling path itself (see `rolling_converge`)."""
    config = StackConfig.model_validate(news["config"])
    roles = version_changes(olds.get("config") or {}, news["config"])
    if not roles:
        return []
    inputs = ConvergeInputs(dict(news["inventory"]), dict(news["secrets"]), news.get("certificates"))
    runner = Runner(str(news["stack"]), config, inputs, deadline=config.upgrade.drain_deadline_seconds)
    plan, state = prepare(runner, roles=roles, resume=False, auto_resume=True)
    print(plan.describe(), flush=True)
    state = execute(runner, plan, state, say=lambda line: print(line, flush=True))
    lines = figures_lines(state)
    print("\n".join(lines), flush=True)
    if state.status != "done":
        raise RuntimeError(stop_message(
            runner.stack, state, component_file=f"stacks/Pulumi.{runner.stack}.yaml",
            resume_command=f"pulumi up --stack {runner.stack} (or visio upgrade {runner.stack} --resume)",
        ))
    return lines


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--provider-child":
    sys.exit(_provider_child(sys.argv[2]))
