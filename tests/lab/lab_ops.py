"""What the lab tests do the way an SRE does it: run a command showing its output, `pulumi up` the
lab with a stack config copy, run a command on a lab host over SSH, keep call traffic up during a
rollout. Shared by the upgrade tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

STACK = os.environ.get("VISIO_LAB_STACK", "lab")
"""The lab stack under test: `lab`, or a copy made with `scripts/lab.sh copy NAME INDEX` so two people
(or two checkouts) can each run a lab on one machine."""


def _slug(stack: str) -> str:
    import yaml

    config = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text(encoding="utf-8"))["config"]
    return str(config["visio:ministry"]["slug"])


SLUG = _slug(STACK)
"""The lab's ministry slug: machine names start with it (`lab-sfu-1`)."""


def run(command: list[str], timeout: float) -> tuple[int, str]:
    """Run a command, echo its output as it comes (the SRE's view), return (rc, output)."""
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    lines = []
    deadline = time.monotonic() + timeout
    for line in process.stdout:
        sys.stdout.write(line)
        lines.append(line)
        if time.monotonic() > deadline:
            process.kill()
            break
    return process.wait(), "".join(lines)


def visio(*args: str, timeout: float = 1800) -> tuple[int, str]:
    """The operator command (`visio ...`) with this checkout's code."""
    return run([sys.executable, "-m", "visio_infra.commands.cli", *args], timeout=timeout)


PULUMI_UP = (
    'source scripts/pulumi-env.sh >/dev/null && exec pulumi up --stack "$1" "${@:2}"'
    " --yes --skip-preview --diff=false"
)
"""`pulumi up` of stack $1 with this checkout's toolchain and state, extra arguments after it."""


def pulumi_up(stack: str, config_file: Path | None = None) -> tuple[int, str]:
    """`pulumi up` of `stack`, with `config_file` as its stack config when given (the shared stack
    file stays as is, so other users of the checkout never see a changed file)."""
    extra = ["--config-file", str(config_file)] if config_file else []
    rc, log = 1, ""
    for _attempt in range(40):  # another user's update holds the stack's lock: wait for it
        rc, log = run(["bash", "-c", PULUMI_UP, "pulumi-up", stack, *extra], timeout=3600)
        if rc == 0 or "currently locked" not in log:
            break
        time.sleep(15)
    return rc, log


