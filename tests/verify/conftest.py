"""Fixtures of the verification suite: the stack's outputs, its config, and one testinfra host per node.

`visio verify <stack>` (visio_infra/commands/verify.py) runs this suite with two environment variables:
VISIO_STACK (the stack name, whose stacks/Pulumi.<stack>.yaml gives the expected values) and
VISIO_VERIFY_OUTPUTS (path of a 0600 JSON file with `pulumi stack output --show-secrets`). Secrets are
read from that file only; they never appear on a command line or in a test id.

Tests take a `node` argument to run once per host of the roles listed in their module's `ROLES`.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from visio_infra.hosts.ssh import node_address, write_ssh_config
from visio_infra.model.config.stack import StackConfig
from visio_infra.model.stack_file import load_stack_file, stack_file

from . import expectations

OUTPUTS_ENV = "VISIO_VERIFY_OUTPUTS"
HARDENING_ENV = "VISIO_VERIFY_HARDENING"
"""Set to 1 by `visio verify --hardening`: the long scans (testssl.sh) run too."""
STACK_ENV = "VISIO_STACK"
WORKDIR_ENV = "VISIO_VERIFY_WORKDIR"

if not os.environ.get(OUTPUTS_ENV):
    # Without a deployed stack there is nothing to verify: these modules run through `visio verify`.
    collect_ignore_glob = ["test_*.py"]


@dataclass
class Node:
    """One deployed host and a testinfra handle on it."""

    name: str
    role: str
    private_ip: str
    public_ip: str
    host: Any

    def __str__(self) -> str:
        return self.name


def _load_outputs() -> dict[str, Any]:
    path = Path(os.environ[OUTPUTS_ENV])
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise pytest.UsageError(f"{OUTPUTS_ENV} file {path} is mode {mode:04o}; it holds secrets, want 0600")
    return dict(json.loads(path.read_text(encoding="utf-8")))


_OUTPUTS: dict[str, Any] | None = None


def stack_outputs() -> dict[str, Any]:
    global _OUTPUTS
    if _OUTPUTS is None:
        _OUTPUTS = _load_outputs()
    return _OUTPUTS


def inventory_hosts(roles: tuple[str, ...] | None = None) -> list[tuple[str, dict[str, Any]]]:
    groups = stack_outputs()["inventory"]["groups"]
    return [
        (role, host)
        for role, hosts in groups.items()
        if roles is None or role in roles
        for host in hosts or []
    ]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hardening: long scans run only by `visio verify --hardening`")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without --hardening the long scans are deselected (pytest reports them as such), not skipped."""
    if os.environ.get(HARDENING_ENV) == "1":
        return
    drop = [item for item in items if item.get_closest_marker("hardening")]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = [item for item in items if not item.get_closest_marker("hardening")]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "node_spec" not in metafunc.fixturenames:
        return
    roles = getattr(metafunc.module, "ROLES", None)
    hosts = inventory_hosts(roles)
    if not hosts:
        # A role the suite checks but the stack lacks is a failure, not a silently skipped module.
        metafunc.parametrize("node_spec", [(roles, None)], ids=["no-node"], scope="module")
        return
    metafunc.parametrize(
        "node_spec", [(role, host) for role, host in hosts], ids=[host["name"] for _, host in hosts],
        scope="module",
    )


@pytest.fixture(scope="session")
def outputs() -> dict[str, Any]:
    return stack_outputs()


@pytest.fixture(scope="session")
def stack() -> str:
    return os.environ.get(STACK_ENV, "lab")


@pytest.fixture(scope="session")
def config(stack: str) -> StackConfig:
    return load_stack_file(stack_file(stack))


@pytest.fixture(scope="session")
def inventory(outputs: dict[str, Any]) -> dict[str, Any]:
    return dict(outputs["inventory"])


@pytest.fixture(scope="session")
def facts() -> dict[str, Any]:
    return expectations.role_facts()


@pytest.fixture(scope="session")
def group_vars(config: StackConfig, inventory: dict[str, Any], outputs: dict[str, Any]) -> dict[str, Any]:
    """The non-secret variables a converge gives each inventory group (the wrapper's own function, fed
    with the stack's outputs), so expectations follow what the roles were asked to do."""
    from visio_infra.commands.configure import certificates_from_outputs
    from visio_infra.hosts.ansible_vars import group_vars as wrapper_group_vars
    from visio_infra.model.apt_sources import with_node_mirrors

    # The LiveKit binary's origin only matters to an install; the verification reads the running one.
    # The mirrors as a converge fills them in (the lab's: this host's apt sources).
    return wrapper_group_vars(with_node_mirrors(config), inventory, certificates_from_outputs(outputs),
                              livekit_binary="(read from the running process)")


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    given = os.environ.get(WORKDIR_ENV)
    if given:
        yield Path(given)
        return
    with tempfile.TemporaryDirectory(prefix="visio-verify-") as tmp:
        os.chmod(tmp, 0o700)
        yield Path(tmp)


@pytest.fixture(scope="session")
def ca_file(outputs: dict[str, Any], workdir: Path) -> str:
    """The stack CA (PEM) as a file, to verify TLS on 443/5349 and PostgreSQL."""
    pem = outputs.get("ca_certificate")
    assert pem, "the stack has no ca_certificate output"
    path = workdir / "stack-ca.pem"
    # The work directory is shared by the parallel workers: each one writes the file aside and
    # renames it, so no worker ever reads a file another one has just truncated (an empty CA file
    # fails TLS with "no certificate or crl found").
    aside = workdir / f".stack-ca.pem.{os.getpid()}"
    aside.write_text(str(pem), encoding="ascii")
    os.replace(aside, path)
    return str(path)


@pytest.fixture(scope="session")
def ssh_config(inventory: dict[str, Any], workdir: Path) -> str:
    """An ssh_config for every node (visio_infra/hosts/ssh.py): stack key, strict host keys, one
    multiplexed connection per host, and the bastion as ProxyJump in production."""
    return str(write_ssh_config(inventory.get("connection") or {}, workdir, f"ssh_config.{os.getpid()}",
                                control_name=f"cm{os.getpid()}"))


def _address(host: dict[str, Any], inventory: dict[str, Any]) -> str:
    return node_address(host, inventory.get("connection") or {})


@pytest.fixture(scope="module")
def node(node_spec: tuple[str, dict[str, Any]], inventory: dict[str, Any], ssh_config: str) -> Node:
    import testinfra

    role, host = node_spec
    if host is None:
        pytest.fail(f"the stack's inventory has no node of role {role}")
    user = (inventory.get("connection") or {}).get("user", "root")
    handle = testinfra.get_host(
        f"ssh://{user}@{_address(host, inventory)}", ssh_config=ssh_config, controlpersist=0,
        sudo=user != "root",
    )
    return Node(host["name"], role, str(host["private_ip"]), str(host.get("public_ip") or host["private_ip"]),
                handle)


@pytest.fixture(scope="session")
def hosts_of(inventory: dict[str, Any], ssh_config: str):
    """testinfra handles for every node of a role (for checks run *from* one node *to* another)."""
    import testinfra

    user = (inventory.get("connection") or {}).get("user", "root")

    def of(role: str) -> list[Node]:
        return [
            Node(h["name"], role, str(h["private_ip"]), str(h.get("public_ip") or h["private_ip"]),
                 testinfra.get_host(f"ssh://{user}@{_address(h, inventory)}", ssh_config=ssh_config,
                                    controlpersist=0, sudo=user != "root"))
            for h in inventory["groups"].get(role) or []
        ]

    return of
