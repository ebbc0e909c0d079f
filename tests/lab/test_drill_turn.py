"""Fault drill: the TURN node relaying a meeting loses its power (needs the lab up, 2+ TURN nodes).

1. A relay-only meeting (publisher + subscriber, ICE transport policy relay) with the TURN servers
   LiveKit hands out: every TURN node by address (visio_infra/hosts/ansible_vars.py says why), and
   a probe joining a new relay-only room every 1.5 s (tests/lab/drill_traffic.py).
2. The TURN node carrying the subscriber's media is powered off for real (lab_ops.power_cut: its
   systemd-nspawn and everything in it SIGKILLed).
3. Measured: the time from the cut until the subscriber decodes video again through another TURN
   node. The client had a relay candidate on each TURN node, so ICE (the SDK's own reconnection: ICE
   restart) can move to the surviving one; only if the media stays stalled for STALL_SECONDS does
   the test client rejoin the room (the report says which of the two brought it back).
4. Relay-only probe joins during the drill must all succeed, through the surviving TURN node.
5. The machine comes back with `scripts/lab.sh up`, and `visio verify` passes.
Figures: `DRILL-TURN ...` on stdout and as JUnit properties. Bounded like the SFU drill.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import pytest

from tests.lab.lab_ops import (
    STACK,
    bring_back,
    call_traffic,
    drill_figures,
    power_cut,
    private_dir,
)
from visio_infra.commands.verify import fetch_outputs

pytestmark = [pytest.mark.labhost, pytest.mark.drill]

MEETING_SECONDS = 75
BEFORE_CUT_SECONDS = 8
STALL_SECONDS = 15
"""The SDK's ICE recovery gets this long before the test client rejoins."""
RECOVERY_TARGET_SECONDS = 30


def test_turn_node_lost_during_a_relayed_meeting(record_property: Any) -> None:
    outputs = fetch_outputs(STACK)
    turn = outputs["inventory"]["groups"]["turn"]
    assert len(turn) >= 2, "the TURN drill needs at least two TURN nodes (stacks: sizing.nodes.turn)"
    by_ip = {str(h.get("public_ip") or h["private_ip"]): h["name"] for h in turn}
    work = private_dir("visio-drill-turn-")
    extra = ("--relay", "--meeting-relay", "--stall-seconds", str(STALL_SECONDS))
    victim: str | None = None
    cut: float | None = None
    try:
        with call_traffic(
            work,
            outputs,
            meeting_seconds=MEETING_SECONDS,
            script="drill_traffic.py",
            probe_interval=1.5,
            extra=extra,
        ) as meeting:
            relays = meeting.get("relay") or {}
            relay_ip = str(relays.get("subscriber") or "")
            assert relay_ip in by_ip, f"the meeting's media is not relayed through a TURN node: {relays}"
            victim = by_ip[relay_ip]
            print(f"relayed meeting {meeting['room']} through {relays}: cutting {victim}", flush=True)
            time.sleep(BEFORE_CUT_SECONDS)
            cut = power_cut(victim)
            print(f"{victim} powered off at {cut:.3f}")
        report = json.loads((work / "traffic.json").read_text())
        meeting, probe = report["meeting"], report["probe"]
        recoveries = [r for r in meeting.get("recoveries", []) if r["back_wall"] > cut]
        during = [w for w in probe.get("wall", []) if w >= cut]
        after = meeting.get("relay_at_leave") or {}
        figures: dict[str, Any] = {
            "victim": victim,
            "recovered": bool(recoveries),
            "recovery_s": round(recoveries[0]["back_wall"] - cut, 2) if recoveries else None,
            "how": recoveries[0]["how"] if recoveries else None,
            "relay_before": relay_ip,
            "relay_after": after.get("subscriber"),
            "probe_joins": probe["joins"],
            "probe_ok": probe["ok"],
            "probe_failures": len(probe["failures"]),
            "probe_fallbacks": len(probe.get("fallbacks", [])),
            "probe_joins_after_cut": len(during),
            "probe_per_turn": json.dumps(probe["per_turn"], sort_keys=True).replace(" ", ""),
        }
        drill_figures("TURN", figures, record_property)
        print(f"meeting events: {json.dumps(meeting['events'])[-3000:]}")

        assert not meeting.get("error"), meeting.get("error")
        assert recoveries, (
            f"the relayed meeting never came back after {victim} was lost: {meeting['events'][-10:]}"
        )
        assert figures["relay_after"] in by_ip and by_ip[figures["relay_after"]] != victim, (
            f"the meeting should be relayed by a surviving TURN node at the end: {after}"
        )
        connected = meeting["connected_at_leave"]
        assert connected == {"publisher": 1, "subscriber": 1}, connected
        assert figures["recovery_s"] <= RECOVERY_TARGET_SECONDS, f"recovery took {figures['recovery_s']} s"
        assert len(during) >= 10, f"too few probe joins after the cut: {len(during)}"
        assert not probe["failures"], f"relayed probe joins failed during the drill: {probe['failures']}"
        # Every SFU node lives through a TURN drill: no join may have needed another SFU address.
        assert not probe.get("fallbacks"), f"probe joins fell back to another SFU: {probe['fallbacks']}"
    finally:
        if victim is not None and cut is not None:
            bring_back("TURN", victim, record_property, check=sys.exc_info()[0] is None)