def pulumi_up_interrupted(stack: str, config_file: Path, when: str, timeout: float = 900) -> tuple[int, str]:
    """`pulumi up` interrupted the hard way once a line containing `when` appears: two Ctrl-C's (the
    second makes the CLI stop at once, leaving in-flight operations pending), as an operator whose
    terminal died would. Returns (rc, output)."""
    process = subprocess.Popen(
        ["bash", "-c", PULUMI_UP, "pulumi-up", stack, "--config-file", str(config_file)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert process.stdout is not None
    lines, interrupted = [], False
    deadline = time.monotonic() + timeout
    for line in process.stdout:
        sys.stdout.write(line)
        lines.append(line)
        if not interrupted and when in line:
            interrupted = True
            process.send_signal(signal.SIGINT)
            time.sleep(0.5)
            process.send_signal(signal.SIGINT)
        if time.monotonic() > deadline:
            process.kill()
            break
    rc = process.wait()
    assert interrupted, f"`{when}` never appeared in the output of pulumi up"
    return rc, "".join(lines)


def pending_operations(stack: str) -> list[str]:
    """URNs of the operations the stack's state still records as in flight."""
    script = 'source scripts/pulumi-env.sh >/dev/null && exec pulumi stack export --stack "$1"'
    done = subprocess.run(
        ["bash", "-c", script, "export", stack], cwd=ROOT, capture_output=True, text=True, check=True
    )
    deployment = json.loads(done.stdout)["deployment"]
    return [op["resource"]["urn"] for op in deployment.get("pending_operations") or []]


def private_dir(prefix: str) -> Path:
    """A 0700 scratch directory (it holds outputs with secrets)."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(work, 0o700)
    return work


def ssh_command(inventory: dict[str, Any], host: dict[str, Any]) -> list[str]:
    """`ssh ... user@host` to a lab host with the inventory's key and known hosts (a command, or
    options such as a port forward, go after it)."""
    connection = inventory.get("connection", {})
    args = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new", "-o", "ConnectTimeout=10"]
    if connection.get("known_hosts_file"):
        args += ["-o", f"UserKnownHostsFile={connection['known_hosts_file']}"]
    if connection.get("ssh_key_file"):
        args += ["-i", connection["ssh_key_file"]]
    return [*args, f"{connection.get('user', 'root')}@{host.get('public_ip') or host['private_ip']}"]


def ssh(inventory: dict[str, Any], host: dict[str, Any], command: str, *, check: bool = False) -> str:
    """Run `command` on a lab host as the inventory's user; its stdout, stripped."""
    done = subprocess.run(
        [*ssh_command(inventory, host), command], capture_output=True, text=True, timeout=600, check=False
    )
    if check:
        assert done.returncode == 0, f"{host['name']}: `{command}` failed: {done.stderr[-800:]}"
    return done.stdout.strip()


@contextlib.contextmanager
def call_traffic(
    work: Path,
    outputs: dict[str, Any],
    *,
    meeting_seconds: float,
    extra: tuple[str, ...] = (),
    script: str = "upgrade_traffic.py",
    probe_interval: float = 3,
) -> Iterator[dict[str, Any]]:
    """Run tests/lab/upgrade_traffic.py (a meeting plus a probe joining every 3 s) for the body
    (or `script`, e.g. the drills' drill_traffic.py, which takes the same arguments).

    Yields the meeting once its media flows. When the body ends, the probe stops as soon as the
    meeting has left on its own; the report is then in `work / "traffic.json"`. The outputs (with
    secrets) are handed over in a 0600 file, removed afterwards.
    """
    outputs_file = work / "outputs.json"
    fd = os.open(outputs_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(outputs, handle)
    ready, stop = work / "ready", work / "stop"
    log = (work / "traffic.log").open("w", encoding="utf-8")
    process = subprocess.Popen(
        [
            sys.executable, str(ROOT / "tests" / "lab" / script),
            "--outputs-file", str(outputs_file), "--report", str(work / "traffic.json"),
            "--ready-file", str(ready), "--stop-file", str(stop),
            "--meeting-seconds", str(meeting_seconds), "--probe-interval", str(probe_interval), *extra,
        ],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(120):
            if ready.exists() or process.poll() is not None:
                break
            time.sleep(1)
        assert ready.exists(), (
            f"the meeting never had media flowing: {(work / 'traffic.log').read_text()[-1500:]}"
        )
        meeting = json.loads(ready.read_text())
        assert not meeting.get("error"), meeting.get("error")
        yield meeting
        stop.touch()
        process.wait(timeout=meeting_seconds + 300)
    finally:
        stop.touch()
        if process.poll() is None:
            process.kill()
        outputs_file.unlink(missing_ok=True)
        log.close()


def meeting_cuts(meeting: dict[str, Any]) -> list[dict[str, Any]]:
    """The connection losses of a call_traffic meeting between its first video frames and its own
    leave: what the change under test did to it. Losses while it was being set up are not the change's
    (the change starts once the ready file says media flows) and are reported apart (setup_events)."""
    during = [e for e in meeting["events"] if meeting["media_at"] <= e["t"] < meeting["left_at"]]
    return [e for e in during if e["event"] in ("disconnected", "reconnecting")]


def setup_events(meeting: dict[str, Any]) -> list[dict[str, Any]]:
    """A call_traffic meeting's connection events before its video flowed (printed, for the record)."""
    return [e for e in meeting["events"] if e["t"] < meeting["media_at"] and e["event"] != "state 1"]


def rollout_figures(log: str, role: str) -> list[dict[str, str]]:
    """The per-node `UPGRADE-FIGURE` lines `visio upgrade` printed for `role`, as dicts, in order."""
    found = []
    for line in log.splitlines():
        if line.startswith("UPGRADE-FIGURE") and f" role={role} " in line:
            found.append(dict(part.split("=", 1) for part in line.split()[1:] if "=" in part))
    return found


def power_cut(name: str) -> float:
    """Pull the plug of lab machine `name` (e.g. `lab-sfu-1`): SIGKILL its systemd-nspawn and every
    process running in it at once, so nothing shuts down, drains or says goodbye, as when a
    hypervisor dies. Returns the wall-clock time of the cut. `scripts/lab.sh up` brings it back."""
    from visio_infra.cloud.lab.host import pid_alive, processes_rooted_in
    from visio_infra.cloud.lab.machine import is_our_nspawn, recorded_pid
    from visio_infra.cloud.lab.plan import LabPaths

    paths = LabPaths(STACK)
    nspawn = recorded_pid(paths, name)
    pids = processes_rooted_in(paths.machine_dir(name))
    if is_our_nspawn(nspawn, STACK, name):
        assert nspawn is not None
        pids.append(nspawn)
    assert pids, f"{name}: no running machine to power off"
    cut = time.time()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = [pid for pid in pids if pid_alive(pid)]
    assert not alive, f"{name}: processes {alive} survived SIGKILL"
    return cut


def lab_up() -> tuple[int, str]:
    """`scripts/lab.sh up` of this lab (VISIO_LAB_STACK): recreates machines that are gone, converges."""
    return run(["env", f"VISIO_LAB_STACK={STACK}", "bash", "scripts/lab.sh", "up"], timeout=2400)


def drill_figures(name: str, figures: dict[str, Any], record_property: Any) -> None:
    """Print `DRILL-<name> key=value ...` (the bench greps stdout) and record each figure in JUnit."""
    print(f"DRILL-{name} stack={STACK} " + " ".join(f"{k}={v}" for k, v in figures.items()))
    for key, value in figures.items():
        record_property(f"drill_{name.lower()}_{key}", value)


def bring_back(drill: str, victim: str, record_property: Any, *, check: bool) -> None:
    """After a drill's power cut, whatever the drill found: the lost machine comes back the documented
    way (`scripts/lab.sh up`) and `visio verify` runs, so a failed drill never leaves the lab a node
    short for the tests after it. `check`: fail on them (False while another failure is on its way)."""
    started = time.monotonic()
    rc, _ = lab_up()
    verify_rc, verify_output = visio("verify", STACK) if rc == 0 else (None, "")
    figures = {"victim": victim, "back_with_lab_up_s": round(time.monotonic() - started, 1),
               "verify_after": verify_rc == 0}
    drill_figures(drill, figures, record_property)
    if check:
        assert rc == 0, "scripts/lab.sh up did not bring the lab back (see its output above)"
        assert verify_rc == 0, (
            f"visio verify {STACK} failed after {victim} came back: {failed_checks(verify_output)}"
        )


def failed_checks(pytest_output: str) -> str:
    """The `FAILED ...` lines of a pytest run's short summary, joined: what the assertion message of a
    lab test must carry, since CI keeps only the head and tail of a long log."""
    failed = [line.strip() for line in pytest_output.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    return "; ".join(failed)[-3000:] or "no FAILED line (see the output above)"
