"""`visio status <stack>`: per node, what an SRE on a bastion looks at first, refreshed in place.

    visio status lab                 # refreshed every 5 s on a terminal, until Ctrl-C
    visio status lab --once          # one reading (the default when stdout is not a terminal)
    visio status lab --once --json   # for scripts and tests
    visio status interieur --outputs-file outputs.json

Per node: CPU over one second, load, the role's services, and rooms and participants (SFU), relay
allocations (TURN), Patroni role, state and lag (DB), Redis role and master link (Redis); then what is
wrong across the stack (no Patroni leader, no synchronous standby, not exactly one Redis master, a
node not read, a service down). Exit code 0 when nothing is wrong, 1 otherwise, 2 on bad usage.

It only reads: one SSH session per node running visio_infra/model/node_status.py's probe script, with
the stack's key and known hosts (visio_infra/hosts/ssh.py). Nothing leaves the nodes but figures: the
Redis password is read on the node into redis-cli's environment.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from visio_infra.hosts.ssh import run_script, write_ssh_config
from visio_infra.model.node_status import (
    NodeStatus,
    findings,
    parse_probe,
    probe_script,
    render_table,
    summary,
)

PROBE_TIMEOUT_SECONDS = 30
CLEAR = "\033[H\033[2J"


def read_node(
    host: Mapping[str, Any], role: str, connection: Mapping[str, Any], ssh_config: Path
) -> NodeStatus:
    """One node's status over SSH; an unreachable node or a failed probe becomes an error, not a crash."""
    try:
        rc, out, err = run_script(host, connection, ssh_config, probe_script(role, str(host["private_ip"])),
                                  timeout=PROBE_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        return NodeStatus(str(host["name"]), role, error=f"no answer within {PROBE_TIMEOUT_SECONDS} s")
    if rc == 255:
        reason = (err.strip().splitlines() or ["ssh failed"])[-1]
        return NodeStatus(str(host["name"]), role, error=reason[:200])
    return parse_probe(str(host["name"]), role, out)


def read_stack(inventory: Mapping[str, Any], workdir: Path) -> list[NodeStatus]:
    """Every node of the inventory, read in parallel, in inventory order."""
    connection = inventory.get("connection") or {}
    ssh_config = write_ssh_config(connection, workdir, "ssh_config")
    nodes = [(host, role) for role, hosts in (inventory.get("groups") or {}).items() for host in hosts or []]
    if not nodes:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(nodes))) as pool:
        return list(pool.map(lambda item: read_node(item[0], item[1], connection, ssh_config), nodes))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visio status", description=__doc__.split("\n\n")[0])
    parser.add_argument("stack", help="stack name (stacks/Pulumi.<stack>.yaml)")
    parser.add_argument("--once", action="store_true", help="one reading, then exit (default off a terminal)")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between readings (default 5)")
    parser.add_argument("--json", action="store_true", help="print the reading as JSON (implies --once)")
    parser.add_argument("--outputs-file", help="the stack's outputs (JSON) fetched beforehand")
    return parser


def _outputs(stack: str, outputs_file: str | None) -> dict[str, Any]:
    if outputs_file:
        return dict(json.loads(Path(outputs_file).read_text(encoding="utf-8")))
    from visio_infra.commands.verify import fetch_outputs

    return fetch_outputs(stack)


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.interval < 1:
        print("visio status: --interval must be at least 1 second", file=sys.stderr)
        return 2
    try:
        inventory = _outputs(args.stack, args.outputs_file)["inventory"]
    except Exception as exc:
        print(f"visio status: cannot read the outputs of stack {args.stack}: {exc}", file=sys.stderr)
        return 2
    once = args.once or args.json or not sys.stdout.isatty()
    with tempfile.TemporaryDirectory(prefix="visio-status-") as work:
        try:
            while True:
                statuses = read_stack(inventory, Path(work))
                taken = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
                if args.json:
                    print(json.dumps({"stack": args.stack, "taken_at": taken, **summary(statuses)}, indent=2))
                else:
                    print(("" if once else CLEAR) + render_table(args.stack, statuses, taken), flush=True)
                if once:
                    return 1 if findings(statuses) else 0
                time.sleep(args.interval)
        except KeyboardInterrupt:
            return 0
