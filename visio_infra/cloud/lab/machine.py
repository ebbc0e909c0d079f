"""Lab machines: systemd-nspawn containers booting a copy of the base image, one per node.

Each machine is a real Debian 12 with systemd and sshd, its own hostname, machine-id and host keys,
a fixed address on the lab bridge (networkd `10-host0.network`, gateway = the bridge), DNS to the
host's resolver and root login with the lab key only. It runs in the background under its own
session; its PID is recorded so `read()` can tell a dead machine (and `pulumi refresh` notice it)
and `delete()` can stop it: poweroff, then SIGKILL after a timeout, then remove its directory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pulumi
import pulumi.dynamic

from visio_infra.cloud.lab import preflight
from visio_infra.cloud.lab.host import (
    LabError,
    cmdline,
    pid_alive,
    processes_rooted_in,
    remove_tree,
    run,
    terminate,
    unmount_below,
)
from visio_infra.cloud.lab.plan import (
    CGROUP_HIERARCHIES,
    LAB_ROOT,
    LabPaths,
    disk_needed,
    hosts_file,
    in_own_cgroup,
    machine_cgroup,
    networkd_unit,
    nspawn_command,
    nspawn_machine_name,
    resolv_conf,
)
from visio_infra.cloud.lab.ssh import generate_host_keys, prune, set_known_host, ssh_answers, wait_for_ssh

BOOT_TIMEOUT = 180
"""Seconds from start to SSH answering before the machine counts as failed."""

STOP_TIMEOUT = 30
"""Seconds a machine gets to power off cleanly before it is killed."""

IDENTITY = (
    "stack",
    "root",
    "name",
    "address",
    "prefixlen",
    "gateway",
    "bridge",
    "image",
    "public_key",
    "dns",
)
"""Inputs whose change means a new machine (same name and address: delete it first)."""


def recorded_pid(paths: LabPaths, name: str) -> int | None:
    try:
        return int(paths.pid_file(name).read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


def is_our_nspawn(pid: int | None, stack: str, name: str) -> bool:
    """The PID is alive and is the systemd-nspawn of this machine (not a recycled PID)."""
    if not pid_alive(pid):
        return False
    assert pid is not None
    args = cmdline(pid)
    machine = nspawn_machine_name(stack, name)
    return bool(args) and Path(args[0]).name == "systemd-nspawn" and f"--machine={machine}" in args


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)


def prepare_tree(props: dict[str, Any], directory: Path) -> str:
    """Copy the base image and give it this machine's identity; return its ed25519 host key."""
    run(
        ["cp", "-a", "--reflink=auto", f"{props['image']}/.", str(directory)],
        f"copying the base image for {props['name']}",
    )
    name = props["name"]
    _write(directory / "etc/hostname", f"{name}\n")
    _write(directory / "etc/hosts", hosts_file(name, props["hosts"]))
    _write(directory / "etc/machine-id", f"{uuid.uuid4().hex}\n", 0o444)
    _write(
        directory / "etc/systemd/network/10-host0.network",
        networkd_unit(props["address"], int(props["prefixlen"]), props["gateway"], props["dns"]),
    )
    resolv = directory / "etc/resolv.conf"
    if resolv.is_symlink():
        resolv.unlink()
    _write(resolv, resolv_conf(props["dns"]))
    (directory / "root/.ssh").mkdir(mode=0o700, parents=True, exist_ok=True)
    _write(directory / "root/.ssh/authorized_keys", props["public_key"].strip() + "\n", 0o600)
    return generate_host_keys(directory)


CGROUP_ROOT = Path("/sys/fs/cgroup")


def machine_cgroup_dirs(stack: str, name: str, root: Path = CGROUP_ROOT) -> list[Path]:
    """The machine's own cgroup in each hierarchy the host has mounted (a hybrid host: the named
    `systemd` and the `unified` ones; a pure v2 host: the one at `root`)."""
    hierarchies = [root / h for h in CGROUP_HIERARCHIES if (root / h / "cgroup.procs").is_file()]
    if not hierarchies and (root / "cgroup.controllers").is_file():
        hierarchies = [root]
    return [hierarchy / machine_cgroup(stack, name) for hierarchy in hierarchies]


def remove_cgroups(directories: list[Path]) -> None:
    """Remove a stopped machine's cgroups, innermost first (its systemd may leave empty ones behind).
    A cgroup that still holds a process stays: `rmdir` refuses it, and the next start reuses it."""
    for top in directories:
        if not top.is_dir():
            continue
        for current, _dirs, _files in sorted(os.walk(top), key=lambda w: -len(Path(w[0]).parts)):
            with contextlib.suppress(OSError):
                Path(current).rmdir()


