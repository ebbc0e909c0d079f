"""Pure planning for the lab: where things live on disk, the bridge address, what each machine gets.

No I/O and no Pulumi here, so names, addresses and the files written into machines are unit-tested.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from visio_infra.model.config.cloud import LabCloud
from visio_infra.model.config.stack import StackConfig
from visio_infra.model.topology import NodeSpec

LAB_ROOT = Path("/var/lib/visio-lab")
"""Everything the lab writes on the host lives below this (images cache, machines, keys, PIDs)."""

BRIDGE_ALIAS_PREFIX = "visio-lab:"
"""Interface alias marking a bridge as ours (`visio-lab:<stack>`), so a stale one can be adopted."""

NFT_TABLE_PREFIX = "visio_lab_"
"""Each lab stack has its own nftables table (family inet), `visio_lab_<stack>`: teardown is one
`nft delete table inet visio_lab_<stack>`."""

MEDIA_BUFFER_BYTES = 5_000_000
"""LiveKit warns below this UDP buffer size; nspawn guests cannot raise it, so the host does."""

MIRROR_PORTS = (53, 80, 443)
"""What lab machines may reach outside the lab through NAT: DNS and the Debian mirror (HTTP/HTTPS)."""


@dataclass(frozen=True)
class LabPaths:
    """Host paths of one lab stack. Private keys stay here (0600), never in Pulumi state."""

    stack: str
    root: Path = LAB_ROOT

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def stack_dir(self) -> Path:
        return self.root / self.stack

    @property
    def machines(self) -> Path:
        return self.stack_dir / "machines"

    @property
    def run(self) -> Path:
        return self.stack_dir / "run"

    @property
    def ssh(self) -> Path:
        return self.stack_dir / "ssh"

    @property
    def private_key(self) -> Path:
        return self.ssh / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.ssh / "known_hosts"

    def machine_dir(self, name: str) -> Path:
        return self.machines / name

    def pid_file(self, name: str) -> Path:
        return self.run / f"{name}.pid"

    def console_log(self, name: str) -> Path:
        return self.run / f"{name}.log"


@dataclass(frozen=True)
class MachineSpec:
    """One lab machine: a node of the topology with its address on the lab bridge."""

    name: str
    role: str
    address: ipaddress.IPv4Address
    prefixlen: int
    gateway: ipaddress.IPv4Address
    public: bool

    @property
    def public_ip(self) -> str | None:
        """In the lab the 'public' address of SFU/TURN nodes is their address on the bridge."""
        return str(self.address) if self.public else None


def lab_cloud(config: StackConfig) -> LabCloud:
    if not isinstance(config.cloud, LabCloud):
        raise ValueError("this stack's cloud is not the lab (visio:cloud.kind must be 'lab')")
    return config.cloud


def bridge_interface(subnet: ipaddress.IPv4Network) -> ipaddress.IPv4Interface:
    """The bridge takes the subnet's first address and is the machines' gateway."""
    return ipaddress.IPv4Interface(f"{next(subnet.hosts())}/{subnet.prefixlen}")


def plan_machines(config: StackConfig, nodes: Iterable[NodeSpec]) -> list[MachineSpec]:
    """Machines for the planned nodes; every address must sit in the lab subnet and not be the bridge's."""
    lab = lab_cloud(config)
    gateway = bridge_interface(lab.subnet)
    machines = []
    for node in nodes:
        if node.private_ip not in lab.subnet:
            raise ValueError(
                f"node {node.name} address {node.private_ip} is outside the lab subnet {lab.subnet}"
            )
        if node.private_ip == gateway.ip:
            raise ValueError(f"node {node.name} would take the bridge address {gateway.ip}")
        if len(node.name) > 64 or not re.fullmatch(r"[a-z0-9][a-z0-9-]*", node.name):
            raise ValueError(f"node name {node.name!r} is not a valid machine/host name")
        machines.append(
            MachineSpec(
                name=node.name,
                role=node.role,
                address=node.private_ip,
                prefixlen=lab.subnet.prefixlen,
                gateway=gateway.ip,
                public=node.public,
            )
        )
    return machines


def service_names(config: StackConfig, machines: Iterable[MachineSpec]) -> dict[str, str]:
    """Public names -> lab address: signalling on the first SFU node, TURN on the first TURN node."""
    by_role: dict[str, list[MachineSpec]] = {}
    for machine in machines:
        by_role.setdefault(machine.role, []).append(machine)
    names = {}
    if by_role.get("sfu"):
        names[config.domains.signalling] = str(by_role["sfu"][0].address)
    if by_role.get("turn"):
        names[config.domains.turn] = str(by_role["turn"][0].address)
    return names


def hosts_entries(config: StackConfig, machines: list[MachineSpec]) -> list[list[str]]:
    """[address, name...] lines every machine's /etc/hosts carries (lab nodes and service names)."""
    entries: dict[str, list[str]] = {}
    for machine in machines:
        entries.setdefault(str(machine.address), []).append(machine.name)
    for name, address in service_names(config, machines).items():
        entries.setdefault(address, []).append(name)
    return [[address, *names] for address, names in entries.items()]


def hosts_file(hostname: str, entries: Iterable[Iterable[str]]) -> str:
    """/etc/hosts of one machine. Its own name maps to its lab address (not Debian's 127.0.1.1) so
    services resolving their hostname get the address peers use."""
    rows = [list(entry) for entry in entries]
    lines = [
        "# Written by the Visio lab (visio_infra/cloud/lab); rewritten on every change.",
        "127.0.0.1\tlocalhost",
    ]
    if not any(hostname in row[1:] for row in rows):
        lines.append(f"127.0.1.1\t{hostname}")
    lines += ["::1\tlocalhost ip6-localhost ip6-loopback", "ff02::1\tip6-allnodes", "ff02::2\tip6-allrouters"]
    lines += ["\t".join(row) for row in rows]
    return "\n".join(lines) + "\n"


