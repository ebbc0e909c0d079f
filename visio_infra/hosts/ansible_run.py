"""Run the site playbook through ansible-runner, for `pulumi up` and for `visio configure`.

Secrets never reach the run's artifacts: non-secret variables go to inventory group_vars (and
host_vars: a node's own certificate) in a private temporary directory, secrets to a 0600 vars file
in another temporary directory passed as `-e @file` (only its path is recorded), both removed
after the run. Artifacts (events, stdout, stats) are kept under
`<repo>/artifacts/<stack>/<timestamp>/` and scanned for secret values; any hit is scrubbed and
reported in `RunResult.leaked_secrets` (the tests require 0).

Every run uses Mitogen's `mitogen_linear` strategy when the pinned `ansible_mitogen` package is
importable (a no-change converge of the lab takes about a third of the linear strategy's time: one
persistent Python interpreter per host instead of one SSH round trip and module upload per task);
`choose_strategy` decides, and says in one line why a run falls back to Ansible's `linear`.
ansible-core 2.19 warns (in the run's stdout artifact) that strategy plugins outside ansible.builtin
are deprecated, with no removal version: the day a release drops them, `linear` is the way back.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, TextIO

import yaml

from visio_infra.hosts import ansible_vars
from visio_infra.hosts.inventory import ansible_inventory
from visio_infra.model.apt_sources import AptSourcesError, with_node_mirrors
from visio_infra.model.config.stack import StackConfig

ROOT = Path(__file__).resolve().parent.parent.parent
PLAYBOOKS = ROOT / "playbooks"
ARTIFACTS = ROOT / "artifacts"

STRATEGY_ENV = "VISIO_ANSIBLE_STRATEGY"
"""Set to `linear` to run without Mitogen (e.g. to rule it out when a run misbehaves)."""
MITOGEN = "mitogen_linear"
LINEAR = "linear"
STRATEGIES = (MITOGEN, LINEAR)
"""Both run the tasks in the same order, host by host in lock step; only the transport differs."""
MITOGEN_CONNECT_TIMEOUT = 30
"""Seconds Mitogen may take to reach a host. It reads Ansible's `timeout` (default 10 s) as the
deadline of its whole bootstrap (SSH, a Python interpreter, its own core module), not only of SSH's
handshake as the linear strategy does: on a loaded 2-core machine, the lab's six bootstraps at once
took longer than 10 s ("Connection timed out" on five hosts that answered SSH at once)."""


class StrategyError(ansible_vars.AnsibleVarsError):
    """`VISIO_ANSIBLE_STRATEGY` names a strategy this project does not run (bad input, before any host
    is touched: the callers that report AnsibleVarsError report this too)."""


@dataclass(frozen=True)
class Strategy:
    """The Ansible strategy of a run, where its plugin lives, and why it is not the default."""

    name: str
    plugin_dir: str | None = None
    """`ANSIBLE_STRATEGY_PLUGINS` for Mitogen (inside the installed `ansible_mitogen` package)."""
    note: str | None = None
    """One line saying why the run does not use Mitogen (None when it does)."""


def choose_strategy(
    requested: str | None, mitogen_plugin_dir: str | None, mitogen_problem: str | None
) -> Strategy:
    """Pick the strategy of a run (pure).

    `requested` is `VISIO_ANSIBLE_STRATEGY` or the caller's choice (empty: the default, Mitogen);
    `mitogen_plugin_dir` is where `ansible_mitogen`'s strategy plugins were found, `mitogen_problem`
    why they were not. Raises StrategyError on a strategy name this project does not run.
    """
    wanted = (requested or "").strip() or MITOGEN
    if wanted not in STRATEGIES:
        raise StrategyError(
            f"{STRATEGY_ENV}={requested!r}: unknown strategy; use {MITOGEN} (the default) or {LINEAR}"
        )
    if wanted == LINEAR:
        return Strategy(
            LINEAR, note=f"ansible: {LINEAR} strategy requested ({STRATEGY_ENV}), running without Mitogen"
        )
    if mitogen_plugin_dir is None:
        reason = mitogen_problem or "ansible_mitogen is not installed"
        return Strategy(
            LINEAR,
            note=f"ansible: Mitogen unavailable ({reason}); running the linear strategy "
            "(scripts/setup.sh installs the pinned mitogen)",
        )
    return Strategy(MITOGEN, plugin_dir=mitogen_plugin_dir)


def find_mitogen_strategy_plugins() -> tuple[str | None, str | None]:
    """(strategy plugin directory of the installed ansible_mitogen, None) or (None, why not).

    Located through the import system of the Python that runs ansible-playbook (this one), never a
    hard-coded site-packages path."""
    try:
        spec = importlib.util.find_spec("ansible_mitogen")
    except (ImportError, ValueError) as exc:
        return None, f"ansible_mitogen cannot be imported: {exc}"
    if spec is None or not spec.submodule_search_locations:
        return None, f"ansible_mitogen is not importable from {sys.executable}"
    plugin_dir = Path(next(iter(spec.submodule_search_locations))) / "plugins" / "strategy"
    if not (plugin_dir / f"{MITOGEN}.py").is_file():
        return None, f"{plugin_dir} has no {MITOGEN}.py"
    return str(plugin_dir), None


def strategy_for_run(requested: str | None = None) -> Strategy:
    """The strategy of a run: `requested`, else `VISIO_ANSIBLE_STRATEGY`, else Mitogen if installed."""
    plugin_dir, problem = find_mitogen_strategy_plugins()
    return choose_strategy(requested or os.environ.get(STRATEGY_ENV), plugin_dir, problem)


def strategy_env(strategy: Strategy) -> dict[str, str]:
    """Environment of ansible-playbook for `strategy` (pure)."""
    env = {"ANSIBLE_STRATEGY": strategy.name}
    if strategy.plugin_dir:
        env["ANSIBLE_STRATEGY_PLUGINS"] = strategy.plugin_dir
        env["ANSIBLE_TIMEOUT"] = str(MITOGEN_CONNECT_TIMEOUT)
    return env


@dataclass(frozen=True)
class HostStats:
    """Counters of one host at the end of a run (ansible's PLAY RECAP)."""

    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0


@dataclass
class RunResult:
    """What a converge did: per-host stats, return code, where its artifacts are."""

    rc: int
    status: str
    hosts: dict[str, HostStats]
    artifact_dir: Path
    duration_seconds: float
    leaked_secrets: int = 0
    failures: list[str] = field(default_factory=list)
    strategy: str = LINEAR

    @property
    def succeeded(self) -> bool:
        return self.rc == 0 and not any(s.failed or s.unreachable for s in self.hosts.values())

    @property
    def changed(self) -> int:
        return sum(s.changed for s in self.hosts.values())

    def summary(self) -> str:
        lines = [f"{'host':<24} {'ok':>4} {'changed':>8} {'failed':>7} {'unreachable':>12} {'skipped':>8}"]
        for name in sorted(self.hosts):
            s = self.hosts[name]
            lines.append(
                f"{name:<24} {s.ok:>4} {s.changed:>8} {s.failed:>7} {s.unreachable:>12} {s.skipped:>8}"
            )
        verdict = "succeeded" if self.succeeded else f"FAILED (rc={self.rc}, {self.status})"
        lines.append(
            f"ansible ({self.strategy}) {verdict} in {self.duration_seconds:.0f} s, "
            f"{self.changed} change(s); artifacts: {self.artifact_dir}"
        )
        return "\n".join(lines)


class AnsibleRunError(RuntimeError):
    """A converge failed on at least one host. `result` holds the details."""

    def __init__(self, result: RunResult):
        self.result = result
        detail = "\n".join(f"  - {f}" for f in result.failures[:20])
        super().__init__(f"host configuration failed\n{result.summary()}\n{detail}".rstrip())


def default_livekit_binary(version: str) -> Path:
    """Where scripts/toolchain.sh puts the pinned livekit-server build."""
    cache = Path(os.environ.get("VISIO_TOOLCHAIN_DIR", Path.home() / ".cache" / "visio-toolchain"))
    return cache / f"livekit-{version}" / "bin" / "livekit-server"


class ProgressPrinter:
    """One compact line per task result per host, from runner events (no task arguments, no results)."""

    MARKS: ClassVar[dict[str, str]] = {
        "ok": "ok", "changed": "changed", "failed": "FAILED", "unreachable": "UNREACHABLE",
    }

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout
        self.failures: list[str] = []

    def _line(self, mark: str, host: str, task: str, extra: str = "") -> None:
        print(f"  {mark:<11} {host:<22} {task}{extra}", file=self.stream, flush=True)

    def __call__(self, event: Mapping[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        host = str(data.get("host", ""))
        task = str(data.get("task", ""))
        role = data.get("role")
        label = f"{role} : {task}" if role else task
        if kind == "playbook_on_play_start":
            print(f"PLAY {data.get('play', '')}", file=self.stream, flush=True)
        elif kind == "runner_on_ok":
            res = data.get("res") or {}
            if "censored" in res:  # no_log: ansible hides even whether it changed (see the recap)
                self._line("done", host, label, " (no_log)")
            else:
                self._line(self.MARKS["changed" if res.get("changed") else "ok"], host, label)
        elif kind in ("runner_on_failed", "runner_on_unreachable"):
            if kind == "runner_on_failed" and data.get("ignore_errors"):
                return True
            res = data.get("res") or {}
            message = str(res.get("msg") or res.get("stderr") or "").strip().splitlines()
            reason = message[0][:300] if message else ""
            mark = self.MARKS["failed" if kind == "runner_on_failed" else "unreachable"]
            self._line(mark, host, label, f" -- {reason}" if reason else "")
            self.failures.append(f"{host}: {label}: {reason}")
        return True


SENSITIVE_ENV = re.compile(
    r"PASS|SECRET|TOKEN|CREDENTIAL|PRIVATE|_KEY$|^OS_|^AWS_ACCESS|^AWS_SECRET|^AWS_SESSION"
)
"""Environment variables that may hold credentials (Pulumi passphrase, OpenStack, S3): ansible-runner
records the whole environment in the artifacts, and ansible-playbook does not need them."""


@contextlib.contextmanager
def _without_sensitive_env() -> Any:
    saved = {k: v for k, v in os.environ.items() if SENSITIVE_ENV.search(k)}
    for key in saved:
        del os.environ[key]
    try:
        yield
    finally:
        os.environ.update(saved)


def _write_yaml(path: Path, data: Any, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        yaml.safe_dump(data, handle, default_flow_style=False, sort_keys=True)


def scrub_artifacts(artifact_dir: Path, secrets: Sequence[str]) -> int:
    """Replace any secret value found in the artifacts; return how many files held one."""
    needles = [s for s in secrets if s and len(s) >= 8]
    hits = 0
    if not needles or not artifact_dir.exists():
        return 0
    for path in artifact_dir.rglob("*"):
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8", errors="surrogateescape")
        except OSError:
            continue
        if any(n in text for n in needles):
            hits += 1
            for needle in needles:
                text = text.replace(needle, "********")
            path.write_text(text, encoding="utf-8", errors="surrogateescape")
    return hits


def _stats(raw: Mapping[str, Any] | None) -> dict[str, HostStats]:
    raw = raw or {}
    names: set[str] = set()
    for key in ("ok", "changed", "failures", "dark", "skipped", "processed"):
        names |= set((raw.get(key) or {}).keys())
    return {
        name: HostStats(
            ok=int((raw.get("ok") or {}).get(name, 0)),
            changed=int((raw.get("changed") or {}).get(name, 0)),
            failed=int((raw.get("failures") or {}).get(name, 0)),
            unreachable=int((raw.get("dark") or {}).get(name, 0)),
            skipped=int((raw.get("skipped") or {}).get(name, 0)),
        )
        for name in names
    }


def converge(
    config: StackConfig,
    inventory: Mapping[str, Any],
    secrets: Mapping[str, str],
    certificates: Mapping[str, Any] | None,
    *,
    stack: str | None = None,
    limit: str | None = None,
    tags: Sequence[str] | str | None = None,
    check: bool = False,
    diff: bool = False,
    playbook: str = "site.yml",
    livekit_binary: str | os.PathLike[str] | None = None,
    livekit_binary_url: str | None = None,
    livekit_binary_sha256: str | None = None,
    backup: Mapping[str, Any] | None = None,
    extra_vars: Mapping[str, Any] | None = None,
    artifacts_root: Path | None = None,
    progress: Callable[[Mapping[str, Any]], bool] | None = None,
    raise_on_failure: bool = True,
    strategy: str | None = None,
) -> RunResult:
    """Converge the hosts of `inventory` (the stack's `inventory` output) with the site playbook.

    `strategy` (`mitogen_linear` or `linear`) overrides `VISIO_ANSIBLE_STRATEGY`; see `choose_strategy`.
    Raises AnsibleVarsError on inconsistent input or an unknown strategy (before touching any host)
    and AnsibleRunError when a host fails (unless `raise_on_failure` is False).
    """
    import ansible_runner  # heavy import, only when a run really happens

    chosen = strategy_for_run(strategy)
    if chosen.note:
        print(chosen.note, flush=True)

    if livekit_binary is None and livekit_binary_url is None and inventory.get("groups", {}).get("sfu"):
        livekit_binary = default_livekit_binary(config.versions.livekit)
    try:
        config = with_node_mirrors(config)  # the lab names none: its host's apt sources
    except AptSourcesError as exc:
        raise ansible_vars.AnsibleVarsError(str(exc)) from exc
    per_group = ansible_vars.group_vars(
        config, inventory, certificates,
        livekit_binary=str(livekit_binary) if livekit_binary else None,
        livekit_binary_url=livekit_binary_url, livekit_binary_sha256=livekit_binary_sha256, backup=backup,
    )
    secret_map = ansible_vars.secret_vars(secrets, certificates)
    if extra_vars:
        clash = set(extra_vars) & set(secret_map)
        if clash:
            raise ansible_vars.AnsibleVarsError(f"extra_vars may not override secrets: {sorted(clash)}")

    stack = stack or config.ministry.slug
    ident = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    artifacts_parent = (artifacts_root or ARTIFACTS) / stack
    artifacts_parent.mkdir(parents=True, exist_ok=True)

    private = Path(tempfile.mkdtemp(prefix="visio-ansible-"))
    secret_dir = Path(tempfile.mkdtemp(prefix="visio-ansible-secrets-"))
    started = time.monotonic()
    printer = progress or ProgressPrinter()
    try:
        inv_dir = private / "inventory"
        _write_yaml(inv_dir / "hosts.yml", ansible_inventory(inventory))
        for group, values in per_group.items():
            _write_yaml(inv_dir / "group_vars" / f"{group}.yml", values)
        for host, values in ansible_vars.host_vars(inventory, certificates).items():
            _write_yaml(inv_dir / "host_vars" / f"{host}.yml", values)
        secrets_file = secret_dir / "secrets.yml"
        _write_yaml(secrets_file, secret_map)
        cmdline = [f"-e @{secrets_file}"]
        if extra_vars:
            extra_file = private / "extra_vars.yml"
            _write_yaml(extra_file, dict(extra_vars))
            cmdline.append(f"-e @{extra_file}")
        if check:
            cmdline.append("--check")
        if diff:
            cmdline.append("--diff")
        tag_list = [tags] if isinstance(tags, str) else list(tags or [])
        bin_dir = Path(sys.executable).parent
        with _without_sensitive_env():
            runner = ansible_runner.run(
                private_data_dir=str(private),
                artifact_dir=str(artifacts_parent),
                ident=ident,
                project_dir=str(PLAYBOOKS),
                playbook=str(PLAYBOOKS / playbook),
                inventory=str(inv_dir),
                limit=limit,
                tags=",".join(tag_list) or None,
                cmdline=" ".join(cmdline),
                envvars={
                    "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                    "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
                    "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
                    "ANSIBLE_FILTER_PLUGINS": str(PLAYBOOKS / "filter_plugins"),
                    "ANSIBLE_NOCOLOR": "1",
                    "ANSIBLE_RETRY_FILES_ENABLED": "0",
                    **strategy_env(chosen),
                },
                event_handler=printer,
                suppress_ansible_output=True,
                quiet=True,
            )
        result = RunResult(
            rc=int(runner.rc if runner.rc is not None else 1),
            status=str(runner.status),
            hosts=_stats(runner.stats),
            artifact_dir=artifacts_parent / ident,
            duration_seconds=time.monotonic() - started,
            failures=list(getattr(printer, "failures", [])),
            strategy=chosen.name,
        )
        if result.rc != 0 and not result.hosts and chosen.name == MITOGEN:
            result.failures.append(
                f"ansible-playbook stopped before any task under {MITOGEN} (its output: "
                f"{result.artifact_dir / 'stdout'}); {STRATEGY_ENV}={LINEAR} rules Mitogen out"
            )
    finally:
        shutil.rmtree(secret_dir, ignore_errors=True)
        shutil.rmtree(private, ignore_errors=True)
    result.leaked_secrets = scrub_artifacts(result.artifact_dir, ansible_vars.secret_values(secret_map))
    if result.leaked_secrets:
        result.failures.append(
            f"{result.leaked_secrets} artifact file(s) contained a secret (scrubbed); a task lacks no_log"
        )
    if raise_on_failure and not result.succeeded:
        raise AnsibleRunError(result)
    return result
