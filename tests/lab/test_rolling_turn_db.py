"""Rolling TURN and PostgreSQL rollouts on the lab, without cutting a relayed call (needs the lab up).

PostgreSQL minor update, replicas first (test_postgresql_minor_update_replica_first):
  the DB nodes are put back on the previous minor release the Debian mirror still carries (the
  state of a deployment made before the mirror published the current one), then
  `visio upgrade lab --role db` must update the replicas, see them streaming again, then hand the
  primary's leadership to an updated synchronous standby (`patronictl switchover`) and update the
  old primary last, leaving every node on the newest minor, one Patroni leader (another node than
  before), every replica streaming and `visio verify -k db` green.

coturn drain with a relayed participant (test_turn_rolling_restart_keeps_a_relayed_call):
  a TURN node can only drain while another one serves; the lab pins two TURN nodes. A meeting
  relayed only through the first TURN node keeps publishing while
  `visio upgrade lab --role turn --restart` drains (new clients refused) and restarts every TURN node one at a
  time, and a probe joins a new relay-only room every few seconds. Passes only if the meeting
  stays connected until it leaves on its own, its media went through that node, every probe join
  succeeds, both coturn processes were replaced, the meeting's node waited for it to leave while an
  allocation abandoned by its client on the other node did not hold that node's drain, and
  `visio verify lab` passes.

An interrupted `pulumi up` converges when run again (test_an_interrupted_up_converges_when_run_again):
  a scale-out by one TURN node (a copy of the stack file with one more in `sizing.nodes.turn`; the
  shared file is never written) is interrupted hard (two Ctrl-C's while the new TURN machine is being
  created, which leaves its create pending in the state); the same command run again must finish
  with nothing pending, exactly the inventory's machines on disk and the new node configured. The
  lab is scaled back in after.

Why a restart and not a version change: Debian 12 carries one coturn release (4.6.1-1), so there is
no second version to roll to; the restart takes exactly the upgrade's path (drain, install the
pinned package, fresh-allocation gate), and is what a libssl security update needs anyway.
Figures (`UPGRADE-FIGURE ...`, `UPGRADE-TRAFFIC ...`) are printed for scripts/bench.sh.
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
    pending_operations,
    private_dir,
    pulumi_up,
    pulumi_up_interrupted,
    rollout_figures,
    run,
    setup_events,
    ssh,
    visio,
)
from visio_infra.cloud.lab.plan import LabPaths
from visio_infra.commands.verify import fetch_outputs
from visio_infra.model.stack_file import load_stack_file

ROOT = Path(__file__).resolve().parents[2]
STACK_FILE = ROOT / "stacks" / f"Pulumi.{STACK}.yaml"
MEETING_SECONDS = 120
"""Long enough for the empty TURN node's whole restart to happen while the meeting is on."""
TURN_NODES = re.compile(r"(?m)^(\s+nodes:\s*\{[^}]*\bturn:\s*)(\d+)")

pytestmark = pytest.mark.labhost


# --------------------------------------------------------------------------- PostgreSQL


def _pg(inventory: dict[str, Any], host: dict[str, Any], sql: str) -> str:
    return ssh(inventory, host, f"runuser -u postgres -- psql -XAtq -c {json.dumps(sql)}", check=True)


def _installed(inventory: dict[str, Any], host: dict[str, Any], package: str) -> str:
    return ssh(inventory, host, f"dpkg-query -W -f='${{Version}}' {package}", check=True)


PATRONICTL = "runuser -u postgres -- patronictl -c /etc/patroni/config.yml"


def _leader(inventory: dict[str, Any], hosts: list[dict[str, Any]]) -> str:
    members = json.loads(ssh(inventory, hosts[0], f"{PATRONICTL} list -f json", check=True))
    leaders = [m["Member"] for m in members if m["Role"] == "Leader"]
    assert len(leaders) == 1, members
    return str(leaders[0])


def _wait_streaming(inventory: dict[str, Any], replica: dict[str, Any]) -> None:
    for _ in range(60):
        if _pg(inventory, replica, "select status from pg_stat_wal_receiver") == "streaming":
            return
        time.sleep(2)
    pytest.fail(f"{replica['name']} does not stream from the primary")


