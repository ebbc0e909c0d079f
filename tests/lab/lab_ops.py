"""What the lab tests do the way an SRE does it: run a command showing its output, `pulumi up` the
lab with a stack config copy, run a command on a lab host over SSH. Shared by the upgrade tests."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


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
    return run([sys.executable, "-m", "visio_infra.cli", *args], timeout=timeout)


def pulumi_up(stack: str, config_file: Path | None = None) -> tuple[int, str]:
    """`pulumi up` of `stack`, with `config_file` as its stack config when given (the shared stack
    file stays as is, so other users of the checkout never see a changed file)."""
    script = 'source scripts/pulumi-env.sh >/dev/null && exec pulumi up --stack "$1" "${@:2}"'
    script += " --yes --skip-preview --diff=false"
    extra = ["--config-file", str(config_file)] if config_file else []
    rc, log = 1, ""
    for _attempt in range(40):  # another user's update holds the stack's lock: wait for it
        rc, log = run(["bash", "-c", script, "pulumi-up", stack, *extra], timeout=3600)
        if rc == 0 or "currently locked" not in log:
            break
        time.sleep(15)
    return rc, log


def private_dir(prefix: str) -> Path:
    """A 0700 scratch directory (it holds outputs with secrets)."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(work, 0o700)
    return work


def ssh(inventory: dict[str, Any], host: dict[str, Any], command: str, *, check: bool = False) -> str:
    """Run `command` on a lab host as the inventory's user; its stdout, stripped."""
    connection = inventory.get("connection", {})
    args = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new", "-o", "ConnectTimeout=10"]
    if connection.get("known_hosts_file"):
        args += ["-o", f"UserKnownHostsFile={connection['known_hosts_file']}"]
    if connection.get("ssh_key_file"):
        args += ["-i", connection["ssh_key_file"]]
    target = f"{connection.get('user', 'root')}@{host.get('public_ip') or host['private_ip']}"
    done = subprocess.run([*args, target, command], capture_output=True, text=True, timeout=600, check=False)
    if check:
        assert done.returncode == 0, f"{host['name']}: `{command}` failed: {done.stderr[-800:]}"
    return done.stdout.strip()