def networkd_unit(address: str, prefixlen: int, gateway: str, dns: Iterable[str]) -> str:
    """host0's fixed address. It must sort before 80-container-host0.network (hence `10-`)."""
    lines = ["[Match]", "Name=host0", "", "[Network]", f"Address={address}/{prefixlen}", f"Gateway={gateway}"]
    lines += [f"DNS={server}" for server in dns]
    lines += ["LinkLocalAddressing=no", "IPv6AcceptRA=no", ""]
    return "\n".join(lines)


def resolv_conf(dns: Iterable[str]) -> str:
    return "".join(f"nameserver {server}\n" for server in dns)


def host_resolvers(resolv_conf_text: str) -> list[str]:
    """Nameservers of the host that a machine can use through NAT (loopback stubs cannot be)."""
    servers = []
    for line in resolv_conf_text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                address = ipaddress.ip_address(parts[1])
            except ValueError:
                continue
            if address.version == 4 and not address.is_loopback:
                servers.append(str(address))
    return servers


def nspawn_machine_name(stack: str, name: str) -> str:
    """The name systemd-nspawn knows a machine by: prefixed with the stack so two labs (or another
    tool's containers named after the same nodes) never collide on the host-side veth `vb-<name>`
    (systemd shortens long ones with a hash) or on /run/systemd/nspawn/propagate/<name>."""
    return f"visio-{stack}-{name}"


def nspawn_command(stack: str, name: str, bridge: str, directory: Path) -> list[str]:
    """systemd-nspawn invocation for one machine. `--register=no --keep-unit` because the host has no
    systemd as PID 1 (without them nspawn fails on the missing system bus)."""
    return [
        "systemd-nspawn",
        "--quiet",
        "--boot",
        "--register=no",
        "--keep-unit",
        f"--machine={nspawn_machine_name(stack, name)}",
        f"--hostname={name}",
        f"--network-bridge={bridge}",
        "--resolv-conf=off",
        "--timezone=off",
        "--link-journal=no",
        "--console=read-only",
        "-D",
        str(directory),
    ]


CGROUP_HIERARCHIES = ("systemd", "unified")
"""The host's cgroup hierarchies systemd tracks units in (under /sys/fs/cgroup): the named v1
`systemd` one and the v2 `unified` one of a hybrid host. A pure v2 host has its hierarchy at
/sys/fs/cgroup itself (see `machine_cgroup_dirs`)."""


def machine_cgroup(stack: str, name: str) -> str:
    """The machine's own cgroup, relative to a hierarchy's root."""
    return f"visio-lab/{nspawn_machine_name(stack, name)}"


def in_own_cgroup(cgroup_dirs: list[Path], command: list[str]) -> list[str]:
    """`command`, run by a shell that first moves itself into each of `cgroup_dirs` (created
    beforehand), then execs it: the PID stays the command's.

    Why: with no systemd on the host, `systemd-nspawn --keep-unit` nests the container under the
    cgroup it was started in, the root one for every machine here. Every machine's systemd then
    shared one tree (`/payload/system.slice/<unit>`): stopping nftables or redis-sentinel on one
    node removed or killed the same-named unit's cgroup under its siblings, which then failed to
    start with status 219/CGROUP ("Failed to attach to cgroup ... No such file or directory")."""
    joins = " ".join(f"'{directory}/cgroup.procs'" for directory in cgroup_dirs)
    script = f'for procs in {joins}; do echo $$ > "$procs"; done; exec "$@"' if joins else 'exec "$@"'
    return ["sh", "-ec", script, "visio-lab-machine", *command]


IMAGE_BYTES_ESTIMATE = 700 * 2**20
"""Size of the base image (measured ~{measured}); used before it exists."""
MACHINE_GROWTH_BYTES = 1200 * 2**20
"""What a machine adds to its copy of the image once configured (LiveKit, PostgreSQL, coturn, logs)."""


def disk_needed(machines: int, image_cached: bool, image_bytes: int = IMAGE_BYTES_ESTIMATE) -> int:
    """Bytes the lab needs free: the base image unless cached, plus each machine's copy and growth."""
    return (0 if image_cached else image_bytes) + machines * (image_bytes + MACHINE_GROWTH_BYTES)


def nft_table(stack: str) -> str:
    return NFT_TABLE_PREFIX + re.sub(r"[^A-Za-z0-9_]", "_", stack)


def nft_ruleset(table: str, bridge: str, subnet: ipaddress.IPv4Network) -> str:
    """Our own nftables table: machines talk freely among themselves, reach only DNS and the Debian
    mirror (HTTP/HTTPS) outside through NAT, and nothing outside may open connections to them.

    The host's br_netfilter makes bridged (machine-to-machine) traffic cross the forward hook, hence
    the first rule. Loading it replaces any earlier version of the table in one transaction.
    """
    ports = ", ".join(str(p) for p in MIRROR_PORTS)
    return f"""table inet {table}
delete table inet {table}
table inet {table} {{
  chain forward {{
    type filter hook forward priority filter; policy accept;
    iifname "{bridge}" oifname "{bridge}" accept
    iifname != "{bridge}" oifname "{bridge}" ct state established,related accept
    iifname "{bridge}" ip saddr {subnet} meta l4proto {{ tcp, udp }} th dport {{ {ports} }} accept
    iifname "{bridge}" drop
    oifname "{bridge}" drop
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr {subnet} ip daddr != {subnet} oifname != "{bridge}" masquerade
  }}
}}
"""