def start(paths: LabPaths, name: str, bridge: str, directory: Path) -> int:
    """Boot the machine in the background, in its own session (it outlives the provider process)
    and in its own cgroups (see plan.in_own_cgroup: machines must not share one)."""
    paths.run.mkdir(parents=True, exist_ok=True)
    cgroups = machine_cgroup_dirs(paths.stack, name)
    for cgroup in cgroups:
        cgroup.mkdir(parents=True, exist_ok=True)
    with open(paths.console_log(name), "wb") as log:
        process = subprocess.Popen(
            in_own_cgroup(cgroups, nspawn_command(paths.stack, name, bridge, directory)),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    paths.pid_file(name).write_text(f"{process.pid}\n", encoding="ascii")
    return process.pid


def _console_tail(paths: LabPaths, name: str) -> str:
    try:
        lines = paths.console_log(name).read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(lines[-5:])


def stop(paths: LabPaths, name: str, directory: Path) -> None:
    """Power the machine off (SIGTERM makes nspawn shut the container down cleanly), kill it after
    STOP_TIMEOUT, then kill anything left running on its tree and unmount anything left below it."""
    pid = recorded_pid(paths, name)
    if is_our_nspawn(pid, paths.stack, name):
        assert pid is not None
        terminate([pid], signal.SIGTERM, STOP_TIMEOUT)
    leftovers = processes_rooted_in(directory)
    if leftovers:
        terminate(leftovers, signal.SIGKILL, 5)
    if directory.exists():
        unmount_below(directory)
    remove_cgroups(machine_cgroup_dirs(paths.stack, name))


def destroy(paths: LabPaths, name: str, address: str | None, *, prune_empty: bool = True) -> None:
    """Stop and remove one machine. `prune_empty` also removes the stack's directories once empty:
    never while creating, since machines are created in parallel and a sibling may be about to
    create its own directory under them."""
    directory = paths.machine_dir(name)
    stop(paths, name, directory)
    remove_tree(directory)
    (paths.machines / f".#{name}.lck").unlink(missing_ok=True)  # systemd-nspawn's image lock
    paths.pid_file(name).unlink(missing_ok=True)
    paths.console_log(name).unlink(missing_ok=True)
    if address:
        set_known_host(paths, address, None)
    if prune_empty:
        prune(paths)


def create_machine(props: dict[str, Any]) -> dict[str, Any]:
    paths = LabPaths(props["stack"], Path(props["root"]))
    name = props["name"]
    directory = paths.machine_dir(name)
    # A leftover of this machine (a crashed or interrupted run) is ours by path: replace it.
    destroy(paths, name, props["address"], prune_empty=False)
    image = Path(props["image"])
    if not (image / "usr/lib/systemd/systemd").exists():
        raise LabError(f"base image {image} is missing or incomplete; run `pulumi up` again to rebuild it")
    preflight.check_disk(paths.machines, disk_needed(1, image_cached=True))
    started = time.monotonic()
    for _attempt in range(3):  # a deletion elsewhere in the same update may prune an empty parent
        try:
            directory.mkdir(parents=True)
            break
        except FileNotFoundError:
            time.sleep(0.2)
    else:
        directory.mkdir(parents=True)
    try:
        host_key = prepare_tree(props, directory)
        set_known_host(paths, props["address"], host_key)
        pid = start(paths, name, props["bridge"], directory)
        try:
            wait_for_ssh(
                paths, props["address"], BOOT_TIMEOUT, alive=lambda: is_our_nspawn(pid, paths.stack, name)
            )
        except LabError as exc:
            raise LabError(f"machine {name}: {exc}; console: {_console_tail(paths, name)}") from None
    except BaseException:
        destroy(paths, name, props["address"], prune_empty=False)
        raise
    return {
        **props,
        "pid": pid,
        "host_key": host_key,
        "directory": str(directory),
        "running": True,
        "boot_seconds": round(time.monotonic() - started, 1),
    }


def machine_running(props: dict[str, Any]) -> bool:
    paths = LabPaths(props["stack"], Path(props["root"]))
    pid = recorded_pid(paths, props["name"])
    return (
        pid == props.get("pid")
        and is_our_nspawn(pid, paths.stack, props["name"])
        and ssh_answers(paths, props["address"])
    )


class MachineProvider(pulumi.dynamic.ResourceProvider):
    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        return pulumi.dynamic.CreateResult(id_=props["name"], outs=create_machine(props))

    def read(self, id_: str, props: dict[str, Any]) -> pulumi.dynamic.ReadResult:
        return pulumi.dynamic.ReadResult(id_=id_, outs={**props, "running": machine_running(props)})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        replaces = [key for key in IDENTITY if olds.get(key) != news.get(key)]
        if olds.get("running") is False:
            replaces.append("running")  # found dead by `pulumi refresh`: recreate it
        changes = bool(replaces) or olds.get("hosts") != news.get("hosts")
        return pulumi.dynamic.DiffResult(changes=changes, replaces=replaces, delete_before_replace=True)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        paths = LabPaths(news["stack"], Path(news["root"]))
        _write(paths.machine_dir(news["name"]) / "etc/hosts", hosts_file(news["name"], news["hosts"]))
        keep = {key: olds.get(key) for key in ("pid", "host_key", "directory", "running", "boot_seconds")}
        return pulumi.dynamic.UpdateResult(outs={**news, **keep})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        destroy(LabPaths(props["stack"], Path(props["root"])), props["name"], props.get("address"))


class LabMachine(pulumi.dynamic.Resource, module="visio-lab", name="Machine"):
    """One node of the topology as a systemd-nspawn machine on the lab bridge."""

    address: pulumi.Output[str]
    host_key: pulumi.Output[str]
    pid: pulumi.Output[int]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        outputs = {"pid": None, "host_key": None, "directory": None, "running": None, "boot_seconds": None}
        super().__init__(MachineProvider(), name, {**props, **outputs}, opts)


__all__ = ["IDENTITY", "LAB_ROOT", "LabMachine", "create_machine", "destroy", "machine_running"]
