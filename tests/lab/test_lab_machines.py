"""Lab providers against the real host: machines boot with their identity, a dead machine is noticed
and recreated, a lost state is adopted, a destroy leaves nothing, errors are plain.

These call the dynamic providers' create/read/diff/delete directly (what `pulumi up/refresh/destroy`
call), on the lab bridge visio-lab0: when the lab stack is deployed the test machines (stack
`labtest`, addresses .240+ outside every planned tier) join its bridge; otherwise the test creates
and removes the bridge itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.lab.conftest import host_leftovers
from visio_infra.cloud.lab import base_image
from visio_infra.cloud.lab.bridge import NetworkProvider, running_machines
from visio_infra.cloud.lab.host import LabError, pid_alive
from visio_infra.cloud.lab.machine import MachineProvider
from visio_infra.cloud.lab.plan import BRIDGE_ALIAS_PREFIX, LAB_ROOT, LabPaths
from visio_infra.cloud.lab.ssh import KeyPairProvider, ssh_command
from visio_infra.model.apt_sources import host_mirrors

pytestmark = pytest.mark.labhost

STACK = "labtest"
BRIDGE = "visio-lab0"
SUBNET = "10.77.0.0/24"
ROOT = str(LAB_ROOT)
MIRRORS = host_mirrors()
"""What the lab stack's machines use: the mirrors of this host's apt sources."""
ADDRESSES = {"labtest-a": "10.77.0.240", "labtest-b": "10.77.0.241"}
REPO = Path(__file__).resolve().parents[2]


def _bridge_owner() -> str | None:
    links = json.loads(
        subprocess.run(
            ["ip", "-j", "-d", "link", "show", "dev", BRIDGE], capture_output=True, text=True, check=False
        ).stdout
        or "[]"
    )
    if not links:
        return None
    alias = links[0].get("ifalias", "")
    if not alias.startswith(BRIDGE_ALIAS_PREFIX):
        pytest.fail(f"{BRIDGE} exists and is not a lab bridge; remove it (ip link del {BRIDGE})")
    return alias.removeprefix(BRIDGE_ALIAS_PREFIX)


def _resolvers() -> list[str]:
    from visio_infra.cloud.lab.plan import host_resolvers

    return host_resolvers(Path("/etc/resolv.conf").read_text())


@pytest.fixture(scope="module")
def network():
    """(owner stack, network outputs or None): ours only when the lab stack is not deployed."""
    owner = _bridge_owner()
    if owner is not None and owner != STACK:
        yield owner, None
        return
    props = {"stack": STACK, "bridge": BRIDGE, "subnet": SUBNET, "root": ROOT, "machines": list(ADDRESSES)}
    outs = NetworkProvider().create(props).outs
    yield STACK, outs
    NetworkProvider().delete(BRIDGE, outs)


@pytest.fixture(scope="module")
def keys():
    outs = KeyPairProvider().create({"stack": STACK, "root": ROOT}).outs
    yield outs
    KeyPairProvider().delete(f"{STACK}-ssh", outs)


@pytest.fixture(scope="module")
def image() -> str:
    path, seconds = base_image.build(base_image.recipe(MIRRORS), Path(ROOT))
    print(f"base image {path} ({f'built in {seconds:.0f} s' if seconds else 'cached'})")
    return str(path)


def _props(name: str, image: str, keys: dict) -> dict:
    entries = [[address, host] for host, address in ADDRESSES.items()]
    return {
        "stack": STACK,
        "root": ROOT,
        "name": name,
        "role": "sfu",
        "address": ADDRESSES[name],
        "prefixlen": 24,
        "gateway": "10.77.0.1",
        "bridge": BRIDGE,
        "image": image,
        "public_key": keys["public_key"],
        "hosts": entries,
        "dns": _resolvers(),
    }


def _ssh(name: str, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ssh_command(LabPaths(STACK), ADDRESSES[name], *command),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def machines(network, keys, image):
    started = time.monotonic()
    outs = {name: MachineProvider().create(_props(name, image, keys)).outs for name in ADDRESSES}
    print(f"{len(outs)} machines up with SSH in {time.monotonic() - started:.1f} s")
    yield outs
    for name, state in outs.items():
        MachineProvider().delete(name, state)


def test_machines_boot_with_their_own_identity(machines):
    ids = set()
    for name, state in machines.items():
        result = _ssh(
            name, "hostname; ip -4 -br addr show host0; cat /etc/machine-id; getent hosts labtest-a"
        )
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0] == name
        assert f"{ADDRESSES[name]}/24" in lines[1]
        ids.add(lines[2])
        assert lines[3].split()[0] == ADDRESSES["labtest-a"]
        assert state["running"] and state["host_key"].startswith("ssh-ed25519 ")
        known = LabPaths(STACK).known_hosts.read_text()
        assert f"{ADDRESSES[name]} {state['host_key']}" in known
    assert len(ids) == len(machines)  # machine-id is per machine, not copied from the image


def test_machines_reach_each_other_and_the_mirror(machines):
    mirror = urlsplit(MIRRORS.package)
    port = mirror.port or (443 if mirror.scheme == "https" else 80)
    result = _ssh(
        "labtest-a",
        f"ping -c1 -W3 {ADDRESSES['labtest-b']} >/dev/null && python3 -c "
        f'\'import socket; socket.create_connection(("{mirror.hostname}", {port}), 10); print("mirror ok")\'',
    )
    assert result.returncode == 0 and "mirror ok" in result.stdout, result.stderr
    # Keys only: no password login for root.
    result = _ssh("labtest-a", "sshd -T | grep -Ei '^(passwordauthentication|permitrootlogin) '")
    assert (
        "passwordauthentication no" in result.stdout and "permitrootlogin without-password" in result.stdout
    )


def test_refresh_notices_a_dead_machine_and_replacement_recreates_it(machines, image, keys):
    provider = MachineProvider()
    state = machines["labtest-b"]
    assert provider.read("labtest-b", state).outs["running"] is True
    os.kill(state["pid"], signal.SIGKILL)
    time.sleep(1)
    refreshed = provider.read("labtest-b", state).outs
    assert refreshed["running"] is False
    diff = provider.diff("labtest-b", refreshed, _props("labtest-b", image, keys))
    assert diff.changes and "running" in diff.replaces and diff.delete_before_replace
    started = time.monotonic()
    provider.delete("labtest-b", refreshed)
    new = provider.create(_props("labtest-b", image, keys)).outs
    print(f"dead machine replaced in {time.monotonic() - started:.1f} s")
    machines["labtest-b"] = new
    assert new["pid"] != state["pid"] and provider.read("labtest-b", new).outs["running"] is True
    assert _ssh("labtest-b", "true").returncode == 0
    # Nothing of the killed container survived (its orphaned init was killed by delete()).
    assert list(running_machines(LabPaths(STACK))).count("labtest-b") == 1


def test_create_adopts_a_leftover_of_the_same_machine(machines, image, keys):
    """State lost after an interrupted `up`: creating the machine again replaces the running leftover."""
    old = machines["labtest-a"]
    new = MachineProvider().create(_props("labtest-a", image, keys)).outs
    machines["labtest-a"] = new
    assert not pid_alive(old["pid"]) and pid_alive(new["pid"])
    assert running_machines(LabPaths(STACK))["labtest-a"] == new["pid"]
    assert _ssh("labtest-a", "true").returncode == 0


def test_machines_the_stack_no_longer_plans_are_reported(machines, network):
    from visio_infra.cloud.lab import preflight
    from visio_infra.cloud.lab.bridge import ensure_network

    running = set(running_machines(LabPaths(STACK)))
    assert running == set(ADDRESSES)
    (message,) = preflight.stale_problems(STACK, running - {"labtest-a"})
    assert "labtest-b" in message and "scripts/lab-clean.sh labtest" in message
    owner, _ = network
    if owner == STACK:
        with pytest.raises(LabError, match=r"scripts/lab-clean\.sh labtest"):
            ensure_network(
                STACK,
                BRIDGE,
                __import__("ipaddress").IPv4Network(SUBNET),
                LabPaths(STACK),
                planned=["labtest-a"],
            )


def test_bridge_taken_is_a_plain_error(network):
    owner, _ = network
    props = {"stack": "labother", "bridge": BRIDGE, "subnet": SUBNET, "root": ROOT, "machines": []}
    with pytest.raises(LabError, match=f"{BRIDGE} belongs to another lab stack \\({owner}\\)"):
        NetworkProvider().create(props)


def test_not_root_is_a_plain_error():
    code = (
        "import ipaddress; from visio_infra.cloud.lab import preflight\n"
        "try:\n preflight.check_host('visio-lab0', ipaddress.IPv4Network('10.77.0.0/24'), 'lab')\n"
        "except Exception as e: print(e)"
    )
    result = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            str(REPO / ".venv/bin/python"),
            "-c",
            code,
        ],
        capture_output=True,
        text=True,
        cwd="/",
        check=False,
    )
    assert "must run as root" in result.stdout, result.stderr


def test_delete_leaves_nothing(machines, keys, network):
    started = time.monotonic()
    for name in list(machines):
        MachineProvider().delete(name, machines.pop(name))
    print(f"machines deleted in {time.monotonic() - started:.1f} s")
    KeyPairProvider().delete(f"{STACK}-ssh", keys)
    owner, outs = network
    if owner == STACK:
        NetworkProvider().delete(BRIDGE, outs)
    assert host_leftovers(STACK) == []


def test_lab_clean_removes_a_stale_lab(image):
    """A lab whose state is gone: lab-clean.sh removes every process, interface, rule and directory."""
    owner = _bridge_owner()
    if owner is None:
        NetworkProvider().create(
            {"stack": STACK, "bridge": BRIDGE, "subnet": SUBNET, "root": ROOT, "machines": []}
        )
    keys = KeyPairProvider().create({"stack": STACK, "root": ROOT}).outs
    MachineProvider().create(_props("labtest-a", image, keys))
    assert host_leftovers(STACK)
    result = subprocess.run(
        ["bash", str(REPO / "scripts/lab-clean.sh"), STACK],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert host_leftovers(STACK) == []
    if owner is not None:  # the deployed lab's bridge is not ours to remove
        assert _bridge_owner() == owner
