"""`visio upgrade <stack>`: roll a version change out node by node without cutting a call.

The versions come from the stack file (`versions.livekit`, `versions.coturn`; PostgreSQL follows
the newest minor of its pinned major the mirror offers). The command reads what every SFU, TURN
and DB node runs now (playbooks/upgrade-facts.yml), shows the plan (visio_infra/model/rollout.py) and,
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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from visio_infra.hosts.rolling_upgrade import ROOT, execute, figures_lines, prepare
from visio_infra.hosts.upgrade_runner import ConvergeInputs, Runner, UpgradeError
from visio_infra.model.config.base import StackConfigError
from visio_infra.model.rollout import PlanRefused, RolloutState, stop_message
from visio_infra.model.stack_file import load_stack_file, stack_file

REPORTS = ROOT / "reports"


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
        # Type "pulumi-python:dynamic/visio:HostConfiguration" (visio_infra.hosts.configuration).
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


def write_report(state: RolloutState) -> Path:
    REPORTS.mkdir(parents=True, exist_ok=True)
    path = REPORTS / f"upgrade-{state.stack}.json"
    path.write_text(state.to_json(), encoding="utf-8")
    return path


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
    sys.exit(main())
