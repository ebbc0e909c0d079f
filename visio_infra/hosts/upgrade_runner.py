"""Runs the upgrade playbooks for one stack, one node at a time, and reads what happened
(progress, per-node facts, drain timings) from ansible-runner's events. The same code
serves `visio upgrade` and `pulumi up`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from visio_infra.model.config.stack import StackConfig
from visio_infra.model.rollout import NodeState, Step

PLAYBOOK_OF_ROLE = {"sfu": "upgrade-sfu.yml", "turn": "upgrade-turn.yml", "db": "upgrade-db.yml"}
FACTS_TASK = "Report the node's upgrade facts"
DRAIN_END_PREFIXES = ("Wait for the node to drain", "Wait until no client", "Wait for the forced exit")
DRAIN_START_PREFIXES = ("Send SIG", "Refuse new TURN clients", *DRAIN_END_PREFIXES[:2])
"""Task names that open / close a node's drain in the upgrade playbooks (resumed runs skip the signal)."""


class UpgradeError(RuntimeError):
    """The rollout could not start (no state, bad config) or stopped at a failed gate."""


@dataclass
class ConvergeInputs:
    """What a converge needs besides the stack config: hosts, secrets, certificates."""

    inventory: dict[str, Any]
    secrets: dict[str, str]
    certificates: dict[str, Any] | None


# --------------------------------------------------------------------------- talking to ansible