def test_postgresql_minor_update_replica_first() -> None:
    outputs = fetch_outputs(STACK)
    inventory = outputs["inventory"]
    major = load_stack_file(STACK_FILE).versions.postgresql
    package = f"postgresql-{major}"
    db_hosts = inventory["groups"]["db"]
    leader = _leader(inventory, db_hosts)
    primary = next(h for h in db_hosts if h["name"] == leader)
    replicas = [h for h in db_hosts if h["name"] != leader]
    assert replicas, "the lab should have a PostgreSQL replica"
    scope = load_stack_file(STACK_FILE).ministry.slug
    current = _installed(inventory, primary, package)

    # The previous minor release of the pinned major the mirror carries (newest first in madison).
    offered = ssh(inventory, primary, f"apt-cache madison {package} | awk '{{print $3}}'", check=True).split()
    older = [v for v in offered if v != current]
    assert current in offered and older, (
        f"the mirror offers {offered} for {package}: no release older than {current} to start from"
    )
    previous = older[0]

    # Put every DB node back on the previous minor (replica first), as if deployed before it.
    for host in (*replicas, primary):
        ssh(
            inventory, host,
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-downgrades "
            f"{package}={previous} postgresql-client-{major}={previous} >/dev/null "
            f"&& {PATRONICTL} restart --force {scope} {host['name']} >/dev/null",
            check=True,
        )
    for replica in replicas:
        _wait_streaming(inventory, replica)
    old_server = previous.split("-")[0]
    assert {_pg(inventory, h, "show server_version").split()[0] for h in (primary, *replicas)} == {old_server}

    rc, log = visio("upgrade", STACK, "--yes", "--role", "db")
    assert rc == 0, "visio upgrade --role db failed (see its output above)"

    steps = rollout_figures(log, "db")
    assert [s["node"] for s in steps] == [*sorted(h["name"] for h in replicas), primary["name"]], (
        f"replicas must be updated before the primary: {steps}"
    )
    new_leader = _leader(inventory, db_hosts)
    assert new_leader != primary["name"], f"{primary['name']} was updated without a switchover"
    replicas = [h for h in db_hosts if h["name"] != new_leader]
    assert all(s["status"] == "done" and s["from"] == previous and s["to"] == current for s in steps), steps
    new_server = current.split("-")[0]
    for host in (primary, *replicas):
        assert _installed(inventory, host, package) == current, host["name"]
        assert _pg(inventory, host, "show server_version").split()[0] == new_server, host["name"]
    for replica in replicas:
        _wait_streaming(inventory, replica)
    print(
        f"UPGRADE-FIGURE-DB stack={STACK} from={previous} to={current} "
        + " ".join(f"{s['node']}={s['node_seconds']}s" for s in steps)
    )

    rc, _ = visio("verify", STACK, "-k", "test_db or test_all")
    assert rc == 0, "visio verify (db) failed after the minor update"


# --------------------------------------------------------------------------- coturn


def _coturn_pids(inventory: dict[str, Any]) -> dict[str, str]:
    return {
        host["name"]: ssh(inventory, host, "systemctl show -p MainPID --value coturn")
        for host in inventory["groups"]["turn"]
    }


def _abandon_an_allocation(host: dict[str, Any], secret: str) -> str:
    """Allocate on `host` and walk away without releasing it, like a client that crashed: coturn
    keeps such an allocation for 600 s, and it must not hold the node's drain."""
    from visio_infra.probes.turn_probe import TurnClient, rest_api_credentials

    username, password = rest_api_credentials(secret, user_id="abandoned-client")
    with TurnClient(host.get("public_ip") or host["private_ip"], 3478, "udp", timeout=5) as client:
        answer = client.allocate(username, password)
        assert answer.ok, f"could not allocate on {host['name']}: {answer}"
        return str(client.relayed)


