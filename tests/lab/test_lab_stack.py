"""The deployed lab stack through the Pulumi CLI: a second `up` changes nothing and runs no Ansible;
`refresh` notices a machine that died and the next `up` recreates and reconfigures it.

Runs against the lab brought up by `scripts/lab.sh up` (as `scripts/test.sh lab` does).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.lab.lab_ops import SLUG, STACK
from visio_infra.cloud.lab.plan import LabPaths
from visio_infra.cloud.lab.ssh import ssh_answers

REPO = Path(__file__).resolve().parents[2]


def pulumi(*args: str, timeout: int = 1800) -> subprocess.CompletedProcess[str]:
    command = " ".join(["pulumi", *args, "--stack", STACK, "--non-interactive"])
    return subprocess.run(
        ["bash", "-c", f"source scripts/pulumi-env.sh && {command}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _state() -> dict:
    result = pulumi("stack", "export")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _machines(state: dict) -> dict[str, dict]:
    return {
        r["outputs"]["name"]: r
        for r in state["deployment"]["resources"]
        if r["type"].endswith("visio-lab:Machine") and "outputs" in r
    }


def _ansible_runs() -> set[str]:
    base = REPO / "artifacts" / STACK
    return {p.name for p in base.iterdir()} if base.exists() else set()


@pytest.fixture(scope="module", autouse=True)
def deployed() -> None:
    result = pulumi("stack", "output", "inventory", "--json")
    assert result.returncode == 0 and result.stdout.strip() not in ("", "null"), (
        "the lab stack is not deployed: run `scripts/lab.sh up` first\n" + result.stderr
    )


def test_second_up_changes_nothing_and_runs_no_ansible():
    runs = _ansible_runs()
    started = time.monotonic()
    result = pulumi("up", "--yes", "--expect-no-changes", "--json")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    # `up --json` prints the plan as one JSON document, then the engine's events as JSON lines.
    plan, _ = json.JSONDecoder().raw_decode(result.stdout)
    summary = plan.get("changeSummary", {})
    assert set(summary) <= {"same"}, summary
    assert _ansible_runs() == runs, "a no-op `pulumi up` must not run Ansible"
    # Speed is reported (scripts/bench.sh collects it), never asserted.
    print(f"no-op pulumi up: {elapsed:.1f} s")


def test_refresh_notices_a_dead_machine_and_up_recreates_it():
    state = _state()
    machine = _machines(state)[f"{SLUG}-redis-1"]["outputs"]
    os.kill(int(machine["pid"]), signal.SIGKILL)
    time.sleep(1)

    refreshed = pulumi("refresh", "--yes", "--json")
    assert refreshed.returncode == 0, refreshed.stderr[-3000:]
    after = _machines(_state())[f"{SLUG}-redis-1"]["outputs"]
    assert after["running"] is False

    preview = pulumi("preview", "--json")
    assert preview.returncode == 0, preview.stderr[-3000:]
    steps = json.loads(preview.stdout)["steps"]
    ops = {s["urn"].rsplit("::", 1)[-1]: s["op"] for s in steps}
    replaced = [name for name, op in ops.items() if f"{SLUG}-redis-1" in name and "replace" in op]
    assert replaced, ops

    runs = _ansible_runs()
    started = time.monotonic()
    up = pulumi("up", "--yes", "--json")
    assert up.returncode == 0, up.stderr[-3000:]
    print(f"dead machine recreated and reconfigured by `pulumi up` in {time.monotonic() - started:.0f} s")
    new = _machines(_state())[f"{SLUG}-redis-1"]["outputs"]
    assert new["running"] is True and new["pid"] != machine["pid"]
    assert ssh_answers(LabPaths(STACK), new["address"])
    # The new machine has a new host key, so the inventory changed and the configuration ran again,
    # on that machine alone (nothing the other hosts are configured with changed).
    new_runs = _ansible_runs() - runs
    assert len(new_runs) == 1
    command = json.loads((REPO / "artifacts" / STACK / new_runs.pop() / "command").read_text())["command"]
    assert command[command.index("--limit") + 1] == f"{SLUG}-redis-1", command
