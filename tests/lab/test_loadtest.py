"""`visio loadtest lab`: a small real load (2 rooms x 3 participants, 30 s) with the model-versus-
measured table printed for the bench (needs `scripts/lab.sh up`).

Every synthetic participant joins, video flows to every other one, and the SFU counters moved (CPU
time and bytes out of LiveKit on the SFU nodes). Without `--yes-load-this-stack lab` it refuses
before connecting to anything. The lab's figures share the host's cores with the load generator
and the other machines (README, "what the lab's figures can tell").
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.lab.lab_ops import ROOT, STACK

pytestmark = pytest.mark.labhost

REPORT = ROOT / "reports" / f"loadtest-{STACK}.json"


def _loadtest(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "visio_infra.commands.cli", "loadtest", STACK, *args],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )


def test_loadtest_refuses_a_stack_not_named_twice() -> None:
    done = _loadtest("--rooms", "1", "--participants", "2", "--duration", "10")
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"add --yes-load-this-stack {STACK}" in done.stderr
    assert "SFU node(s)" not in done.stdout  # nothing started


def test_small_load_measures_the_sfu_against_the_model() -> None:
    REPORT.parent.mkdir(exist_ok=True)
    done = _loadtest("--rooms", "2", "--participants", "3", "--duration", "30",
                     "--yes-load-this-stack", STACK, "--json", str(REPORT))
    print(done.stdout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(REPORT.read_text(encoding="utf-8"))
    assert (report["joins_ok"], report["joins_total"]) == (6, 6), report["errors"]
    assert report["received_fps"] >= 5, report  # 15 fps sent; a loaded lab still delivers most
    assert report["first_frame_p95_s"] is not None and report["first_frame_p95_s"] < 30, report
    assert report["vcpu_per_participant"] > 0 and report["mbps_out_per_participant"] > 0, report
    # LiveKit's participant gauge summed over the SFU nodes sees every participant (one whose
    # signalling goes through another node than its room's may be counted on both).
    assert report["peak_participants_seen"] >= 6, report
    assert report["model"]["vcpu_per_video_participant"] > 0
    for line in done.stdout.splitlines():
        if line.startswith(("joins:", "join ->", "received", "vCPU", "egress", "ingress")):
            print(f"LOADTEST {line}")