def _turn_rollout_with_a_relayed_meeting(work: Path, config_file: Path) -> None:
    outputs = fetch_outputs(STACK)
    inventory = outputs["inventory"]
    turn_nodes = inventory["groups"]["turn"]
    assert len(turn_nodes) >= 2, f"expected the lab to have two TURN nodes or more: {turn_nodes}"
    meeting_node = turn_nodes[0]
    meeting_ip = meeting_node.get("public_ip") or meeting_node["private_ip"]
    pids_before = _coturn_pids(inventory)
    abandoned = _abandon_an_allocation(turn_nodes[1], outputs["turn_shared_secret"])
    print(f"abandoned allocation {abandoned} on {turn_nodes[1]['name']}")

    relay_only = ("--relay", "--meeting-turn-uri", f"turn:{meeting_ip}:3478?transport=udp")
    with call_traffic(work, outputs, meeting_seconds=MEETING_SECONDS, extra=relay_only) as meeting:
        print(f"relayed meeting {meeting['room']} through {meeting.get('relay')}; rolling restart of TURN")
        rc, log = visio(
            "upgrade", STACK, "--yes", "--role", "turn", "--restart", "--config-file", str(config_file)
        )
    assert rc == 0, "visio upgrade --role turn --restart failed (see its output above)"

    report = json.loads((work / "traffic.json").read_text())
    meeting, probe = report["meeting"], report["probe"]
    steps = rollout_figures(log, "turn")
    print(
        f"UPGRADE-TRAFFIC-TURN stack={STACK} meeting_relay={meeting.get('relay')} "
        f"meeting_media_s={meeting['media_at'] - meeting['joined_at']:.2f} "
        f"meeting_setup_events={len(setup_events(meeting))} "
        f"meeting_frames={meeting['frames']} meeting_max_gap_s={meeting['max_gap_s']} "
        f"probe_joins={probe['joins']} probe_ok={probe['ok']} probe_failures={len(probe['failures'])} "
        f"probe_per_turn={json.dumps(probe['per_turn'], sort_keys=True)} "
        + " ".join(f"{s['node']}_drain_s={s['drain_seconds']}" for s in steps)
    )

    assert str(meeting.get("relay", "")).startswith(meeting_ip), (
        f"the meeting's media should go through {meeting_node['name']} ({meeting_ip}): {meeting.get('relay')}"
    )
    cut = meeting_cuts(meeting)
    assert not cut, f"the relayed meeting lost its connection before leaving on its own: {cut}"
    assert meeting["connected_at_leave"] == {"publisher": 1, "subscriber": 1}, meeting["connected_at_leave"]
    assert meeting["frames"] >= MEETING_SECONDS * 5, f"too few video frames received: {meeting['frames']}"
    gap = meeting["max_gap_s"]
    assert gap is not None and gap < 3, f"media gap {gap} s"
    assert probe["joins"] >= 10 and not probe["failures"], f"probe joins failed: {probe['failures']}"
    # Every TURN node the lab has at this point (two, or three after the interrupted scale-out test).
    addresses = {str(h.get("public_ip") or h["private_ip"]) for h in turn_nodes}
    assert set(probe["per_turn"]) == addresses, (
        f"probe joins should have used every TURN node {sorted(addresses)}: {probe['per_turn']}"
    )

    assert sorted(s["node"] for s in steps) == sorted(h["name"] for h in turn_nodes), steps
    assert all(s["status"] == "done" for s in steps), steps
    assert steps[-1]["node"] == meeting_node["name"], f"the busy node should drain last: {steps}"
    empty, busy = float(steps[0]["drain_seconds"]), float(steps[-1]["drain_seconds"])
    assert busy > empty + 10, (
        f"{meeting_node['name']} should have waited for the relayed meeting: drained in {busy} s "
        f"(the empty node in {empty} s)"
    )
    pids_after = _coturn_pids(inventory)
    assert all(pids_after[n] not in ("", "0", pids_before[n]) for n in pids_before), (pids_before, pids_after)

    rc, _ = visio("verify", STACK)
    assert rc == 0, "visio verify lab failed after the TURN rollout"


def _turn_count(text: str) -> int:
    found = TURN_NODES.findall(text)
    assert len(found) == 1, f"expected one sizing.nodes.turn in {STACK_FILE}"
    return int(found[0][1])


