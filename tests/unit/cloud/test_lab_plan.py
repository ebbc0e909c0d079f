"""Lab planning (pure): paths, bridge address, machine addresses, files written into machines, nft rules."""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

import pytest

from visio_infra.cloud.lab.plan import (
    LabPaths,
    bridge_interface,
    disk_needed,
    host_resolvers,
    hosts_entries,
    hosts_file,
    in_own_cgroup,
    machine_cgroup,
    networkd_unit,
    nft_ruleset,
    nft_table,
    nspawn_command,
    plan_machines,
    service_names,
)
from visio_infra.model.stack_file import load_stack_file, stack_file
from visio_infra.model.topology import NodeSpec, plan_nodes


@pytest.fixture(scope="module")
def lab():
    return load_stack_file(stack_file("lab"))


@pytest.fixture(scope="module")
def machines(lab):
    return plan_machines(lab, plan_nodes(lab, lab.sizing.nodes))


def test_bridge_takes_first_address_and_is_every_gateway(lab, machines):
    bridge = bridge_interface(lab.cloud.subnet)
    assert str(bridge) == "10.77.0.1/24"
    assert {m.gateway for m in machines} == {bridge.ip}
    assert all(m.address != bridge.ip and m.address in lab.cloud.subnet for m in machines)
    assert all(m.prefixlen == 24 for m in machines)


def test_lab_machines_follow_topology(lab, machines):
    assert sorted(m.name for m in machines) == sorted(
        ["lab-sfu-1", "lab-sfu-2", "lab-turn-1", "lab-turn-2", "lab-db-1", "lab-db-2", "lab-db-3",
         "lab-redis-1", "lab-redis-2", "lab-redis-3", "lab-monitoring-1"]
    )
    assert len({m.address for m in machines}) == 11
    public = {m.name: m.public_ip for m in machines}
    # SFU/TURN are "public" on the bridge; data nodes have no public address.
    assert public["lab-sfu-1"] == str(next(m.address for m in machines if m.name == "lab-sfu-1"))
    assert public["lab-turn-1"] is not None
    assert public["lab-db-1"] is None and public["lab-redis-1"] is None


def test_node_outside_lab_subnet_is_refused(lab):
    stray = NodeSpec(
        name="lab-sfu-9", role="sfu", index=8, private_ip=ipaddress.IPv4Address("10.99.0.5"), public=True
    )
    with pytest.raises(ValueError, match=r"outside the lab subnet 10\.77\.0\.0/24"):
        plan_machines(lab, [stray])
    bridge = NodeSpec(
        name="lab-sfu-9", role="sfu", index=8, private_ip=ipaddress.IPv4Address("10.77.0.1"), public=True
    )
    with pytest.raises(ValueError, match="bridge address"):
        plan_machines(lab, [bridge])


def test_service_names_point_at_first_sfu_and_turn(lab, machines):
    names = service_names(lab, machines)
    by_name = {m.name: str(m.address) for m in machines}
    assert names == {"sfu.lab.visio.test": by_name["lab-sfu-1"], "turn.lab.visio.test": by_name["lab-turn-1"]}
    entries = hosts_entries(lab, machines)
    sfu_line = next(e for e in entries if e[0] == by_name["lab-sfu-1"])
    assert sfu_line == [by_name["lab-sfu-1"], "lab-sfu-1", "sfu.lab.visio.test"]
    text = hosts_file("lab-db-1", entries)
    # Its own name resolves to its lab address, not to Debian's 127.0.1.1.
    assert "127.0.1.1" not in text and f"{by_name['lab-db-1']}\tlab-db-1\n" in text
    assert f"{by_name['lab-turn-1']}\tlab-turn-1\tturn.lab.visio.test\n" in text
    assert text.count("\n") == 5 + len(machines)
    assert "127.0.1.1\tlonely\n" in hosts_file("lonely", entries)


def test_networkd_unit_fixed_address_no_link_local():
    unit = networkd_unit("10.77.0.74", 24, "10.77.0.1", ["192.0.2.53"])
    assert "Name=host0" in unit and "Address=10.77.0.74/24" in unit and "Gateway=10.77.0.1" in unit
    assert "DNS=192.0.2.53" in unit and "LinkLocalAddressing=no" in unit


