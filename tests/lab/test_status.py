"""`visio status lab` against the running lab (needs `scripts/lab.sh up`).

During a real meeting (publisher + subscriber on one SFU node, tests/lab/upgrade_traffic.py) the
status reads every node, counts the meeting's room and participants on the node that hosts it, sees
one Patroni leader with a synchronous standby and one Redis master, and has nothing to report. Then
coturn is stopped on a TURN node: the status names it and exits 1; coturn is started again.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.lab.lab_ops import ROOT, STACK, call_traffic, private_dir, ssh
from visio_infra.commands.verify import fetch_outputs

pytestmark = pytest.mark.labhost


def _status(outputs_file: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "visio_infra.commands.cli", "status", STACK, "--json",
         "--outputs-file", outputs_file],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode in (0, 1), f"visio status failed ({done.returncode}): {done.stderr[-2000:]}"
    return done.returncode, json.loads(done.stdout)


def test_status_during_a_meeting_then_with_coturn_stopped() -> None:
    outputs = fetch_outputs(STACK)
    inventory = outputs["inventory"]
    work = private_dir("visio-status-")
    outputs_file = work / "status-outputs.json"
    outputs_file.write_text(json.dumps({"inventory": inventory}), encoding="utf-8")
    expected = {h["name"]: role for role, hosts in inventory["groups"].items() for h in hosts or []}

    with call_traffic(work, outputs, meeting_seconds=30) as meeting:
        rc, reading = _status(str(outputs_file))
    print(json.dumps(reading, indent=2))
    nodes = {n["name"]: n for n in reading["nodes"]}
    assert {name: n["role"] for name, n in nodes.items()} == expected
    assert all(n["reachable"] for n in nodes.values()), [n["error"] for n in nodes.values() if n["error"]]
    assert reading["findings"] == [] and rc == 0, reading["findings"]
    for node in nodes.values():
        assert node["cpu_percent"] is not None and 0 <= node["cpu_percent"] <= 100, node
        assert node["services"] and set(node["services"].values()) == {"active"}, node
    host = nodes[meeting["node"]]["figures"]
    assert host["rooms"] >= 1 and host["participants"] >= 2, (meeting["node"], host)
    db_roles = sorted(n["figures"]["patroni_role"] for n in nodes.values() if n["role"] == "db")
    assert db_roles.count("Leader") == 1 and "Sync Standby" in db_roles, db_roles
    redis_roles = [n["figures"]["redis_role"] for n in nodes.values() if n["role"] == "redis"]
    assert redis_roles.count("master") == 1, redis_roles
    assert all(isinstance(n["figures"]["allocations"], int) for n in nodes.values() if n["role"] == "turn")
    # Days left on each TLS listener's certificate, read on the wire on the node (a fresh stack CA
    # certificate is valid 397 days).
    tls_roles = ("sfu", "turn", "db")
    cert_days = {name: n["figures"]["cert_days"] for name, n in nodes.items() if n["role"] in tls_roles}
    assert cert_days and all(isinstance(d, int) and 30 < d <= 398 for d in cert_days.values()), cert_days

    turn = inventory["groups"]["turn"][0]
    try:
        ssh(inventory, turn, "systemctl stop coturn.service", check=True)
        rc, broken = _status(str(outputs_file))
        assert rc == 1, broken
        assert f"{turn['name']}: coturn not active" in broken["findings"], broken["findings"]
    finally:
        ssh(inventory, turn, "systemctl start coturn.service", check=True)
    rc, healed = _status(str(outputs_file))
    assert rc == 0 and healed["findings"] == [], healed["findings"]
