"""How the operator's machine reaches a stack's nodes over SSH, from the inventory's `connection`.

One place for it: `visio verify` (tests/verify/conftest.py) and `visio status` write the same
ssh_config: the stack's key only, strict host keys from the stack's known_hosts, one multiplexed
connection per node, and the bastion as ProxyJump in production (nodes are addressed by their private
address then; in the lab directly).
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def ssh_config_text(connection: Mapping[str, Any], control_dir: Path, control_name: str = "cm") -> str:
    """The ssh_config for every node of a stack (pure: the caller writes it, mode 0600).

    `control_name` prefixes the control sockets: processes running commands side by side (verify's
    workers) each pass their own, so one node's sshd never sees more sessions on one connection than
    roles/common's MaxSessions allows (a refused session falls back to a new connection, with a line
    on stderr in the command's output)."""
    lines = [
        "Host *",
        f"  User {connection.get('user', 'root')}",
        "  BatchMode yes",
        "  ControlMaster auto",
        f"  ControlPath {control_dir}/{control_name}-%C",
        "  ControlPersist 120s",
        # Up to the banner exchange: a loaded 2-core CI machine (verify's workers, Lynis on every
        # node, the OpenStack test cloud booting) once kept an sshd from answering within 10 s.
        "  ConnectTimeout 30",
        "  ServerAliveInterval 10",
        # The nodes' pre-login Banner (roles/common, ANSSI) is for people at a prompt: at the default
        # INFO level ssh copies it to the stderr of every command, into check messages and reports.
        "  LogLevel ERROR",
    ]
    if connection.get("ssh_key_file"):
        lines += [f"  IdentityFile {connection['ssh_key_file']}", "  IdentitiesOnly yes"]
    if connection.get("known_hosts_file"):
        lines += [f"  UserKnownHostsFile {connection['known_hosts_file']}", "  StrictHostKeyChecking yes"]
    else:
        lines += ["  StrictHostKeyChecking accept-new"]
    bastion = connection.get("bastion")
    if bastion:
        lines.append(f"  ProxyJump {bastion.get('user', 'debian')}@{bastion['host']}")
    return "\n".join(lines) + "\n"


def node_address(host: Mapping[str, Any], connection: Mapping[str, Any]) -> str:
    """The address SSH uses for a node: private behind a bastion (or without a public one), else public."""
    if connection.get("bastion") or not host.get("public_ip"):
        return str(host["private_ip"])
    return str(host["public_ip"])


def write_ssh_config(
    connection: Mapping[str, Any], workdir: Path, name: str, control_name: str = "cm"
) -> Path:
    """Write the ssh_config (0600) under `workdir`, which also holds the control sockets."""
    path = workdir / name
    path.write_text(ssh_config_text(connection, workdir, control_name), encoding="ascii")
    path.chmod(0o600)
    return path


def run_script(
    host: Mapping[str, Any], connection: Mapping[str, Any], ssh_config: Path, script: str, timeout: float = 30
) -> tuple[int, str, str]:
    """Run a shell script on a node (fed to `bash -s`, as root: sudo when the user is not);
    (exit code, stdout, stderr); 255 is SSH's own failure. Raises subprocess.TimeoutExpired."""
    user = connection.get("user", "root")
    shell = "bash -s" if user == "root" else "sudo -n bash -s"
    argv = ["ssh", "-F", str(ssh_config), f"{user}@{node_address(host, connection)}", shell]
    done = subprocess.run(argv, input=script, capture_output=True, text=True, timeout=timeout, check=False)
    return done.returncode, done.stdout, done.stderr
