"""Checks before the lab touches the host, each failing with what to do.

The `*_problems` functions are pure (they judge facts gathered elsewhere) so every message is unit
tested; `gather_*` functions read the host; `check_*` combine both and raise `LabError`.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from visio_infra.cloud.lab.host import LabError, run
from visio_infra.cloud.lab.plan import BRIDGE_ALIAS_PREFIX

TOOLS = {
    "systemd-nspawn": "systemd-container",
    "debootstrap": "debootstrap",
    "nft": "nftables",
    "ip": "iproute2",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "setsid": "util-linux",
    "chroot": "coreutils",
}
"""Host command -> Debian package providing it."""

CLEAN_COMMAND = "scripts/lab-clean.sh {stack}"


def root_problems(euid: int) -> list[str]:
    if euid == 0:
        return []
    return [
        "the lab must run as root (it creates a bridge, nftables rules and systemd-nspawn machines): "
        "run `sudo -E pulumi up --stack lab` or use a root shell"
    ]


def tool_problems(missing: Iterable[str]) -> list[str]:
    missing = sorted(set(missing))
    if not missing:
        return []
    packages = sorted({TOOLS.get(tool, tool) for tool in missing})
    return [
        f"missing host command(s) {', '.join(missing)}: install them with "
        f"`apt-get install -y {' '.join(packages)}`"
    ]


def kernel_problems(features: Mapping[str, bool]) -> list[str]:
    hints = {
        "bridge": "the kernel cannot create bridges (module `bridge`): `modprobe bridge`, or run the lab "
        "on a host/VM whose kernel has it",
        "veth": "the kernel cannot create veth pairs (module `veth`): `modprobe veth`",
        "nftables": "nftables is not usable (module `nf_tables`): `modprobe nf_tables`, and make sure "
        "this is not an unprivileged container",
        "cgroups": "no cgroup filesystem at /sys/fs/cgroup: systemd-nspawn needs one (mount cgroup2 there)",
        "ip_forward": "net.ipv4.ip_forward cannot be changed here (read-only /proc/sys): the lab needs a "
        "host, not an unprivileged container",
    }
    return [hints[name] for name, ok in features.items() if not ok and name in hints]


def network_problems(
    bridge: str,
    subnet: ipaddress.IPv4Network,
    stack: str,
    links: list[dict[str, Any]],
    addresses: list[dict[str, Any]],
    routes: list[dict[str, Any]],
) -> list[str]:
    """Is the bridge name or the subnet already used by something that is not this lab?

    `links`/`addresses`/`routes` are the JSON of `ip -j -d link`, `ip -j addr`, `ip -j route`.
    A bridge carrying our alias `visio-lab:<stack>` is ours (a stale lab): it is adopted, not a problem.
    """
    problems = []
    reported: set[str] = set()
    ours_alias = f"{BRIDGE_ALIAS_PREFIX}{stack}"
    link = next((item for item in links if item.get("ifname") == bridge), None)
    if link is not None:
        alias = link.get("ifalias", "")
        kind = (link.get("linkinfo") or {}).get("info_kind", "unknown")
        if alias.startswith(BRIDGE_ALIAS_PREFIX) and alias != ours_alias:
            other = alias.removeprefix(BRIDGE_ALIAS_PREFIX)
            problems.append(
                f"interface {bridge} belongs to another lab stack ({other}); give this stack another "
                f"visio:cloud.bridge and subnet, or remove that lab: `{CLEAN_COMMAND.format(stack=other)}`"
            )
        elif alias != ours_alias:
            problems.append(
                f"interface {bridge} already exists (type {kind}) and is not a Visio lab bridge; pick "
                f"another visio:cloud.bridge in the stack file or remove it: `ip link del {bridge}`"
            )
    for entry in addresses:
        ifname = entry.get("ifname")
        if ifname == bridge:
            continue
        for info in entry.get("addr_info", []):
            if info.get("family") != "inet":
                continue
            net = ipaddress.ip_network(f"{info['local']}/{info['prefixlen']}", strict=False)
            if net.overlaps(subnet):
                reported.add(str(ifname))
                problems.append(
                    f"subnet {subnet} is already used by interface {ifname} ({info['local']}/"
                    f"{info['prefixlen']}); pick another visio:cloud.subnet in the stack file"
                )
    for route in routes:
        dev = route.get("dev")
        dst = route.get("dst")
        if dev == bridge or not dst or dst == "default":
            continue
        try:
            net = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        if net.version == 4 and net.overlaps(subnet) and dev not in reported:
            reported.add(str(dev))
            problems.append(
                f"subnet {subnet} overlaps the route {dst} via {dev}; pick another visio:cloud.subnet"
            )
    return problems


def disk_problems(path: Path, free_bytes: int, needed_bytes: int) -> list[str]:
    if free_bytes >= needed_bytes:
        return []
    gib = 2**30
    return [
        f"not enough disk space under {path}: {needed_bytes / gib:.1f} GiB needed, "
        f"{free_bytes / gib:.1f} GiB free; free {(needed_bytes - free_bytes) / gib:.1f} GiB "
        "(e.g. `scripts/lab-clean.sh --old-images` removes the cached base images but the newest)"
    ]


def stale_problems(stack: str, running: Iterable[str]) -> list[str]:
    running = sorted(running)
    if not running:
        return []
    return [
        f"machines of an earlier lab run are still running ({', '.join(running)}) and this stack does "
        f"not know them; remove the stale lab with `{CLEAN_COMMAND.format(stack=stack)}` and run "
        "`pulumi up` again"
    ]


# --- reading the host -------------------------------------------------------------------------------


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def kernel_features() -> dict[str, bool]:
    """Probe what the lab needs by doing it (module lists miss built-in drivers): a throwaway bridge
    and veth pair are created and removed, nftables is listed."""
    probe = f"vlprobe{os.getpid() % 100000}"
    features = {}
    for kind, extra in (("bridge", []), ("veth", ["peer", "name", probe + "p"])):
        created = run(
            ["ip", "link", "add", probe, "type", kind, *extra], f"probing {kind} support", check=False
        )
        features[kind] = created.returncode == 0
        if features[kind]:
            run(["ip", "link", "del", probe], f"removing the {kind} probe", check=False)
    features["nftables"] = run(["nft", "list", "tables"], "probing nftables", check=False).returncode == 0
    features["cgroups"] = Path("/sys/fs/cgroup").is_dir() and any(Path("/sys/fs/cgroup").iterdir())
    features["ip_forward"] = os.access("/proc/sys/net/ipv4/ip_forward", os.W_OK)
    return features


def ip_json(*args: str) -> list[dict[str, Any]]:
    result = run(["ip", "-j", *args], f"reading host network state (ip {' '.join(args)})")
    return json.loads(result.stdout or "[]")


def free_bytes(path: Path) -> int:
    probe = path
    while not probe.exists():
        probe = probe.parent
    stats = os.statvfs(probe)
    return stats.f_bavail * stats.f_frsize


def raise_if(problems: list[str]) -> None:
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise LabError(f"the lab cannot start on this host:\n{lines}")


def check_host(bridge: str, subnet: ipaddress.IPv4Network, stack: str) -> None:
    """Everything the network step needs: root, host commands, kernel features, a free name and subnet."""
    problems = root_problems(os.geteuid()) + tool_problems(missing_tools())
    if not problems:
        problems += kernel_problems(kernel_features())
        problems += network_problems(
            bridge, subnet, stack, ip_json("-d", "link"), ip_json("addr"), ip_json("route")
        )
    raise_if(problems)


def check_disk(path: Path, needed: int) -> None:
    raise_if(disk_problems(path, free_bytes(path), needed))
