"""The lab network on the host: bridge, forwarding + NAT to the mirror only, media buffer sysctls.

One dynamic resource owns all of it because it is one thing to create and one thing to remove: a
bridge tagged `visio-lab:<stack>` (so a stale one is adopted), our own nftables table, and the
host sysctls the lab changed (their previous values are kept, in state and on disk, to be restored).
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pulumi
import pulumi.dynamic

from visio_infra.cloud.lab import preflight
from visio_infra.cloud.lab.host import LabError, cmdline, read_sysctl, run, write_sysctl
from visio_infra.cloud.lab.plan import (
    BRIDGE_ALIAS_PREFIX,
    LAB_ROOT,
    MEDIA_BUFFER_BYTES,
    LabPaths,
    bridge_interface,
    nft_ruleset,
    nft_table,
)
from visio_infra.cloud.lab.ssh import prune

SYSCTLS = {
    "net.ipv4.ip_forward": 1,
    "net.core.rmem_max": MEDIA_BUFFER_BYTES,
    "net.core.wmem_max": MEDIA_BUFFER_BYTES,
    # Each machine's systemd takes several inotify instances; Debian's 128 per user runs out with two
    # or three labs on one host ("Failed to allocate manager object" at boot).
    "fs.inotify.max_user_instances": 1024,
}
"""Host sysctls the lab needs, as minimum values (a larger existing value is left alone)."""


def _sysctl_file(paths: LabPaths) -> Path:
    return paths.run / "sysctl.json"


def bridge_is_ours(bridge: str, stack: str) -> bool:
    links = [link for link in preflight.ip_json("-d", "link") if link.get("ifname") == bridge]
    return bool(links) and links[0].get("ifalias") == f"{BRIDGE_ALIAS_PREFIX}{stack}"


def raise_sysctls(paths: LabPaths) -> dict[str, dict[str, str]]:
    """Raise the sysctls to the lab's minimums; return {key: {"before", "set"}} for those changed.

    When a stale lab already changed them, the values recorded then are kept (not today's).
    """
    record = _sysctl_file(paths)
    changed: dict[str, dict[str, str]] = json.loads(record.read_text()) if record.exists() else {}
    for key, minimum in SYSCTLS.items():
        current = read_sysctl(key)
        if int(current) < minimum:
            write_sysctl(key, minimum)
            changed.setdefault(key, {"before": current, "set": str(minimum)})
    paths.run.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(changed, sort_keys=True))
    return changed


def other_routed_bridges(bridge: str) -> list[str]:
    """Other bridges with IPv4 addresses: someone else may rely on ip_forward."""
    names = []
    for link in preflight.ip_json("-d", "addr"):
        kind = (link.get("linkinfo") or {}).get("info_kind")
        if (
            kind == "bridge"
            and link.get("ifname") != bridge
            and any(info.get("family") == "inet" for info in link.get("addr_info", []))
        ):
            names.append(link["ifname"])
    return names


def restore_sysctls(paths: LabPaths, changed: dict[str, dict[str, str]], bridge: str) -> list[str]:
    """Put back what the lab changed, unless someone changed it again since; return notes on what was kept."""
    notes = []
    others = other_routed_bridges(bridge)
    for key, values in changed.items():
        if read_sysctl(key) != values["set"]:
            notes.append(f"{key} was changed by someone else since; left as is")
            continue
        if key == "net.ipv4.ip_forward" and others:
            notes.append(f"{key} left at 1: other routed bridges exist ({', '.join(others)})")
            continue
        write_sysctl(key, values["before"])
    _sysctl_file(paths).unlink(missing_ok=True)
    return notes


def running_machines(paths: LabPaths) -> dict[str, int]:
    """Machine name -> systemd-nspawn PID, for every machine of this stack running on the host."""
    found = {}
    base = str(paths.machines) + "/"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        args = cmdline(int(entry.name))
        if args and Path(args[0]).name == "systemd-nspawn" and "-D" in args:
            directory = args[args.index("-D") + 1] if args.index("-D") + 1 < len(args) else ""
            if directory.startswith(base):
                found[directory.removeprefix(base)] = int(entry.name)
    return found


def ensure_network(
    stack: str, bridge: str, subnet: ipaddress.IPv4Network, paths: LabPaths, planned: list[str] | None = None
) -> dict[str, Any]:
    """Create (or adopt) the lab network; idempotent. Machines of an earlier run that this stack no
    longer plans are reported with the command that removes them (planned ones are replaced)."""
    preflight.check_host(bridge, subnet, stack)
    if planned is not None:
        preflight.raise_if(preflight.stale_problems(stack, set(running_machines(paths)) - set(planned)))
    address = bridge_interface(subnet)
    if not bridge_is_ours(bridge, stack):
        run(["ip", "link", "add", bridge, "type", "bridge"], f"creating the lab bridge {bridge}")
        run(
            ["ip", "link", "set", bridge, "alias", f"{BRIDGE_ALIAS_PREFIX}{stack}"],
            f"tagging bridge {bridge}",
        )
    run(["ip", "addr", "replace", str(address), "dev", bridge], f"addressing bridge {bridge}")
    run(["ip", "link", "set", bridge, "up"], f"bringing bridge {bridge} up")
    changed = raise_sysctls(paths)
    table = nft_table(stack)
    run(
        ["nft", "-f", "-"],
        f"loading nftables table inet {table}",
        input_text=nft_ruleset(table, bridge, subnet),
    )
    return {"bridge_address": str(address.ip), "sysctls_changed": changed}


def remove_network(stack: str, bridge: str, paths: LabPaths, changed: dict[str, dict[str, str]]) -> list[str]:
    table = nft_table(stack)
    if run(["nft", "list", "table", "inet", table], "reading nftables", check=False).returncode == 0:
        run(["nft", "delete", "table", "inet", table], f"removing nftables table inet {table}")
    if bridge_is_ours(bridge, stack):
        run(["ip", "link", "del", bridge], f"removing bridge {bridge}")
    record = _sysctl_file(paths)
    if record.exists():  # what is on disk also covers a crash between raising and saving state
        changed = {**json.loads(record.read_text()), **changed}
    notes = restore_sysctls(paths, changed, bridge)
    prune(paths)
    return notes


def network_present(stack: str, bridge: str, subnet: ipaddress.IPv4Network) -> bool:
    if not bridge_is_ours(bridge, stack):
        return False
    addresses = [
        info
        for link in preflight.ip_json("addr", "show", "dev", bridge)
        for info in link.get("addr_info", [])
        if info.get("family") == "inet"
    ]
    wanted = bridge_interface(subnet)
    if not any(f"{a['local']}/{a['prefixlen']}" == str(wanted) for a in addresses):
        return False
    listing = run(
        ["nft", "list", "table", "inet", nft_table(stack)], "reading the lab nftables table", check=False
    )
    return listing.returncode == 0 and all(int(read_sysctl(k)) >= v for k, v in SYSCTLS.items())


class NetworkProvider(pulumi.dynamic.ResourceProvider):
    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        paths = LabPaths(props["stack"], Path(props["root"]))
        outs = ensure_network(
            props["stack"],
            props["bridge"],
            ipaddress.IPv4Network(props["subnet"]),
            paths,
            planned=list(props.get("machines") or []),
        )
        return pulumi.dynamic.CreateResult(id_=props["bridge"], outs={**props, **outs, "present": True})

    def read(self, id_: str, props: dict[str, Any]) -> pulumi.dynamic.ReadResult:
        present = network_present(props["stack"], props["bridge"], ipaddress.IPv4Network(props["subnet"]))
        return pulumi.dynamic.ReadResult(id_=id_, outs={**props, "present": present})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        changed = [key for key in ("stack", "bridge", "subnet", "root") if olds.get(key) != news.get(key)]
        if olds.get("present") is False:
            changed.append("present")  # repaired in place by update(): machines keep running
        return pulumi.dynamic.DiffResult(changes=bool(changed), replaces=[], delete_before_replace=True)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        if any(olds.get(key) != news.get(key) for key in ("stack", "bridge", "subnet", "root")):
            self.delete(_id, olds)
        paths = LabPaths(news["stack"], Path(news["root"]))
        outs = ensure_network(news["stack"], news["bridge"], ipaddress.IPv4Network(news["subnet"]), paths)
        return pulumi.dynamic.UpdateResult(outs={**news, **outs, "present": True})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        paths = LabPaths(props["stack"], Path(props["root"]))
        remove_network(props["stack"], props["bridge"], paths, props.get("sysctls_changed") or {})


class LabNetwork(pulumi.dynamic.Resource, module="visio-lab", name="Network"):
    """Host bridge + NAT to the Debian mirror + media buffer sysctls, for one lab stack."""

    bridge: pulumi.Output[str]
    bridge_address: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        stack: str,
        bridge: str,
        subnet: str,
        machines: list[str],
        root: str = str(LAB_ROOT),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            NetworkProvider(),
            name,
            {
                "stack": stack,
                "bridge": bridge,
                "subnet": subnet,
                "root": root,
                "machines": machines,
                "bridge_address": None,
                "sysctls_changed": None,
                "present": None,
            },
            opts,
        )


__all__ = ["LabError", "LabNetwork", "ensure_network", "network_present", "remove_network"]
