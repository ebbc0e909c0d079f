"""Rolling LiveKit upgrade on the lab without cutting a call (needs the lab up: `bash scripts/lab.sh up`).

1. Roll the lab back to the previous LiveKit release (toolchain/versions.env) the way an SRE does:
   `versions.livekit` changed in the stack config and `pulumi up` (its configuration step takes the
   rolling path for a version change); the changed config is a copy given with `--config-file`.
2. Start a meeting (publisher + subscriber, media flowing) on one SFU node and a probe that joins a
   new room every few seconds (tests/lab/upgrade_traffic.py, in its own process).
3. Run `visio upgrade lab --yes` (stack file: the current release): the empty node is drained and
   upgraded first, then the meeting's node, whose drain lasts until the meeting leaves on its own.
4. Pass only if the meeting never lost its connection before leaving, every probe join succeeded,
   every SFU node runs the new release, and `visio verify lab` passes.
Figures (`UPGRADE-FIGURE ...`, `UPGRADE-TRAFFIC ...` lines) are printed for scripts/bench.sh:
    .venv/bin/python -m pytest tests/lab/test_rolling_upgrade.py -s -q -p no:cacheprovider | grep '^UPGRADE-'
The shared stack file is never written. The lab is left on the current release when the test passes.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab.lab_ops import (
    STACK,
    call_traffic,
    meeting_cuts,
    private_dir,
    pulumi_up,
    rollout_figures,
    setup_events,
    ssh,
    visio,
)
from visio_infra.commands.verify import fetch_outputs
from visio_infra.hosts.ansible_run import default_livekit_binary

ROOT = Path(__file__).resolve().parents[2]
STACK_FILE = ROOT / "stacks" / f"Pulumi.{STACK}.yaml"
VERSIONS_ENV = ROOT / "toolchain" / "versions.env"
MEETING_SECONDS = 120
"""Long enough for the empty node's whole upgrade to happen while the meeting is on, on a loaded
machine too: with 90 s, `visio upgrade`'s start plus a 48 s first node (three labs on two cores)
once reached the meeting's node after the meeting had left, and its drain proved nothing."""
LIVEKIT_PIN = re.compile(r"(?m)^(\s+livekit:\s*)(\S+)\s*$")

pytestmark = pytest.mark.labhost


def pinned_versions() -> tuple[str, str]:
    values = dict(
        line.split("=", 1)
        for line in VERSIONS_ENV.read_text(encoding="utf-8").splitlines()
        if "=" in line and not line.startswith("#")
    )
    return values["LIVEKIT_PREVIOUS_VERSION"].strip(), values["LIVEKIT_VERSION"].strip()


def set_livekit_pin(text: str, version: str) -> str:
    found = LIVEKIT_PIN.findall(text)
    assert len(found) == 1, f"expected one versions.livekit pin in {STACK_FILE}, found {len(found)}"
    return LIVEKIT_PIN.sub(lambda m: f"{m.group(1)}{version}", text)


def running_livekit(inventory: dict[str, Any]) -> dict[str, str]:
    """Per SFU node, the binary its livekit process runs (/opt/livekit/<version>/livekit-server)."""
    return {
        host["name"]: ssh(
            inventory, host, 'readlink "/proc/$(systemctl show -p MainPID --value livekit)/exe"'
        )
        for host in inventory["groups"]["sfu"]
    }


@pytest.fixture(scope="module")
def versions() -> tuple[str, str]:
    previous, current = pinned_versions()
    missing = [
        str(p) for p in (default_livekit_binary(previous), default_livekit_binary(current)) if not p.exists()
    ]
    if missing:
        pytest.fail(
            f"LiveKit builds missing: {', '.join(missing)}; build them with `bash scripts/toolchain.sh all`"
        )
    return previous, current


@pytest.fixture(scope="module")
def stack_file_guard() -> Iterator[str]:
    """The stack file's text; the test never writes it, and checks nobody changed it meanwhile."""
    original = STACK_FILE.read_bytes()
    yield original.decode("utf-8")
    assert STACK_FILE.read_bytes() == original, f"{STACK_FILE} changed during the test"


@pytest.fixture(scope="module")
def outputs() -> dict[str, Any]:
    return fetch_outputs(STACK)


