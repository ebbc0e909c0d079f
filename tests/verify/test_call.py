"""A real call through each SFU node: default ICE, then ICE forced through the ministry's TURN.

The probe runs in its own process (the LiveKit native library, its TLS trust and its threads stay
out of the test runner) with a hard timeout; it reads keys and the CA from the 0600 outputs file.
Each call's report (timings, selected candidate pair; no secret) is kept under the report directory
for the benchmark script.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from visio_infra.model.security_rules import HTTPS_PORT

ROLES = ("sfu",)
CALL_TIMEOUT = 30
REPORT_DIR_ENV = "VISIO_VERIFY_REPORT_DIR"


@contextlib.contextmanager
def _one_call_at_a_time() -> Iterator[None]:
    """The verify's calls run one after the other, across its parallel workers: each call encodes and
    decodes video on this machine in real time, so two at once (beside testssl and Lynis) measure the
    controller's cores more than the stack. Found in CI: a direct call decoded 7 video frames in 30 s
    (audio intact) while the other calls and the OpenStack tests ran alongside."""
    lock = Path(os.environ.get(REPORT_DIR_ENV) or tempfile.gettempdir()) / f".visio-call-{os.getuid()}.lock"
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _call(node, mode: str, extra: list[str] | None = None) -> dict:
    base = f"{node.public_ip}:{HTTPS_PORT}"
    command = [
        sys.executable, "-m", "visio_infra.probes.livekit_call",
        "--url", f"wss://{base}", "--api-url", f"https://{base}",
        "--mode", mode, "--timeout", str(CALL_TIMEOUT), *(extra or []),
    ]
    try:
        with _one_call_at_a_time():
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=CALL_TIMEOUT + 30, check=False
            )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{node} {mode}: the call probe did not finish within {CALL_TIMEOUT + 30} s")
    try:
        report = json.loads(done.stdout)[0]
    except (ValueError, IndexError):
        pytest.fail(f"{node} {mode}: the call probe crashed: {done.stderr.strip()[-600:]}")
    report_dir = os.environ.get(REPORT_DIR_ENV)
    if report_dir:
        path = Path(report_dir) / f"call-{node.name}-{mode}.json"
        path.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return report


def _pair(report: dict) -> str:
    local = report.get("subscriber_pair", {}).get("local") or {}
    remote = report.get("subscriber_pair", {}).get("remote") or {}
    return (f"{local.get('type')} {local.get('protocol')} {local.get('address')} -> "
            f"{remote.get('type')} {remote.get('address')}:{remote.get('port')}")


def test_call_with_default_ice(node):
    report = _call(node, "direct")
    assert report["passed"], f"{node}: direct call failed: {report['error']}"
    assert report["room_deleted"], f"{node}: the test room was not deleted"
    print(f"{node} direct: first video {report['first_video_ms']} ms; {_pair(report)}")


def test_call_relayed_through_our_turn(node, inventory):
    report = _call(node, "relay")
    assert report["passed"], f"{node}: relayed call failed: {report['error']}"
    turn_hosts = inventory["groups"]["turn"]
    turn_addresses = {str(h["private_ip"]) for h in turn_hosts} | {str(h["public_ip"]) for h in turn_hosts
                                                                    if h.get("public_ip")}
    for side in ("subscriber_pair", "publisher_pair"):
        local = report[side].get("local") or {}
        assert local.get("type") == "relay", f"{node}: {side} did not use a relay candidate: {local}"
        # A relay candidate's address is the TURN node's relay address: ours, nobody else's.
        assert local.get("address") in turn_addresses, (
            f"{node}: media relayed by {local.get('address')}, not by our TURN nodes {sorted(turn_addresses)}"
        )
    print(f"{node} relay: first video {report['first_video_ms']} ms; {_pair(report)}")
