"""`visio upgrade <stack>`: roll a version change out node by node without cutting a call.

The versions come from the stack file (`versions.livekit`, `versions.coturn`; PostgreSQL follows
the newest minor of its pinned major the mirror offers). The command reads what every SFU, TURN
and DB node runs now (playbooks/upgrade-facts.yml), shows the plan (visio_infra/rollout.py) and,
once confirmed, runs one node at a time: playbooks/upgrade-sfu.yml (drain with SIGTERM, install,
health and rotation gate), upgrade-turn.yml (new clients refused at the firewall until no allocation
is left, install, then a fresh allocation from this machine with the TURN probe), upgrade-db.yml
(replica first, then primary, streaming gate). `--restart` rolls a restart the same way.
The first failed gate stops the rollout there; the state is kept so `--resume` continues it and a
rollback (the previous version set back in the stack file) takes the same path.

`pulumi up` takes the same path: when the `HostConfiguration` step sees a version change it calls
`rolling_converge` instead of converging every host at once.

The host-side inputs (inventory, secrets, certificates) are the ones the last `pulumi up` gave the
`HostConfiguration` step, read from the stack's state; secrets are never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from visio_infra.config import StackConfig, StackConfigError, load_stack_file, stack_file
from visio_infra.rollout import (
    COMPONENT_OF_ROLE,
    NodeState,
    Plan,
    PlanRefused,
    RolloutState,
    Step,
    StepRecord,
    build_plan,
    classify,
    resume_plan,
    stop_message,
    targets_from_versions,
)

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"
REPORTS = ROOT / "reports"
PLAYBOOK_OF_ROLE = {"sfu": "upgrade-sfu.yml", "turn": "upgrade-turn.yml", "db": "upgrade-db.yml"}
FACTS_TASK = "Report the node's upgrade facts"
DRAIN_END_PREFIXES = ("Wait for the node to drain", "Wait until no client", "Wait for the forced exit")
DRAIN_START_PREFIXES = ("Send SIG", "Refuse new TURN clients", *DRAIN_END_PREFIXES[:2])
"""Task names that open / close a node's drain in the upgrade playbooks (resumed runs skip the signal)."""


class UpgradeError(RuntimeError):
    """The rollout could not start (no state, bad config) or stopped at a failed gate."""


@dataclass
class ConvergeInputs:
    """What a converge needs besides the stack config: hosts, secrets, certificates."""

    inventory: dict[str, Any]
    secrets: dict[str, str]
    certificates: dict[str, Any] | None


# --------------------------------------------------------------------------- reading the stack state


def _unwrap(value: Any) -> Any:
    """Pulumi's exported secrets are {"<sig>": ..., "plaintext": "<json>"}: return plain data."""
    if isinstance(value, dict):
        if "plaintext" in value and len(value) == 2:
            return _unwrap(json.loads(value["plaintext"]))
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


def inputs_from_state(deployment: Mapping[str, Any]) -> ConvergeInputs:
    """The inputs of the stack's HostConfiguration resource, from `pulumi stack export --show-secrets`."""
    resources = deployment.get("deployment", {}).get("resources") or []
    for resource in resources:
        # Type "pulumi-python:dynamic/visio:HostConfiguration" (visio_infra.configuration).
        if str(resource.get("type", "")).endswith(":HostConfiguration"):
            props = _unwrap(resource.get("inputs") or {})
            if "inventory" in props and "secrets" in props:
                return ConvergeInputs(props["inventory"], dict(props["secrets"]), props.get("certificates"))
    raise UpgradeError(
        "the stack's state has no configured hosts yet (no HostConfiguration): run `pulumi up` first; "
        "a provisioning-only stack (visio:hosts.configure_on_up: false) is configured with "
        "`visio configure <stack>`, rolling upgrades need the host configuration in `pulumi up`"
    )


