"""Time a no-change converge of a deployed stack under each Ansible strategy, in one run (for bench.sh).

    .venv/bin/python scripts/converge_strategies.py [STACK] [--rounds N] > figures.json

Runs the site playbook the way `visio configure STACK` does, with nothing to change, under Mitogen
(`mitogen_linear`) and Ansible's `linear` in ABBA order (M L L M, repeated N times, default 1), so
a drift of the machine's load during the run weighs on both alike. Prints JSON: every run (seconds,
tasks run = ok + changed + skipped summed over hosts, changes, failures), each strategy's fastest
run, and the ratio of the fastest runs: on a shared machine, other work only ever adds time, so
the fastest run is the closest to what the strategy itself costs. Exits 1 if any run failed or
changed something. Per-task progress goes to artifacts/<stack>/converge-<strategy>.log.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from visio_infra.commands.configure import certificates_from_outputs, secrets_from_outputs  # noqa: E402
from visio_infra.commands.stack_outputs import read_outputs  # noqa: E402
from visio_infra.hosts import ansible_run  # noqa: E402
from visio_infra.model.stack_file import load_stack_file, stack_file  # noqa: E402

ABBA = (ansible_run.MITOGEN, ansible_run.LINEAR, ansible_run.LINEAR, ansible_run.MITOGEN)


def figures(result: ansible_run.RunResult) -> dict[str, Any]:
    hosts = result.hosts.values()
    return {
        "strategy": result.strategy,
        "seconds": round(result.duration_seconds, 1),
        "hosts": len(result.hosts),
        "tasks": sum(h.ok + h.changed + h.skipped for h in hosts),
        "changed": sum(h.changed for h in hosts),
        "failed": sum(h.failed + h.unreachable for h in hosts),
        "succeeded": result.succeeded,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stack", nargs="?", default="lab")
    parser.add_argument("--rounds", type=int, default=1, help="ABBA rounds (4 converges each)")
    args = parser.parse_args(argv)
    config = load_stack_file(stack_file(args.stack))
    outputs = read_outputs(args.stack, show_secrets=True)
    logs = ansible_run.ARTIFACTS / args.stack
    logs.mkdir(parents=True, exist_ok=True)
    runs = []
    for strategy in ABBA * args.rounds:
        # stdout carries the JSON only: the converge's own lines (the linear note) go to stderr.
        with open(logs / f"converge-{strategy}.log", "a", encoding="utf-8") as log, \
                contextlib.redirect_stdout(sys.stderr):
            result = ansible_run.converge(
                config,
                outputs["inventory"],
                secrets_from_outputs(outputs),
                certificates_from_outputs(outputs),
                stack=args.stack,
                strategy=strategy,
                raise_on_failure=False,
                progress=ansible_run.ProgressPrinter(log),
            )
        runs.append({"requested": strategy, **figures(result)})
        print(f"{strategy}: {runs[-1]}", file=sys.stderr, flush=True)
    fastest = {
        name: min((r for r in runs if r["requested"] == name), key=lambda r: r["seconds"])
        for name in (ansible_run.MITOGEN, ansible_run.LINEAR)
    }
    mitogen, linear = fastest[ansible_run.MITOGEN], fastest[ansible_run.LINEAR]
    print(json.dumps({
        "runs": runs,
        "fastest": fastest,
        "ratio": round(mitogen["seconds"] / linear["seconds"], 3) if linear["seconds"] else None,
        "same_tasks": len({r["tasks"] for r in runs}) == 1,
        "mitogen_used": all(r["strategy"] == r["requested"] for r in runs),
    }, indent=2))
    return 0 if all(r["succeeded"] and r["changed"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