def test_rolling_livekit_upgrade_keeps_calls(versions, stack_file_guard, outputs) -> None:
    previous, current = versions
    inventory = outputs["inventory"]
    sfu_nodes = inventory["groups"]["sfu"]
    assert len(sfu_nodes) >= 2, "the rolling upgrade needs at least two SFU nodes in the lab"
    original = stack_file_guard
    assert LIVEKIT_PIN.search(original) and LIVEKIT_PIN.search(original).group(2) == current, (  # type: ignore[union-attr]
        f"{STACK_FILE} should pin LiveKit {current} (toolchain/versions.env)"
    )

    # 0. Pulumi's state on the current release: `visio upgrade` (step 3) converges the hosts but does
    #    not write the state, so after an earlier run the state still says `previous` and step 1
    #    would be no change. Quick when the state is current already.
    rc, _ = pulumi_up(STACK)
    assert rc == 0, f"pulumi up of {STACK} on the current release failed (see its output above)"

    # 1. Back to the previous release through `pulumi up` (no call on: every drain is immediate),
    #    with a copy of the stack file so other users of the repository never see it changed.
    work = private_dir("visio-upgrade-test-")
    previous_config = work / f"Pulumi.{STACK}.yaml"
    previous_config.write_text(set_livekit_pin(original, previous), encoding="utf-8")
    started = time.monotonic()
    rc, log = pulumi_up(STACK, previous_config)
    assert rc == 0, "pulumi up to the previous LiveKit release failed (see its output above)"
    print(
        f"UPGRADE-FIGURE stack={STACK} step=pulumi-up-to-{previous} seconds={time.monotonic() - started:.1f}"
    )
    assert "UPGRADE-FIGURE" in log, "pulumi up did not take the rolling path for the version change"
    running = running_livekit(inventory)
    assert all(f"/{previous}/" in exe for exe in running.values()), f"not all on {previous}: {running}"

    # 2. A meeting with media flowing on one node, and the probe.
    with call_traffic(work, outputs, meeting_seconds=MEETING_SECONDS) as meeting:
        print(f"meeting {meeting['room']} on {meeting['node']}; upgrading to {current}")
        # 3. The upgrade, as an SRE runs it.
        rc, log = visio("upgrade", STACK, "--yes", "--role", "sfu")
    assert rc == 0, "visio upgrade failed (see its output above)"
    report = json.loads((work / "traffic.json").read_text())
    meeting, probe = report["meeting"], report["probe"]
    # visio upgrade already printed its UPGRADE-FIGURE lines (echoed above): they are not repeated.
    join_ms = sorted(probe["join_ms"]) or [0]
    print(
        f"UPGRADE-TRAFFIC stack={STACK} meeting_node={meeting.get('node')} "
        f"meeting_media_s={meeting['media_at'] - meeting['joined_at']:.2f} "
        f"meeting_setup_events={len(setup_events(meeting))} meeting_frames={meeting['frames']} "
        f"meeting_max_gap_s={meeting['max_gap_s']} probe_joins={probe['joins']} probe_ok={probe['ok']} "
        f"probe_failures={len(probe['failures'])} probe_join_ms_median={join_ms[len(join_ms) // 2]} "
        f"probe_join_ms_max={join_ms[-1]} probe_per_node={json.dumps(probe['per_node'], sort_keys=True)}"
    )

    # 4. Verdicts.
    cut = meeting_cuts(meeting)
    assert not cut, f"the meeting lost its connection before leaving on its own: {cut}"
    assert meeting["connected_at_leave"] == {"publisher": 1, "subscriber": 1}, meeting["connected_at_leave"]
    assert meeting["frames"] >= MEETING_SECONDS * 5, f"too few video frames received: {meeting['frames']}"
    assert meeting["max_gap_s"] is not None and meeting["max_gap_s"] < 3, (
        f"media gap {meeting['max_gap_s']} s"
    )
    assert probe["joins"] >= 10 and not probe["failures"], f"probe joins failed: {probe['failures']}"
    assert probe["ok"] == probe["joins"]
    drained = [f for f in rollout_figures(log, "sfu") if f["status"] == "done"]
    assert len(drained) == len(sfu_nodes), f"expected every SFU node upgraded: {drained}"
    meeting_figure = next(f for f in drained if f["node"] == meeting["node"])
    drain = float(meeting_figure["drain_seconds"])
    assert drain > 10, f"the meeting's node should have waited for the meeting to leave; drained in {drain} s"
    running = running_livekit(inventory)
    assert all(f"/{current}/" in exe for exe in running.values()), f"not all on {current}: {running}"

    rc, _ = visio("verify", STACK)
    assert rc == 0, "visio verify lab failed after the upgrade"