def test_host_resolvers_skip_loopback_stubs():
    text = "# comment\nnameserver 127.0.0.53\nnameserver 10.255.255.53\nnameserver ::1\nsearch example\n"
    assert host_resolvers(text) == ["10.255.255.53"]
    assert host_resolvers("nameserver 127.0.0.1\n") == []


def test_nspawn_command_runs_without_host_systemd():
    cmd = nspawn_command("lab", "lab-sfu-1", "visio-lab0", Path("/var/lib/visio-lab/lab/machines/lab-sfu-1"))
    assert cmd[0] == "systemd-nspawn"
    for flag in (
        "--boot",
        "--register=no",
        "--keep-unit",
        "--network-bridge=visio-lab0",
        "--machine=visio-lab-lab-sfu-1",
        "--hostname=lab-sfu-1",
    ):
        assert flag in cmd
    assert cmd[-2:] == ["-D", "/var/lib/visio-lab/lab/machines/lab-sfu-1"]


def test_paths_are_per_stack():
    paths = LabPaths("lab")
    assert paths.machine_dir("lab-sfu-1") == Path("/var/lib/visio-lab/lab/machines/lab-sfu-1")
    assert paths.private_key == Path("/var/lib/visio-lab/lab/ssh/id_ed25519")
    assert LabPaths("other").stack_dir != paths.stack_dir
    assert paths.images == Path("/var/lib/visio-lab/images")


def test_nft_ruleset_only_lets_lab_reach_dns_and_mirror():
    table = nft_table("lab")
    rules = nft_ruleset(table, "visio-lab0", ipaddress.IPv4Network("10.77.0.0/24"))
    assert table == "visio_lab_lab" and nft_table("my-stack") == "visio_lab_my_stack"
    # Loading replaces the previous table atomically.
    assert rules.startswith(f"table inet {table}\ndelete table inet {table}\n")
    assert "th dport { 53, 80, 443 } accept" in rules
    assert 'iifname "visio-lab0" drop' in rules and 'oifname "visio-lab0" drop' in rules
    assert "ip saddr 10.77.0.0/24 ip daddr != 10.77.0.0/24" in rules and "masquerade" in rules
    # Machine-to-machine traffic (seen by the forward hook through br_netfilter) is accepted first.
    forward = rules.split("chain forward")[1]
    assert forward.index('iifname "visio-lab0" oifname "visio-lab0" accept') < forward.index("drop")


def test_disk_needed_counts_image_once():
    cached = disk_needed(6, image_cached=True, image_bytes=500 * 2**20)
    fresh = disk_needed(6, image_cached=False, image_bytes=500 * 2**20)
    assert fresh - cached == 500 * 2**20
    assert cached > 6 * 500 * 2**20


def test_each_machine_gets_its_own_cgroup():
    """Machines sharing one cgroup tree broke each other's units (status 219/CGROUP)."""
    names = {machine_cgroup("lab", n) for n in ("lab-sfu-1", "lab-sfu-2", "lab-redis-1")}
    names.add(machine_cgroup("interieur", "lab-sfu-1"))
    assert len(names) == 4
    assert all(name.startswith("visio-lab/") for name in names)


def test_in_own_cgroup_joins_every_hierarchy_then_execs_the_command(tmp_path):
    """Run for real: files stand in for the hierarchies' cgroup.procs; the PID the shell writes in
    each is the command's own PID (exec keeps it), so the machine and its recorded PID are one."""
    dirs = [tmp_path / "systemd/visio-lab/m", tmp_path / "unified/visio-lab/m"]
    for directory in dirs:
        directory.mkdir(parents=True)
    command = in_own_cgroup(dirs, ["sh", "-c", "echo $$"])
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    pid = result.stdout.strip()
    assert pid.isdigit()
    assert [(d / "cgroup.procs").read_text().strip() for d in dirs] == [pid, pid]


def test_in_own_cgroup_fails_when_a_cgroup_cannot_be_joined(tmp_path):
    command = in_own_cgroup([tmp_path / "missing"], ["sh", "-c", "echo started"])
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode != 0 and "started" not in result.stdout
