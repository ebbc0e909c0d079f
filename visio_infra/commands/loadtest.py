"""`visio loadtest <stack>`: synthetic participants against a stack's SFUs, measured against the
sizing model.

    visio loadtest lab --rooms 2 --participants 4 --duration 60 --yes-load-this-stack lab
    visio loadtest interieur --rooms 5 --participants 8 --duration 300 --relay \\
        --yes-load-this-stack interieur --json reports/loadtest-interieur.json

Bounded: at most 60 participants and 15 minutes, joins give up after 30 s, and every room is left
and deleted at the end. It refuses to run unless the stack is named a second time with
--yes-load-this-stack (no accidental load on a ministry in production).

Reports: joins that succeeded, join -> first frame p50/p95, received frame rate, and per participant
the SFU's CPU (LiveKit's process time on the SFU nodes) and egress/ingress (LiveKit's byte counters),
next to the stack's sizing coefficients. Exit 0 when every join succeeded and video flowed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from visio_infra.hosts.ssh import node_address, run_script, write_ssh_config
from visio_infra.model.loadtest import (
    LoadPlan,
    LoadPlanError,
    SfuCounters,
    build_report,
    confirm_target,
    counters_script,
    parse_counters,
    render_report,
)
from visio_infra.model.node_status import sections
from visio_infra.model.stack_file import load_stack_file, stack_file


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visio loadtest", description=__doc__.split("\n\n")[0])
    parser.add_argument("stack")
    parser.add_argument("--rooms", type=int, default=2)
    parser.add_argument("--participants", type=int, default=4, help="per room")
    parser.add_argument("--duration", type=float, default=60, help="seconds of steady load")
    parser.add_argument("--relay", action="store_true", help="relay-only ICE: media through the stack's TURN")
    parser.add_argument("--yes-load-this-stack", metavar="STACK", help="the stack's name again: you mean it")
    parser.add_argument("--outputs-file", help="the stack's outputs (JSON, 0600) fetched beforehand")
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON here")
    return parser


def read_counters(inventory: Mapping[str, Any], ssh_config: Path) -> list[SfuCounters]:
    """Every SFU node's LiveKit CPU time and byte counters, read on the node."""
    connection = inventory.get("connection") or {}
    counters = []
    for host in inventory["groups"]["sfu"]:
        rc, out, err = run_script(host, connection, ssh_config, counters_script())
        if rc != 0:
            reason = err.strip()[-300:]
            raise RuntimeError(f"{host['name']}: reading LiveKit's counters failed ({rc}): {reason}")
        counters.append(parse_counters(sections(out)))
    return counters


def _targets(inventory: Mapping[str, Any]) -> list[tuple[str, str]]:
    connection = inventory.get("connection") or {}
    hosts = inventory["groups"]["sfu"]
    if connection.get("bastion"):
        # Behind a bastion the generator still joins like a user: through the public addresses.
        return [(f"wss://{h['public_ip']}", f"https://{h['public_ip']}") for h in hosts if h.get("public_ip")]
    return [(f"wss://{node_address(h, {})}", f"https://{node_address(h, {})}") for h in hosts]


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        confirm_target(args.stack, args.yes_load_this_stack)
        plan = LoadPlan(args.rooms, args.participants, args.duration, args.relay)
        config = load_stack_file(stack_file(args.stack))
    except (LoadPlanError, ValueError, FileNotFoundError) as exc:
        print(f"visio loadtest: {exc}", file=sys.stderr)
        return 2
    if args.outputs_file:
        outputs = json.loads(Path(args.outputs_file).read_text(encoding="utf-8"))
    else:
        from visio_infra.commands.verify import fetch_outputs

        outputs = fetch_outputs(args.stack)
    inventory = outputs["inventory"]
    if not inventory["groups"].get("sfu"):
        print(f"visio loadtest: stack {args.stack} has no SFU node", file=sys.stderr)
        return 2

    from visio_infra.probes.livekit_call import trust_bundle
    from visio_infra.probes.load_participants import LoadTarget, run_load

    bundle = trust_bundle(outputs.get("ca_certificate"))
    key, secret = outputs["livekit_api_key"], outputs["livekit_api_secret"]
    target = LoadTarget(_targets(inventory), key, secret, bundle)
    readings: list[list[SfuCounters]] = []
    with tempfile.TemporaryDirectory(prefix="visio-loadtest-") as work:
        ssh_config = write_ssh_config(inventory.get("connection") or {}, Path(work), "ssh_config")

        async def on_steady() -> None:
            readings.append(await asyncio.to_thread(read_counters, inventory, ssh_config))

        print(f"visio loadtest {args.stack}: {plan.rooms} rooms x {plan.participants} participants, "
              f"{plan.duration:.0f} s, through {len(target.urls)} SFU node(s)", flush=True)
        try:
            results, window = asyncio.run(run_load(target, plan, on_steady=on_steady))
        finally:
            if bundle:
                os.unlink(bundle)
    if len(readings) != 2:
        print("visio loadtest: the run ended before the steady window closed", file=sys.stderr)
        return 1
    report = build_report(plan, results, readings[0], readings[1], window,
                          config.sizing.coefficients.model_dump())
    print(render_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")
    flowing = report.received_fps is not None and report.received_fps > 0
    return 0 if report.joins_ok == report.joins_total and flowing else 1

