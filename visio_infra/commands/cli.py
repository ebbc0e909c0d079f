"""`visio`: the operator command. Each subcommand lives in its own module; this only dispatches.

    visio plan <stack>        sizing table, reasoning and monthly cost vs. the licences it replaces
                              (--check-cloud: and whether the stack's OpenStack cloud can hold it)
    visio configure <stack>   re-apply Ansible configuration from the stack's outputs (no infra change)
    visio verify <stack>      run the verification suite (testinfra + a real call) against a stack
    visio upgrade <stack>     show the rolling-upgrade plan, then roll it out node by node
    visio summary <stack>     endpoints, nodes, versions and next steps of a deployed stack
    visio status <stack>      per node: CPU, services, rooms, TURN allocations, replication (refreshed)
    visio loadtest <stack>    synthetic participants; measured SFU CPU and bandwidth vs. the sizing model
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "plan": ("visio_infra.commands.plan", "sizing table and cost for a stack"),
    "configure": ("visio_infra.commands.configure", "re-apply host configuration from the stack outputs"),
    "verify": ("visio_infra.commands.verify", "verify a deployed stack (testinfra suites and a real call)"),
    "upgrade": (
        "visio_infra.commands.upgrade",
        "rolling upgrade of SFU, TURN and DB nodes without cutting calls",
    ),
    "summary": (
        "visio_infra.commands.summary",
        "endpoints, nodes, versions and next steps of a deployed stack",
    ),
    "status": (
        "visio_infra.commands.status",
        "per node: CPU, services, rooms, TURN allocations, replication (refreshed)",
    ),
    "loadtest": (
        "visio_infra.commands.loadtest",
        "synthetic participants; measured SFU CPU and bandwidth vs. the sizing model",
    ),
}


def usage() -> str:
    lines = ["usage: visio <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"visio: unknown command '{name}'\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest))


if __name__ == "__main__":
    sys.exit(main())
