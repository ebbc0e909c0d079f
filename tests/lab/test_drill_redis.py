"""Fault drill: the Redis master is lost (SIGKILL of redis-server on it) while clients keep joining.

A steady join load runs through the LiveKit API and signalling of both SFU nodes
(tests/lab/drill_join_load.py: two workers, each creating a room and joining it as a WebRTC
participant about once a second). Once every join of a warm-up succeeds, the redis-server of the
Sentinels' master is killed with SIGKILL. Measured, on the host's clock the lab machines share:
- failover: until the Sentinels name another node and that node reports itself master;
- first join: until the first join started after the loss succeeds (one started before LiveKit
  noticed the loss may succeed at once), and the outage: until the first success after the last
  failed join, which is when joins work again;
- the joins that failed in between, and those after the failover completed, which must be 0;
- rejoin: until the old master's Redis (restarted by systemd once the failover had time to happen)
  replicates from the new master.
Then a converge of the Redis nodes must leave the new master in place (never flip it back), a second
one must change nothing, and the cluster must have its three members again: one master with two
online replicas, three Sentinels agreeing on it, CKQUORUM OK. Bounded in time (each wait has its
deadline), stops by itself.

Figures: `DRILL-REDIS ...` / `DRILL-REDIS-RESTART ...` lines on stdout and the same as JUnit
properties.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest

from tests.lab.lab_ops import ROOT, STACK, private_dir, ssh
from visio_infra.commands.configure import certificates_from_outputs, secrets_from_outputs
from visio_infra.commands.stack_outputs import read_outputs
from visio_infra.hosts import ansible_run
from visio_infra.model.security_rules import REDIS_PORT, REDIS_SENTINEL_MASTER_NAME, SENTINEL_PORT
from visio_infra.model.stack_file import load_stack_file, stack_file

pytestmark = pytest.mark.drill

WARMUP_SECONDS = 15
FAILOVER_DEADLINE = 60
AFTER_FAILOVER_SECONDS = 30
"""Load kept up after the failover completed: every join in it must succeed."""
REJOIN_DEADLINE = 120
FIRST_JOIN_TARGET_SECONDS = 30
"""Joins must work again within this after the loss (Sentinel down-after 5 s + election + LiveKit
following the switch; measured about 9 s)."""

# The password is read on the node itself into redis-cli's environment: never on a command line.
AUTH = "REDISCLI_AUTH=$(sed -n 's/^requirepass \"\\(.*\\)\"$/\\1/p' /etc/redis/visio-redis.conf)"


def _cli(inventory: dict[str, Any], host: dict[str, Any], port: int, command: str) -> str:
    target = f"-h {host['private_ip']} -p {port}"
    return ssh(inventory, host, f"{AUTH} redis-cli --no-auth-warning {target} {command}")


def _info(inventory: dict[str, Any], host: dict[str, Any]) -> dict[str, str]:
    text = _cli(inventory, host, REDIS_PORT, "INFO replication").replace("\r", "")
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))


def _master_seen_by(inventory: dict[str, Any], host: dict[str, Any]) -> str:
    command = f"SENTINEL get-master-addr-by-name {REDIS_SENTINEL_MASTER_NAME}"
    answer = _cli(inventory, host, SENTINEL_PORT, command)
    return answer.splitlines()[0] if answer else ""


def _wait(what: str, deadline: float, check: Callable[[], bool], step: float = 0.5) -> float:
    """Poll `check` until true; the time.time() it became true. Fails at the deadline (seconds)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if check():
            return time.time()
        time.sleep(step)
    pytest.fail(f"{what}: not within {deadline} s")


def _cluster_whole(inventory: dict[str, Any], nodes: list[dict[str, Any]]) -> str:
    """The master's address once all three Sentinels agree and it has every other node online."""
    masters = {_master_seen_by(inventory, n) for n in nodes}
    assert len(masters) == 1, f"the Sentinels disagree on the master: {masters}"
    master_ip = masters.pop()
    master = next(n for n in nodes if n["private_ip"] == master_ip)
    info = _info(inventory, master)
    online = sorted(v.split("ip=")[1].split(",")[0] for k, v in info.items()
                    if k.startswith("slave") and k[5:].isdigit() and "state=online" in v)
    others = sorted(n["private_ip"] for n in nodes if n is not master)
    assert info.get("role") == "master" and online == others, f"{master['name']}: {info}"
    quorum = _cli(inventory, master, SENTINEL_PORT, f"SENTINEL CKQUORUM {REDIS_SENTINEL_MASTER_NAME}")
    assert quorum.startswith(f"OK {len(nodes)} usable Sentinels"), quorum
    return master_ip


