"""Running things on the lab host: commands, processes and sysctls, with plain error messages.

Every lab provider goes through here so a failing host command always surfaces as a `LabError`
naming what was being done and what the command said, never as a bare CalledProcessError.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


class LabError(RuntimeError):
    """Something on the lab host is not as the lab needs it; the message says what to do."""


def run(
    cmd: Sequence[str],
    what: str,
    *,
    check: bool = True,
    timeout: float | None = 600,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a host command; on failure raise LabError("<what>: <command> failed: <stderr>")."""
    try:
        result = subprocess.run(
            list(cmd), capture_output=True, text=True, timeout=timeout, input=input_text, check=False
        )
    except FileNotFoundError:
        raise LabError(f"{what}: '{cmd[0]}' is not installed") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"{what}: '{' '.join(cmd)}' did not finish within {timeout:.0f} s") from None
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise LabError(
            f"{what}: '{' '.join(cmd)}' exited with {result.returncode}: {' | '.join(detail)}"
            + failure_hint(result.stderr or result.stdout)
        )
    return result


DISK_FULL_HINT = (
    "; the disk filled up: free space under /var/lib/visio-lab (`scripts/lab-clean.sh --old-images` "
    "removes the cached base images but the newest; `df -h /var/lib/visio-lab` shows what is left), "
    "then run the same command again"
)


def failure_hint(output: str) -> str:
    """What to do about a failure whose cause the command's output names (disk full, for now): the
    pre-flight estimate cannot foresee a disk filled by something else during the run."""
    if "No space left on device" in output or "ENOSPC" in output:
        return DISK_FULL_HINT
    return ""


def read_sysctl(key: str) -> str:
    return Path("/proc/sys", *key.split(".")).read_text(encoding="ascii").strip()


def write_sysctl(key: str, value: str | int) -> None:
    try:
        Path("/proc/sys", *key.split(".")).write_text(f"{value}\n", encoding="ascii")
    except OSError as exc:
        raise LabError(
            f"cannot set {key}={value} on the host ({exc.strerror}); the lab must run as root "
            "on a host (not inside a container) that lets it change network sysctls"
        ) from None


def pid_alive(pid: int | None) -> bool:
    """True if `pid` is a live process (zombies count as dead)."""
    if not pid or pid <= 0:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _root_of(pid: str) -> list[str]:
    """Where a process's root directory comes from: its chroot path, and for a process in its own
    mount namespace (a systemd-nspawn container) the source path of its "/" mount."""
    roots = []
    try:
        roots.append(os.readlink(f"/proc/{pid}/root"))
    except OSError:
        return roots
    try:
        with open(f"/proc/{pid}/mountinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                fields = line.split()
                if len(fields) > 4 and fields[4] == "/":
                    roots.append(fields[3].replace("\\040", " ").removesuffix("//deleted"))
                    break
    except OSError:
        pass
    return roots


def processes_rooted_in(directory: Path) -> list[int]:
    """PIDs running on the tree `directory`: chrooted there or containers whose "/" is it (even after
    the tree was deleted, and even if their systemd-nspawn parent was killed)."""
    target = str(directory.resolve())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        if any(root == target or root.startswith(target + "/") for root in _root_of(entry.name)):
            found.append(int(entry.name))
    return found


def terminate(pids: Sequence[int], first: signal.Signals | int, timeout: float) -> list[int]:
    """Send `first` to each PID, wait up to `timeout` s, SIGKILL the survivors; return the killed ones."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, first)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.2)
    killed = [p for p in pids if pid_alive(p)]
    for pid in killed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(pid_alive(p) for p in killed):
        time.sleep(0.1)
    return killed


def mounts_below(directory: Path) -> list[str]:
    target = str(directory.resolve())
    with open("/proc/mounts", encoding="utf-8") as mounts:
        points = [line.split()[1].replace("\\040", " ") for line in mounts]
    return [p for p in points if p == target or p.startswith(target + "/")]


def unmount_below(directory: Path) -> None:
    """Lazily unmount everything mounted on or below `directory` (deepest first), so removing a tree
    never descends into a mounted /proc or /dev."""
    for mountpoint in sorted(mounts_below(directory), key=len, reverse=True):
        run(["umount", "-l", mountpoint], f"unmounting {mountpoint}", check=False)
    left = mounts_below(directory)
    if left:
        raise LabError(f"cannot unmount {', '.join(left)}; unmount them by hand before removing {directory}")


def remove_tree(directory: Path) -> None:
    """rm -rf that first unmounts what is below (and never crosses into another filesystem)."""
    if not directory.exists():
        return
    unmount_below(directory)
    run(["rm", "-rf", "--one-file-system", str(directory)], f"removing {directory}")