class EventTap:
    """ansible-runner event handler: prints progress, keeps per-host facts and task timings."""

    def __init__(self, printer: Callable[[Mapping[str, Any]], bool] | None) -> None:
        self.printer = printer
        self.facts: dict[str, dict[str, Any]] = {}
        self.failures: list[str] = []
        """`host: task: message` per failed task (read by ansible_run.converge as the run's failures)."""
        self.task_started: dict[str, float] = {}
        self.first_start: dict[str, float] = {}
        self.last_end: dict[str, float] = {}

    def __call__(self, event: Mapping[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        task = str(data.get("task", ""))
        now = time.monotonic()
        if kind == "playbook_on_task_start":
            self.task_started[task] = now
            self.first_start.setdefault(task, now)
        elif kind == "runner_on_unreachable":
            self.failures.append(f"{data.get('host')}: {task}: unreachable")
        elif kind in ("runner_on_ok", "runner_on_failed", "runner_on_skipped"):
            if kind != "runner_on_skipped":
                self.last_end[task] = now
            if kind == "runner_on_failed" and not data.get("ignore_errors"):
                message = str((data.get("res") or {}).get("msg") or "").strip()
                self.failures.append(f"{data.get('host')}: {task}: {' '.join(message.split())[:400]}")
            if kind == "runner_on_ok" and task == FACTS_TASK:
                node = (data.get("res") or {}).get("visio_upgrade_node") or {}
                self.facts[str(data.get("host"))] = dict(node)
        if self.printer is not None:
            return bool(self.printer(event))
        return True

    def span(self, start_prefixes: Sequence[str], end_prefixes: Sequence[str]) -> float | None:
        starts = [t for name, t in self.first_start.items() if name.startswith(tuple(start_prefixes))]
        ends = [t for name, t in self.last_end.items() if name.startswith(tuple(end_prefixes))]
        if not starts or not ends:
            return None
        return round(max(ends) - min(starts), 1)


def _quiet_printer(event: Mapping[str, Any]) -> bool:
    """Only failures, for the read-only facts run."""
    if event.get("event") in ("runner_on_failed", "runner_on_unreachable"):
        data = event.get("event_data") or {}
        if not data.get("ignore_errors"):
            res = data.get("res") or {}
            reason = str(res.get("msg", ""))[:300]
            print(f"  FAILED {data.get('host')}: {data.get('task')}: {reason}", flush=True)
    return True


def _text(value: Any) -> str | None:
    text = None if value is None else str(value).strip()
    return None if text in (None, "", "None", "none") else text


def _flag(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("true", "yes", "1")


def node_states(inventory: Mapping[str, Any], facts: Mapping[str, Mapping[str, Any]]) -> list[NodeState]:
    """NodeState per SFU/TURN/DB host; a host that reported nothing is unknown and not serving."""
    nodes = []
    for role in ("sfu", "turn", "db"):
        for host in inventory.get("groups", {}).get(role) or []:
            fact = facts.get(host["name"], {})
            try:
                load = int(float(fact.get("load") or 0))
            except (TypeError, ValueError):
                load = 0
            nodes.append(NodeState(
                name=host["name"], role=role, version=_text(fact.get("version")),
                serving=_flag(fact.get("serving")), load=load, primary=_flag(fact.get("primary")),
                candidate=_text(fact.get("candidate")),
            ))
    return nodes


def db_candidate(nodes: Sequence[NodeState]) -> str | None:
    """The PostgreSQL version to converge on: the candidate the mirror offers (same on every node)."""
    candidates = {n.candidate for n in nodes if n.role == "db" and n.candidate}
    return max(candidates) if len(candidates) >= 1 else None


@dataclass
class Runner:
    """Runs the upgrade playbooks for one stack (the same code for `visio upgrade` and `pulumi up`)."""

    stack: str
    config: StackConfig
    inputs: ConvergeInputs
    deadline: int
    force: bool = False
    restart: bool = False
    """Rolling restart: restart each node even when its package did not change (DB playbook)."""
    verbose: bool = True
    timings: list[dict[str, Any]] = field(default_factory=list)

    def _converge(self, playbook: str, tap: EventTap, *, limit: str | None = None,
                  extra_vars: Mapping[str, Any] | None = None) -> Any:
        from visio_infra.hosts import ansible_run

        return ansible_run.converge(
            self.config, self.inputs.inventory, self.inputs.secrets, self.inputs.certificates,
            stack=self.stack, playbook=playbook, limit=limit, extra_vars=extra_vars,
            progress=tap, raise_on_failure=False,
        )

    def gather(self) -> list[NodeState]:
        tap = EventTap(_quiet_printer)
        result = self._converge("upgrade-facts.yml", tap)
        if not result.succeeded:
            unreachable = [h for h, s in result.hosts.items() if s.unreachable]
            if unreachable:
                raise UpgradeError(f"cannot read the state of {', '.join(sorted(unreachable))} (unreachable)")
        return node_states(self.inputs.inventory, tap.facts)

    def run_step(self, step: Step) -> tuple[bool, str, float | None]:
        """One node through its playbook and gates. Returns (passed, message, drain seconds)."""
        from visio_infra.hosts.ansible_run import ProgressPrinter

        tap = EventTap(ProgressPrinter() if self.verbose else _quiet_printer)
        extra = {
            "visio_upgrade_deadline": self.deadline,
            "visio_upgrade_force": self.force,
            "visio_upgrade_target": step.to_version,
            "visio_upgrade_restart": self.restart,
        }
        result = self._converge(PLAYBOOK_OF_ROLE[step.role], tap, limit=step.node, extra_vars=extra)
        drain = tap.span(DRAIN_START_PREFIXES, DRAIN_END_PREFIXES)
        if not result.succeeded:
            failures = tap.failures or result.failures
            reason = failures[0].split(": ", 2)[-1] if failures else f"ansible rc={result.rc}"
            return False, reason, drain
        if step.role == "turn":
            passed, detail = self.turn_allocation(step.node)
            if not passed:
                return False, f"fresh TURN allocation failed: {detail}", drain
        return True, "ok", drain

    def turn_allocation(self, node: str) -> tuple[bool, str]:
        """The TURN gate: a fresh allocation with shared-secret credentials, from this machine."""
        from visio_infra.probes.turn_probe import check_server

        host = next(h for h in self.inputs.inventory["groups"]["turn"] if h["name"] == node)
        address = str(host.get("public_ip") or host["private_ip"])
        secret = self.inputs.secrets["turn_shared_secret"]
        last = ""
        for _attempt in range(10):
            report = check_server(address, 3478, "udp", secret, allowed_peers=[], denied_peers=[])
            first = report.checks[0] if report.checks else None
            if first is not None and first.passed:
                return True, first.detail
            last = first.detail if first else "no answer"
            time.sleep(2)
        return False, last