@pytest.fixture(scope="module")
def outputs() -> dict[str, Any]:
    found = read_outputs(STACK, show_secrets=True)
    assert isinstance(found.get("inventory"), dict), "the lab is not deployed: run `scripts/lab.sh up`"
    return found


@functools.cache
def _livekit_nodes_module() -> ModuleType:
    """The Ansible module that reads LiveKit's node table from Redis, loaded once (it is polled)."""
    spec = importlib.util.spec_from_file_location(
        "visio_livekit_nodes", ROOT / "playbooks" / "library" / "visio_livekit_nodes.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _livekit_serving_on(address: str, password: str, sfu: set[str]) -> bool:
    """Every SFU node SERVING with fresh stats in this Redis: only then can LiveKit place a room (just
    after a promotion the stats it could not write during the outage are stale: "could not find any
    available nodes"). Read from this host, in Meet's app range, with the password."""
    try:
        nodes = _livekit_nodes_module().list_nodes(address, password)
    except OSError:
        return False
    return sfu <= {n["ip"] for n in nodes if n["available"]}


def _converge_redis(outputs: dict[str, Any]) -> ansible_run.RunResult:
    return ansible_run.converge(
        load_stack_file(stack_file(STACK)), outputs["inventory"], secrets_from_outputs(outputs),
        certificates_from_outputs(outputs), stack=STACK, limit="redis", raise_on_failure=False,
    )


@contextlib.contextmanager
def _join_load(outputs: dict[str, Any], prefix: str, max_seconds: float) -> Iterator[list[dict[str, Any]]]:
    """tests/lab/drill_join_load.py in its own process for the body of the `with`, started and
    stopped by its ready/stop files; the list it yields is filled with the join attempts at the end."""
    work = private_dir(prefix)
    outputs_file = work / "outputs.json"
    fd = os.open(outputs_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(outputs, handle)
    ready, stop, report = work / "ready", work / "stop", work / "load.json"
    attempts: list[dict[str, Any]] = []
    with (work / "load.log").open("w", encoding="utf-8") as log:
        command = [
            sys.executable, "-m", "tests.lab.drill_join_load", "--outputs-file", str(outputs_file),
            "--report", str(report), "--ready-file", str(ready), "--stop-file", str(stop),
            "--max-seconds", str(max_seconds),
        ]
        load = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait("the join load starts", 60, ready.exists)
            yield attempts
        finally:
            stop.touch()
            try:
                load.wait(timeout=60)
            except subprocess.TimeoutExpired:
                load.kill()
            outputs_file.unlink(missing_ok=True)
    assert report.exists(), f"the join load wrote no report: {(work / 'load.log').read_text()[-1500:]}"
    attempts.extend(json.loads(report.read_text(encoding="utf-8"))["attempts"])


def test_redis_master_lost_under_join_load(outputs: dict[str, Any], record_property: Callable) -> None:
    inventory = outputs["inventory"]
    nodes = list(inventory["groups"]["redis"])
    assert len(nodes) >= 3, f"the drill needs three Redis nodes, the lab has {len(nodes)}"
    old_ip = _cluster_whole(inventory, nodes)
    old = next(n for n in nodes if n["private_ip"] == old_ip)
    survivors = [n for n in nodes if n is not old]

    max_seconds = WARMUP_SECONDS + FAILOVER_DEADLINE + AFTER_FAILOVER_SECONDS + REJOIN_DEADLINE + 120
    with _join_load(outputs, "visio-drill-redis-", max_seconds) as attempts:
        time.sleep(WARMUP_SECONDS)
        killed_at = time.time()
        kill = "kill -KILL $(systemctl show --property=MainPID --value redis-server)"
        ssh(inventory, old, kill, check=True)

        def promoted() -> bool:
            seen = {_master_seen_by(inventory, n) for n in survivors}
            if len(seen) != 1 or old_ip in seen or "" in seen:
                return False
            new = next((n for n in survivors if n["private_ip"] in seen), None)
            return new is not None and _info(inventory, new).get("role") == "master"

        promoted_at = _wait("the Sentinels promote a replica", FAILOVER_DEADLINE, promoted)
        new_ip = _master_seen_by(inventory, survivors[0])
        # The failover is over for LiveKit once every node has written fresh stats to the new master.
        sfu = {str(h.get("public_ip") or h["private_ip"]) for h in inventory["groups"]["sfu"]}
        failed_over_at = _wait(
            "every LiveKit node SERVING on the new master", FAILOVER_DEADLINE,
            lambda: _livekit_serving_on(f"{new_ip}:{REDIS_PORT}", outputs["redis_password"], sfu),
        )
        rejoined_at: float | None = None

        def rejoined_and_loaded() -> bool:
            # The load runs AFTER_FAILOVER_SECONDS past the failover; meanwhile the old master's return
            # is watched, so its time is measured, not bounded below by the load's duration.
            nonlocal rejoined_at
            if rejoined_at is None:
                info = _info(inventory, old)
                if (info.get("role"), info.get("master_host"), info.get("master_link_status")) == (
                    "slave", new_ip, "up"
                ):
                    rejoined_at = time.time()
            return rejoined_at is not None and time.time() - failed_over_at >= AFTER_FAILOVER_SECONDS

        _wait("the old master replicates from the new one", REJOIN_DEADLINE, rejoined_and_loaded, step=1)
        assert rejoined_at is not None

    # A converge after the failover: succeeds, keeps the new master, and the cluster is whole.
    converge = _converge_redis(outputs)
    assert converge.succeeded, f"the converge after the failover failed:\n{converge.summary()}"
    master_after = _cluster_whole(inventory, nodes)
    assert master_after == new_ip, f"the converge moved the master from {new_ip} to {master_after}"
    second = _converge_redis(outputs)
    assert second.succeeded, f"the second converge after the failover failed:\n{second.summary()}"
    second_changed = {host: stats.changed for host, stats in second.hosts.items() if stats.changed}
    assert not second_changed, f"a second converge after the failover changed {second_changed}"
    assert _cluster_whole(inventory, nodes) == new_ip

    before = [a for a in attempts if a["start"] < killed_at]
    during = [a for a in attempts if killed_at <= a["start"] < failed_over_at]
    after = [a for a in attempts if a["start"] >= failed_over_at]
    first_ok = min((a["end"] for a in attempts if a["start"] >= killed_at and a["ok"]), default=None)
    last_failed = max((a["start"] for a in attempts if a["start"] >= killed_at and not a["ok"]), default=None)
    after_last = [a for a in attempts if last_failed is not None and a["start"] > last_failed]
    back = min((a["end"] for a in after_last if a["ok"]), default=None)
    figures = {
        "promoted_s": round(promoted_at - killed_at, 2),
        "failover_s": round(failed_over_at - killed_at, 2),
        "first_join_after_loss_s": round(first_ok - killed_at, 2) if first_ok else None,
        "last_failed_join_s": round(last_failed - killed_at, 2) if last_failed else None,
        "joins_work_again_s": round(back - killed_at, 2) if back else None,
        "joins": len(attempts),
        "joins_before": len(before),
        "failed_before": sum(not a["ok"] for a in before),
        "joins_during_failover": len(during),
        "failed_during_failover": sum(not a["ok"] for a in during),
        "joins_after_failover": len(after),
        "failed_after_failover": sum(not a["ok"] for a in after),
        "old_master_rejoined_s": round(rejoined_at - killed_at, 2),
        "converge_changed": sum(stats.changed for stats in converge.hosts.values()),
    }
    print("DRILL-REDIS " + " ".join(f"{k}={v}" for k, v in figures.items()), flush=True)
    for key, value in figures.items():
        record_property(f"drill_redis_{key}", value)
    failures = [a for a in attempts if not a["ok"]]
    print("DRILL-REDIS failed joins: " + json.dumps(
        [{"t": round(a["start"] - killed_at, 2), "node": a["node"], "error": a["error"]} for a in failures]
    ), flush=True)

    assert before and figures["failed_before"] == 0, f"joins failed before the fault: {failures}"
    assert first_ok is not None, "no join succeeded after the Redis master was lost"
    assert figures["first_join_after_loss_s"] <= FIRST_JOIN_TARGET_SECONDS, figures
    if last_failed is not None:
        assert back is not None and back - killed_at <= FIRST_JOIN_TARGET_SECONDS, figures
    assert figures["joins_after_failover"] >= 10, f"too few joins after the failover to judge: {figures}"
    assert figures["failed_after_failover"] == 0, (
        "joins failed after the failover completed: "
        + json.dumps([a for a in failures if a["start"] >= failed_over_at])
    )