@pytest.fixture(scope="module")
def turn_lab() -> dict[str, Any]:
    """The lab as it is: it pins two TURN nodes (2 serving, as the sizing floor gives a ministry
    before its spare), so a TURN node can drain while the other serves."""
    assert _turn_count(STACK_FILE.read_text(encoding="utf-8")) >= 2, (
        f"{STACK_FILE}: sizing.nodes.turn must be at least 2 (a TURN node drains only while another serves)"
    )
    return {"work": private_dir("visio-turn-rollout-"), "config_file": STACK_FILE}


@pytest.fixture(scope="module")
def scaled_out_lab() -> Iterator[dict[str, Any]]:
    """The lab scaled out by one TURN node, the way an operator whose first attempt was cut off
    would get there: the first `pulumi up` is interrupted hard while the new machine is being created
    (its create is left pending in the state), the same command run again must converge. The lab is
    scaled back in at the end of the module."""
    original = STACK_FILE.read_bytes()
    text = original.decode("utf-8")
    count = _turn_count(text)
    work = private_dir("visio-turn-scale-")
    scaled = work / f"Pulumi.{STACK}.yaml"
    scaled.write_text(TURN_NODES.sub(lambda m: f"{m.group(1)}{count + 1}", text), encoding="utf-8")

    started = time.monotonic()
    interrupted_rc, _ = pulumi_up_interrupted(STACK, scaled, when=f"{STACK}-turn-{count + 1} creating")
    pending = pending_operations(STACK)
    interrupted_s = time.monotonic() - started
    started = time.monotonic()
    # What the README tells an operator to do after an interrupted lab up.
    rc, resumed_log = run(["bash", "scripts/lab.sh", "up", "--config-file", str(scaled)], timeout=3600)
    print(
        f"UPGRADE-FIGURE-TURN stack={STACK} interrupted_after_seconds={interrupted_s:.1f} "
        f"pending_after_interrupt={len(pending)} scale_out_seconds={time.monotonic() - started:.1f}"
    )
    try:
        assert rc == 0, "pulumi up run again after the interrupted scale-out failed (see its output above)"
        yield {
            "work": work, "config_file": scaled, "interrupted_rc": interrupted_rc, "pending": pending,
            "resumed_log": resumed_log, "turn_nodes": count + 1,
        }
    finally:
        started = time.monotonic()
        rc, _ = pulumi_up(STACK)
        print(f"UPGRADE-FIGURE-TURN stack={STACK} scale_in_seconds={time.monotonic() - started:.1f}")
        assert STACK_FILE.read_bytes() == original, f"{STACK_FILE} changed during the test"
        assert rc == 0, f"pulumi up back to {count} TURN nodes failed (see its output above)"


def test_an_interrupted_up_converges_when_run_again(scaled_out_lab: dict[str, Any]) -> None:
    assert scaled_out_lab["interrupted_rc"] != 0, "the interrupted pulumi up should have failed"
    if scaled_out_lab["pending"]:
        # lab.sh clears what the cut-off create left pending; the machine provider adopts the rest.
        assert re.search(r"left \d+ operation\(s\) pending: clearing them", scaled_out_lab["resumed_log"])
    assert pending_operations(STACK) == [], "the state still records operations in flight"
    outputs = fetch_outputs(STACK)
    inventory = outputs["inventory"]
    names = sorted(h["name"] for hosts in inventory["groups"].values() for h in hosts)
    wanted = [f"{STACK}-turn-{i}" for i in range(1, scaled_out_lab["turn_nodes"] + 1)]
    assert [h["name"] for h in inventory["groups"]["turn"]] == wanted
    machines = LabPaths(STACK).machines
    on_disk = sorted(p.name for p in machines.iterdir() if not p.name.startswith("."))
    assert on_disk == names, f"machine trees under {machines}: {on_disk}, inventory: {names}"
    # The new node was configured by the resumed run, like any other.
    assert ssh(inventory, inventory["groups"]["turn"][-1], "systemctl is-active coturn") == "active"


def test_turn_rolling_restart_keeps_a_relayed_call(turn_lab: dict[str, Any]) -> None:
    _turn_rollout_with_a_relayed_meeting(turn_lab["work"], turn_lab["config_file"])
