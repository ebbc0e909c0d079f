"""Preflight messages: each problem says what is wrong and what to do."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from visio_infra.cloud.lab import preflight
from visio_infra.cloud.lab.host import LabError

SUBNET = ipaddress.IPv4Network("10.77.0.0/24")


def test_not_root():
    assert preflight.root_problems(0) == []
    (message,) = preflight.root_problems(1000)
    assert "must run as root" in message and "sudo" in message


def test_missing_tools_name_the_debian_packages():
    (message,) = preflight.tool_problems(["systemd-nspawn", "debootstrap", "ssh-keygen"])
    assert "apt-get install -y debootstrap openssh-client systemd-container" in message
    assert preflight.tool_problems([]) == []


def test_kernel_features():
    messages = preflight.kernel_problems(
        {"bridge": False, "veth": True, "nftables": False, "cgroups": True, "ip_forward": True}
    )
    assert len(messages) == 2
    assert "modprobe bridge" in messages[0] and "modprobe nf_tables" in messages[1]


def _link(name, alias="", kind="bridge"):
    return {"ifname": name, "ifalias": alias, "linkinfo": {"info_kind": kind}}


def _addr(name, local, prefix):
    return {"ifname": name, "addr_info": [{"family": "inet", "local": local, "prefixlen": prefix}]}


def test_bridge_name_taken_by_something_else():
    (message,) = preflight.network_problems(
        "visio-lab0", SUBNET, "lab", [_link("visio-lab0", kind="dummy")], [], []
    )
    assert "visio-lab0 already exists (type dummy)" in message
    assert "ip link del visio-lab0" in message and "visio:cloud.bridge" in message


def test_bridge_of_another_stack():
    (message,) = preflight.network_problems(
        "visio-lab0", SUBNET, "lab", [_link("visio-lab0", "visio-lab:ci")], [], []
    )
    assert "another lab stack (ci)" in message
    assert "`scripts/lab-clean.sh ci`" in message


def test_our_stale_bridge_is_adopted_not_reported():
    links = [_link("visio-lab0", "visio-lab:lab")]
    addresses = [_addr("visio-lab0", "10.77.0.1", 24)]
    routes = [{"dst": "10.77.0.0/24", "dev": "visio-lab0"}]
    assert preflight.network_problems("visio-lab0", SUBNET, "lab", links, addresses, routes) == []


def test_subnet_taken_names_the_interface():
    addresses = [_addr("eth0", "192.0.2.2", 24), _addr("vrtest0", "10.77.0.129", 25)]
    routes = [{"dst": "10.77.0.128/25", "dev": "vrtest0"}]
    problems = preflight.network_problems("visio-lab0", SUBNET, "lab", [], addresses, routes)
    assert len(problems) == 1  # the route of the same interface is not reported twice
    assert "already used by interface vrtest0 (10.77.0.129/25)" in problems[0]
    assert "visio:cloud.subnet" in problems[0]


def test_route_overlap_without_address():
    routes = [{"dst": "10.77.0.0/16", "dev": "wg0"}, {"dst": "default", "dev": "eth0"}]
    (message,) = preflight.network_problems("visio-lab0", SUBNET, "lab", [], [], routes)
    assert "overlaps the route 10.77.0.0/16 via wg0" in message


def test_disk_space_says_how_much():
    (message,) = preflight.disk_problems(Path("/var/lib/visio-lab"), 1 * 2**30, 9 * 2**30)
    assert "9.0 GiB needed, 1.0 GiB free; free 8.0 GiB" in message
    assert preflight.disk_problems(Path("/x"), 10, 9) == []


def test_stale_machines_report_the_clean_command():
    (message,) = preflight.stale_problems("lab", ["lab-sfu-3"])
    assert "lab-sfu-3" in message and "scripts/lab-clean.sh lab" in message
    assert preflight.stale_problems("lab", []) == []


def test_raise_if_lists_every_problem():
    with pytest.raises(LabError) as error:
        preflight.raise_if(["first", "second"])
    assert "  - first\n  - second" in str(error.value)
    preflight.raise_if([])


def test_a_full_disk_during_a_command_says_what_to_do(monkeypatch):
    import subprocess

    from visio_infra.cloud.lab import host

    def full(*_args, **_kwargs):
        error = "cp: error writing 'x/usr/lib/a.so': No space left on device"
        return subprocess.CompletedProcess([], 1, "", error)

    monkeypatch.setattr(subprocess, "run", full)
    with pytest.raises(LabError) as caught:
        host.run(["cp", "-a", "a", "b"], "copy the base image")
    message = str(caught.value)
    assert "No space left on device" in message and "scripts/lab-clean.sh --old-images" in message
    assert host.failure_hint("permission denied") == ""
