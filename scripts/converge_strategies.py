"""Time a no-change converge of a deployed stack under each Ansible strategy, in one run (for bench.sh).

    .venv/bin/python scripts/converge_strategies.py [STACK] > figures.json

Runs the site playbook the way `visio configure STACK` does, first under Mitogen (`mitogen_linear`),
then under Ansible's `linear`, with nothing to change, and prints JSON: per strategy the seconds,
tasks run (ok + changed + skipped, summed over hosts), changes and failures, then the ratio of the
two times. Mitogen runs first so any cold cache on the hosts counts against it, not against linear.
Per-task progress goes to artifacts/<stack>/converge-<strategy>.log.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from visio_infra import ansible_run  # noqa: E402
from visio_infra.config import load_stack_file, stack_file  # noqa: E402
from visio_infra.configure_cmd import certificates_from_outputs, secrets_from_outputs  # noqa: E402
from visio_infra.stack_outputs import read_outputs  # noqa: E402


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


def main(stack: str = "lab") -> int:
    config = load_stack_file(stack_file(stack))
    outputs = read_outputs(stack, show_secrets=True)
    runs = {}
    for strategy in (ansible_run.MITOGEN, ansible_run.LINEAR):
        logs = ansible_run.ARTIFACTS / stack
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"converge-{strategy}.log", "w", encoding="utf-8") as log:
            result = ansible_run.converge(
                config,
                outputs["inventory"],
                secrets_from_outputs(outputs),
                certificates_from_outputs(outputs),
                stack=stack,
                strategy=strategy,
                raise_on_failure=False,
                progress=ansible_run.ProgressPrinter(log),
            )
        runs[strategy] = figures(result)
    mitogen, linear = runs[ansible_run.MITOGEN], runs[ansible_run.LINEAR]
    print(json.dumps({
        "runs": runs,
        "ratio": round(mitogen["seconds"] / linear["seconds"], 3) if linear["seconds"] else None,
        "same_tasks": mitogen["tasks"] == linear["tasks"],
    }, indent=2))
    return 0 if all(r["succeeded"] and r["changed"] == 0 for r in runs.values()) else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
