"""SSH into lab machines: the stack's key pair, per-machine host keys, known_hosts, readiness.

The private key is generated on the host under /var/lib/visio-lab/<stack>/ssh (0600) and only its
path and public half ever reach Pulumi state. Host keys are generated per machine on the host, so
the lab's known_hosts is exact and Ansible can check host keys strictly.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
import pulumi.dynamic

from visio_infra.cloud.lab.host import LabError, run
from visio_infra.cloud.lab.plan import LAB_ROOT, LabPaths


def ensure_key_pair(paths: LabPaths) -> str:
    """Create the lab key pair if missing (adopting an existing one); return the public key line."""
    paths.ssh.mkdir(parents=True, exist_ok=True)
    os.chmod(paths.ssh, 0o700)
    key = paths.private_key
    if not key.exists():
        run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"visio-lab-{paths.stack}", "-f", str(key)],
            "generating the lab SSH key pair",
        )
    os.chmod(key, 0o600)
    public = key.with_suffix(".pub")
    if not public.exists():
        public.write_text(
            run(["ssh-keygen", "-y", "-f", str(key)], "deriving the lab public key").stdout, encoding="ascii"
        )
    paths.known_hosts.touch(mode=0o600, exist_ok=True)
    return public.read_text(encoding="ascii").strip()


def generate_host_keys(root: Path) -> str:
    """Write fresh host keys into a machine tree; return its ed25519 public key ("type base64")."""
    (root / "etc/ssh").mkdir(parents=True, exist_ok=True)
    for old in (root / "etc/ssh").glob("ssh_host_*"):
        old.unlink()
    for kind in ("ed25519", "ecdsa", "rsa"):
        run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                kind,
                "-N",
                "",
                "-C",
                "",
                "-f",
                str(root / f"etc/ssh/ssh_host_{kind}_key"),
            ],
            f"generating the {kind} host key of {root.name}",
        )
    parts = (root / "etc/ssh/ssh_host_ed25519_key.pub").read_text(encoding="ascii").split()
    return f"{parts[0]} {parts[1]}"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def set_known_host(paths: LabPaths, address: str, host_key: str | None) -> None:
    """Replace (or with host_key=None remove) the known_hosts line of `address`. Safe in parallel."""
    if not paths.ssh.exists():
        return
    with _locked(paths.known_hosts):
        lines = []
        if paths.known_hosts.exists():
            lines = [
                line
                for line in paths.known_hosts.read_text(encoding="ascii").splitlines()
                if line.split(" ", 1)[0] != address
            ]
        if host_key:
            lines.append(f"{address} {host_key}")
        paths.known_hosts.write_text("".join(f"{line}\n" for line in lines), encoding="ascii")


def ssh_command(paths: LabPaths, address: str, *remote: str, timeout: int = 5) -> list[str]:
    return [
        "ssh",
        "-i",
        str(paths.private_key),
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={paths.known_hosts}",
        "-o",
        f"ConnectTimeout={timeout}",
        "-o",
        "LogLevel=ERROR",
        f"root@{address}",
        *remote,
    ]


def ssh_answers(paths: LabPaths, address: str, timeout: int = 5) -> bool:
    try:
        result = subprocess.run(
            ssh_command(paths, address, "true", timeout=timeout),
            capture_output=True,
            timeout=timeout + 5,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


def wait_for_ssh(paths: LabPaths, address: str, timeout: float, alive: Any = None) -> float:
    """Wait until root can log in with the lab key and boot has finished; return the seconds waited.

    `alive()` (optional) is polled so a machine that died during boot fails fast, not at the timeout.
    """
    started = time.monotonic()
    while True:
        if ssh_answers(paths, address):
            # Let systemd finish booting so Ansible does not race first-boot units.
            subprocess.run(
                ssh_command(paths, address, "systemctl", "is-system-running", "--wait", timeout=10),
                capture_output=True,
                timeout=120,
                check=False,
            )
            return time.monotonic() - started
        if alive is not None and not alive():
            raise LabError(f"the machine at {address} stopped while booting")
        if time.monotonic() - started > timeout:
            raise LabError(f"no SSH answer from {address} after {timeout:.0f} s")
        time.sleep(0.5)


class KeyPairProvider(pulumi.dynamic.ResourceProvider):
    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        paths = LabPaths(props["stack"], Path(props["root"]))
        public = ensure_key_pair(paths)
        return pulumi.dynamic.CreateResult(id_=f"{paths.stack}-ssh", outs=_outs(props, paths, public))

    def read(self, id_: str, props: dict[str, Any]) -> pulumi.dynamic.ReadResult:
        paths = LabPaths(props["stack"], Path(props["root"]))
        public_file = paths.private_key.with_suffix(".pub")
        present = (
            paths.private_key.exists()
            and public_file.exists()
            and public_file.read_text(encoding="ascii").strip() == props.get("public_key")
        )
        return pulumi.dynamic.ReadResult(id_=id_, outs={**props, "present": present})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        replaces = [key for key in ("stack", "root") if olds.get(key) != news.get(key)]
        if olds.get("present") is False:
            replaces.append("present")
        return pulumi.dynamic.DiffResult(
            changes=bool(replaces), replaces=replaces, delete_before_replace=True
        )

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        paths = LabPaths(props["stack"], Path(props["root"]))
        for path in (
            paths.private_key,
            paths.private_key.with_suffix(".pub"),
            paths.known_hosts,
            paths.known_hosts.with_suffix(".lock"),
        ):
            path.unlink(missing_ok=True)
        prune(paths)


def _outs(props: dict[str, Any], paths: LabPaths, public: str) -> dict[str, Any]:
    return {
        **props,
        "public_key": public,
        "private_key_file": str(paths.private_key),
        "known_hosts_file": str(paths.known_hosts),
        "present": True,
    }


def prune(paths: LabPaths) -> None:
    """Remove the stack's lab directories once they are empty (the last resource deleted does it)."""
    for directory in (paths.machines, paths.run, paths.ssh, paths.stack_dir):
        with contextlib.suppress(OSError):
            directory.rmdir()


class LabKeyPair(pulumi.dynamic.Resource, module="visio-lab", name="KeyPair"):
    """The stack's SSH key pair on the host (only the public half and the path are in state)."""

    public_key: pulumi.Output[str]
    private_key_file: pulumi.Output[str]
    known_hosts_file: pulumi.Output[str]

    def __init__(
        self, name: str, stack: str, root: str = str(LAB_ROOT), opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(
            KeyPairProvider(),
            name,
            {
                "stack": stack,
                "root": root,
                "public_key": None,
                "private_key_file": None,
                "known_hosts_file": None,
                "present": None,
            },
            opts,
        )