def read_state(stack: str) -> ConvergeInputs:
    env_script = ROOT / "scripts" / "pulumi-env.sh"
    command = 'source "$1" >/dev/null && exec pulumi stack export --show-secrets --stack "$2"'
    done = subprocess.run(["bash", "-c", command, "visio-upgrade", str(env_script), stack],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise UpgradeError(f"`pulumi stack export --stack {stack}` failed: {done.stderr.strip()[-600:]}")
    return inputs_from_state(json.loads(done.stdout))


# --------------------------------------------------------------------------- talking to ansible


class EventTap:
    """ansible-runner event handler: prints progress, keeps per-host facts and task timings."""

    def __init__(self, printer: Callable[[Mapping[str, Any]], bool] | None) -> None:
        self.printer = printer
        self.facts: dict[str, dict[str, Any]] = {}
        self.failures: list[str] = []
        """`host: task: message` per failed task (read by ansible_run.converge as the run's failures)."""
        self.task_started: dict[str, float] = {}
        self.first_start: dict[str, float] = {}
        self.last_end: dict[str, float] = {}

    def __call__(self, event: Mapping[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        task = str(data.get("task", ""))
        now = time.monotonic()
        if kind == "playbook_on_task_start":
            self.task_started[task] = now
            self.first_start.setdefault(task, now)
        elif kind == "runner_on_unreachable":
            self.failures.append(f"{data.get('host')}: {task}: unreachable")
        elif kind in ("runner_on_ok", "runner_on_failed", "runner_on_skipped"):
            if kind != "runner_on_skipped":
                self.last_end[task] = now
            if kind == "runner_on_failed" and not data.get("ignore_errors"):
                message = str((data.get("res") or {}).get("msg") or "").strip()
                self.failures.append(f"{data.get('host')}: {task}: {' '.join(message.split())[:400]}")
            if kind == "runner_on_ok" and task == FACTS_TASK:
                node = (data.get("res") or {}).get("visio_upgrade_node") or {}
                self.facts[str(data.get("host"))] = dict(node)
        if self.printer is not None:
            return bool(self.printer(event))
        return True

    def span(self, start_prefixes: Sequence[str], end_prefixes: Sequence[str]) -> float | None:
        starts = [t for name, t in self.first_start.items() if name.startswith(tuple(start_prefixes))]
        ends = [t for name, t in self.last_end.items() if name.startswith(tuple(end_prefixes))]
        if not starts or not ends:
            return None
        return round(max(ends) - min(starts), 1)


def _quiet_printer(event: Mapping[str, Any]) -> bool:
    """Only failures, for the read-only facts run."""
    if event.get("event") in ("runner_on_failed", "runner_on_unreachable"):
        data = event.get("event_data") or {}
        if not data.get("ignore_errors"):
            res = data.get("res") or {}
            reason = str(res.get("msg", ""))[:300]
            print(f"  FAILED {data.get('host')}: {data.get('task')}: {reason}", flush=True)
    return True


def _text(value: Any) -> str | None:
    text = None if value is None else str(value).strip()
    return None if text in (None, "", "None", "none") else text


def _flag(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("true", "yes", "1")


def node_states(inventory: Mapping[str, Any], facts: Mapping[str, Mapping[str, Any]]) -> list[NodeState]:
    """NodeState per SFU/TURN/DB host; a host that reported nothing is unknown and not serving."""
    nodes = []
    for role in ("sfu", "turn", "db"):
        for host in inventory.get("groups", {}).get(role) or []:
            fact = facts.get(host["name"], {})
            try:
                load = int(float(fact.get("load") or 0))
            except (TypeError, ValueError):
                load = 0
            nodes.append(NodeState(
                name=host["name"], role=role, version=_text(fact.get("version")),
                serving=_flag(fact.get("serving")), load=load, primary=_flag(fact.get("primary")),
                candidate=_text(fact.get("candidate")),
            ))
    return nodes


def db_candidate(nodes: Sequence[NodeState]) -> str | None:
    """The PostgreSQL version to converge on: the candidate the mirror offers (same on every node)."""
    candidates = {n.candidate for n in nodes if n.role == "db" and n.candidate}
    return max(candidates) if len(candidates) >= 1 else None


@dataclass
class Runner:
    """Runs the upgrade playbooks for one stack (the same code for `visio upgrade` and `pulumi up`)."""

    stack: str
    config: StackConfig
    inputs: ConvergeInputs
    deadline: int
    force: bool = False
    restart: bool = False
    """Rolling restart: restart each node even when its package did not change (DB playbook)."""
    verbose: bool = True
    timings: list[dict[str, Any]] = field(default_factory=list)

    def _converge(self, playbook: str, tap: EventTap, *, limit: str | None = None,
                  extra_vars: Mapping[str, Any] | None = None) -> Any:
        from visio_infra import ansible_run

        return ansible_run.converge(
            self.config, self.inputs.inventory, self.inputs.secrets, self.inputs.certificates,
            stack=self.stack, playbook=playbook, limit=limit, extra_vars=extra_vars,
            progress=tap, raise_on_failure=False,
        )

    def gather(self) -> list[NodeState]:
        tap = EventTap(_quiet_printer)
        result = self._converge("upgrade-facts.yml", tap)
        if not result.succeeded:
            unreachable = [h for h, s in result.hosts.items() if s.unreachable]
            if unreachable:
                raise UpgradeError(f"cannot read the state of {', '.join(sorted(unreachable))} (unreachable)")
        return node_states(self.inputs.inventory, tap.facts)

    def run_step(self, step: Step) -> tuple[bool, str, float | None]:
        """One node through its playbook and gates. Returns (passed, message, drain seconds)."""
        from visio_infra.ansible_run import ProgressPrinter

        tap = EventTap(ProgressPrinter() if self.verbose else _quiet_printer)
        extra = {
            "visio_upgrade_deadline": self.deadline,
            "visio_upgrade_force": self.force,
            "visio_upgrade_target": step.to_version,
            "visio_upgrade_restart": self.restart,
        }
        result = self._converge(PLAYBOOK_OF_ROLE[step.role], tap, limit=step.node, extra_vars=extra)
        drain = tap.span(DRAIN_START_PREFIXES, DRAIN_END_PREFIXES)
        if not result.succeeded:
            failures = tap.failures or result.failures
            reason = failures[0].split(": ", 2)[-1] if failures else f"ansible rc={result.rc}"
            return False, reason, drain
        if step.role == "turn":
            passed, detail = self.turn_allocation(step.node)
            if not passed:
                return False, f"fresh TURN allocation failed: {detail}", drain
        return True, "ok", drain

    def turn_allocation(self, node: str) -> tuple[bool, str]:
        """The TURN gate: a fresh allocation with shared-secret credentials, from this machine."""
        from visio_infra.probes.turn_probe import check_server

        host = next(h for h in self.inputs.inventory["groups"]["turn"] if h["name"] == node)
        address = str(host.get("public_ip") or host["private_ip"])
        secret = self.inputs.secrets["turn_shared_secret"]
        last = ""
        for _attempt in range(10):
            report = check_server(address, 3478, "udp", secret, allowed_peers=[], denied_peers=[])
            first = report.checks[0] if report.checks else None
            if first is not None and first.passed:
                return True, first.detail
            last = first.detail if first else "no answer"
            time.sleep(2)
        return False, last


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


def write_report(state: RolloutState) -> Path:
    REPORTS.mkdir(parents=True, exist_ok=True)
    path = REPORTS / f"upgrade-{state.stack}.json"
    path.write_text(state.to_json(), encoding="utf-8")
    return path


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
            [sys.executable, "-m", "visio_infra.upgrade", "--provider-child", str(result_file)],
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


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="visio upgrade", description=__doc__.splitlines()[0])
    parser.add_argument("stack", help="stack name (stacks/Pulumi.<stack>.yaml), e.g. lab")
    parser.add_argument("--role", action="append", choices=("sfu", "turn", "db"),
                        help="only this role (repeatable); default: every role with a version change")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation after the plan")
    parser.add_argument("--force", action="store_true",
                        help="when a drain deadline passes, cut the remaining calls instead of stopping")
    parser.add_argument("--resume", action="store_true", help="continue a rollout that stopped")
    parser.add_argument("--restart", action="store_true",
                        help="rolling restart: also drain and restart the nodes already on the target "
                        "version (after a security update of a library the service uses)")
    parser.add_argument("--deadline", type=int,
                        help="seconds to wait for a node to empty (default: upgrade.drain_deadline_seconds)")
    parser.add_argument("--plan-only", action="store_true", help="show the plan and exit")
    parser.add_argument("--config-file", type=Path,
                        help="stack config to take the versions from (default stacks/Pulumi.<stack>.yaml), "
                        "like `pulumi up --config-file`")
    args = parser.parse_args(argv)

    path = args.config_file or stack_file(args.stack)
    try:
        config = load_stack_file(path)
        inputs = read_state(args.stack)
    except (StackConfigError, UpgradeError, OSError, json.JSONDecodeError) as exc:
        print(f"visio upgrade: {exc}", file=sys.stderr)
        return 2
    deadline = args.deadline or config.upgrade.drain_deadline_seconds
    if deadline <= 0:
        print("visio upgrade: --deadline must be positive", file=sys.stderr)
        return 2
    runner = Runner(args.stack, config, inputs, deadline=deadline, force=args.force, restart=args.restart)
    print(f"Reading the nodes of stack {args.stack}...", flush=True)
    try:
        plan, state = prepare(runner, roles=args.role, resume=args.resume)
    except PlanRefused as exc:
        print(f"visio upgrade: {exc}", file=sys.stderr)
        return 3
    except UpgradeError as exc:
        print(f"visio upgrade: {exc}", file=sys.stderr)
        return 3
    print(plan.describe())
    print(f"Drain deadline per node: {deadline} s ({'force after it' if args.force else 'stop after it'}); "
          f"min serving per role: {config.upgrade.min_serving}")
    if plan.empty or args.plan_only:
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            print("visio upgrade: not a terminal; rerun with --yes to proceed", file=sys.stderr)
            return 2
        if input("Proceed? [y/N] ").strip().lower() not in ("y", "yes"):
            print("Nothing changed.")
            return 1
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    state = execute(runner, plan, state)
    report = write_report(state)
    print("\n".join(figures_lines(state)))
    if state.status != "done":
        shown = path.resolve().relative_to(ROOT) if path.resolve().is_relative_to(ROOT) else path
        print(stop_message(args.stack, state, component_file=str(shown)), file=sys.stderr)
        return 1
    done = sum(1 for s in state.steps if s.status == "done")
    print(f"Rollout done: {done} node(s) in {state.total_seconds} s; "
          f"report {report.relative_to(ROOT)}. Next: visio verify {args.stack}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--provider-child":
        sys.exit(_provider_child(sys.argv[2]))
    sys.exit(main())
