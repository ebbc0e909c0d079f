"""The acceptance stack's whole life on a real OpenStack, in order, read back through openstacksdk.

One module, one stack: preview with the policy pack, up, what the cloud holds (security groups rule by
rule, anti-affinity groups, volumes, addresses, tags), a no-op up and a refresh without drift, a
server replacement refused by Nova and the documented rebuild instead, one more SFU node that only
creates, the compute API stopped in the middle of an up and the recovery, a new image that reaches
the bastion only, then destroy. The steps run in the order of this file; a step whose prerequisite
failed fails at once naming it, and the module fixture destroys the stack whatever happened, so
nothing is left behind.

Timings (JUnit properties, read by scripts/bench.sh): preview_seconds, up_seconds, noop_up_seconds,
refresh_seconds, grow_seconds, fault_early_recovery_seconds (API down before the server request),
fault_recovery_seconds (API down while the server builds), rebuild_seconds (one server destroyed
and recreated the documented way), bastion_image_seconds (a new image rolled onto the bastion only),
destroy_seconds.
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from acceptance_ops import (
    PULUMI,
    ROOT,
    STACK,
    STACK_FILE,
    PulumiCli,
    Timings,
    cloud_ids,
    cloud_rule,
    comparable_state,
    declared_rules,
    differences,
    leftovers,
    nova_quotas,
    pending_operations,
    preview_steps,
    role_of_group_name,
)
from conftest import new_connection

from visio_infra.model import tagging
from visio_infra.model.config.base import ROLES
from visio_infra.model.config.stack import StackConfig
from visio_infra.model.security_rules import security_rules
from visio_infra.model.sizing.plan import plan
from visio_infra.model.sizing.roles import db_volume_gib
from visio_infra.model.stack_file import load_stack_file
from visio_infra.model.topology import PUBLIC_ROLES, TIER_OF_ROLE, NodeSpec, plan_nodes, server_group_number

Record = Callable[[str, object], None]

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
"""openstacksdk's notices about its own internals (RemovedInSDK50Warning...)."""

COMPUTE_API_UNIT = "nova-api"
"""The compute API's systemd unit inside the cloud machine (Debian's uwsgi-run nova-api)."""

UPDATES_ALLOWED_WHEN_GROWING = {
    "pulumi-python:dynamic/visio-pki:Certificates": "the new node gets its own key and certificate from "
    "the same CA, the other nodes keep theirs (no cloud resource)",
}
"""Existing resources a new SFU node may update in place, and why that destroys nothing."""


@dataclass
class Lifecycle:
    cli: PulumiCli
    conn: Any
    admin: Any
    config: StackConfig
    timings: Timings = field(default_factory=Timings)
    done: set[str] = field(default_factory=set)
    extra_sfu: int = 0
    """SFU nodes above the committed count that the stack currently has."""

    def require(self, *steps: str) -> None:
        missing = [step for step in steps if step not in self.done]
        if missing:
            pytest.fail(f"this check needs the step(s) {', '.join(missing)}, which did not succeed")

    @property
    def counts(self) -> dict[str, int]:
        counts = dict(plan(self.config).counts)
        counts["sfu"] += self.extra_sfu
        return counts

    @property
    def nodes(self) -> list[NodeSpec]:
        return plan_nodes(self.config, self.counts)

    def grown_config_file(self) -> Path:
        base = plan(self.config).counts
        nodes = {**base, "sfu": base["sfu"] + 1}
        grown = self.cli.private / "grown.yaml"
        return self.cli.write_config(self.cli.salt(), grown, sizing={"nodes": nodes})

    def config_file(self) -> Path:
        return self.grown_config_file() if self.extra_sfu else self.cli.config_file


@pytest.fixture(scope="module")
def life(cloud_env: dict[str, str], conn: Any, admin: Any) -> Iterator[Lifecycle]:
    private = ROOT / ".pulumi-state" / "acceptance-config"
    private.mkdir(parents=True, exist_ok=True, mode=0o700)
    cli = PulumiCli(private, cloud_env)
    lifecycle = Lifecycle(cli=cli, conn=conn, admin=admin, config=load_stack_file(STACK_FILE))
    _reset_quotas(lifecycle)
    if cli.stack_exists():
        _remove_stack_left_by_an_earlier_run(lifecycle)
    found = leftovers(conn)
    if found:
        pytest.fail(
            "the project is not empty before the acceptance stack is created:\n  " + "\n  ".join(found)
        )
    cli.init()
    cli.write_config(cli.salt())
    try:
        yield lifecycle
    finally:
        if "destroy" not in lifecycle.done and cli.stack_exists():
            print("[acceptance] destroying the stack after a failed step", flush=True)
            lifecycle.conn = new_connection()
            _resolve_pending_operations(lifecycle)
            cli.command("destroy", "--yes", "--skip-preview", config_file=lifecycle.config_file())
            cli.command("stack", "rm", "--yes", "--preserve-config", with_config=False)
            left = leftovers(lifecycle.conn)
            if left:
                pytest.fail("destroying after a failed step left:\n  " + "\n  ".join(left))
        _reset_quotas(lifecycle)


def _reset_quotas(life: Lifecycle) -> None:
    """The quotas the acceptance stack needs (`nova_quotas`, as conftest's `acceptance_quotas` sets
    them for the session), after the grow step raised them for one more node."""
    life.admin.compute.revert_quota_set(life.conn.current_project_id)
    life.admin.compute.update_quota_set(life.conn.current_project_id, **nova_quotas())


def _remove_stack_left_by_an_earlier_run(life: Lifecycle) -> None:
    salt = life.cli.salt()
    if not salt:
        pytest.fail(
            "a stack `acceptance` exists but its private config (with the passphrase salt) is gone from "
            f"{life.cli.config_file}: check the project is empty, then `pulumi stack rm --force acceptance`"
        )
    life.cli.write_config(salt)
    _resolve_pending_operations(life)
    done = life.cli.command("destroy", "--yes", "--skip-preview")
    assert done.rc == 0, "destroying the stack an earlier run left failed"
    assert life.cli.command("stack", "rm", "--yes", "--preserve-config", with_config=False).rc == 0


# --- the recovery of an interrupted update --------------------------------------------------------

def _named(listing: Callable[..., Any], **query: Any) -> Callable[[Any, str], list[Any]]:
    """Resources of the project with exactly this name (the listing filters by project itself)."""

    def find(conn: Any, name: str) -> list[Any]:
        return [r for r in listing(conn)(**query) if r.name == name]

    return find


NAMED_TYPES: dict[str, Callable[[Any, str], list[Any]]] = {
    "openstack:compute/instance:Instance": _named(lambda c: c.compute.servers),
    "openstack:networking/port:Port": _named(lambda c: c.network.ports),
    "openstack:blockstorage/volume:Volume": _named(lambda c: c.block_storage.volumes),
    "openstack:networking/secGroup:SecGroup": _named(lambda c: c.network.security_groups),
    "openstack:networking/network:Network": _named(lambda c: c.network.networks),
    "openstack:networking/subnet:Subnet": _named(lambda c: c.network.subnets),
    "openstack:networking/router:Router": _named(lambda c: c.network.routers),
    "openstack:compute/serverGroup:ServerGroup": _named(lambda c: c.compute.server_groups),
    "openstack:compute/keypair:Keypair": _named(lambda c: c.compute.keypairs),
}
"""How a pending create is found in the cloud: every such resource of the program has a unique name."""


def _resolve_pending_operations(life: Lifecycle) -> list[str]:
    """README, "When an `up` was interrupted": a pending create may be a real server, so it is never
    dropped blindly. Each one is looked up in the cloud by its unique name: found once, it is imported
    with its ID; found nowhere, it is cleared; anything else stops the test (an operator decides)."""
    pending = pending_operations(life.cli.export())
    if not pending:
        return []
    imports: list[str] = []
    imported, absent, undecided = [], [], []
    for op in pending:
        lookup = NAMED_TYPES.get(op["type"])
        name = op["inputs"].get("name")
        if op["operation"] != "creating" or lookup is None or not name:
            undecided.append(f"{op['operation']} {op['urn']}")
            continue
        found = list(lookup(life.conn, name))
        if len(found) == 1:
            imports += ["--import-pending-creates", op["urn"], "--import-pending-creates", found[0].id]
            imported.append(op["urn"])
        elif not found:
            absent.append(op["urn"])
        else:
            undecided.append(f"{op['urn']}: {len(found)} resources named {name}")
    assert not undecided, "pending operations an operator must resolve:\n  " + "\n  ".join(undecided)
    if imports:
        assert life.cli.command("refresh", "--yes", "--skip-preview", *imports,
                                config_file=life.config_file()).rc == 0
    if absent:
        # Every pending create left is absent from the cloud (checked just above): dropping them
        # orphans nothing.
        assert life.cli.command("refresh", "--yes", "--skip-preview", "--clear-pending-creates",
                                config_file=life.config_file()).rc == 0
    return [*(f"imported {urn}" for urn in imported), *(f"cleared {urn}" for urn in absent)]


# --- what the cloud must hold ----------------------------------------------------------------------


def _project(conn: Any) -> str:
    return str(conn.current_project_id)


def _servers(conn: Any) -> dict[str, Any]:
    return {s.name: s for s in conn.compute.servers(details=True)}


def check_state_matches_cloud(life: Lifecycle) -> None:
    problems = differences(comparable_state(life.cli.export()), cloud_ids(life.conn))
    assert not problems, "state and cloud differ:\n  " + "\n  ".join(problems)


def check_security_groups(life: Lifecycle) -> None:
    conn, slug = life.conn, life.config.ministry.slug
    groups = [g for g in conn.network.security_groups(project_id=_project(conn)) if g.name != "default"]
    role_of_group = {g.id: role_of_group_name(g.name, slug) for g in groups}
    assert sorted(str(r) for r in role_of_group.values()) == sorted(ROLES), [g.name for g in groups]
    expected = security_rules(life.config, life.counts)
    for group in groups:
        role = str(role_of_group[group.id])
        rules = list(conn.network.security_group_rules(security_group_id=group.id))
        actual = [cloud_rule(rule, role_of_group) for rule in rules]
        wanted = declared_rules(expected[role])
        assert sorted(map(str, actual)) == sorted(map(str, wanted)), (
            f"{group.name}: extra {sorted(map(str, set(actual) - wanted))}, "
            f"missing {sorted(map(str, wanted - set(actual)))}"
        )
        assert set(group.tags) == set(tagging.tags(slug, role)), group.name


def check_servers_and_anti_affinity(life: Lifecycle) -> None:
    conn, config = life.conn, life.config
    slug, limit = config.ministry.slug, config.cloud.server_group_max_members
    flavors = plan(config).flavors
    images = {i.id for i in conn.image.images(name=config.cloud.image)}
    servers = _servers(conn)
    assert set(servers) == {n.name for n in life.nodes}
    groups = {g.name: g for g in conn.compute.server_groups()}
    expected_groups: dict[str, set[str]] = {}
    for node in life.nodes:
        server = servers[node.name]
        assert server.status == "ACTIVE", (node.name, server.status, server.fault)
        assert server.flavor.get("original_name") == flavors[node.role], node.name
        assert server.availability_zone == node.zone, node.name
        assert server.key_name == f"visio-{slug}", node.name
        if config.cloud.boot_from == "image":
            assert server.image and server.image.get("id") in images, node.name
            assert not server.attached_volumes or node.role == "db", node.name
        number = server_group_number(node.index, limit)
        group_name = f"visio-{slug}-{node.role}" + ("" if number == 1 else f"-{number}")
        expected_groups.setdefault(group_name, set()).add(server.id)
    assert set(groups) == set(expected_groups)
    for name, members in expected_groups.items():
        group = groups[name]
        assert group.policy == "anti-affinity", (name, group.policy, group.policies)
        assert set(group.member_ids) == members, name
        hosts = [servers_by_id(servers)[m].host_id for m in members]
        assert len(set(hosts)) == len(hosts), f"{name}: two members share a hypervisor ({hosts})"
    counts = {role: sum(1 for n in life.nodes if n.role == role) for role in ROLES}
    assert counts == life.counts


def servers_by_id(servers: Mapping[str, Any]) -> dict[str, Any]:
    return {s.id: s for s in servers.values()}


def check_volumes(life: Lifecycle) -> None:
    conn, config, slug = life.conn, life.config, life.config.ministry.slug
    servers = _servers(conn)
    volumes = {v.name: v for v in conn.block_storage.volumes(details=True)}
    db_nodes = [n for n in life.nodes if n.role == "db"]
    expected = {f"{n.name}-data" for n in db_nodes}
    if config.cloud.boot_from == "volume":
        expected |= {f"{n.name}-boot" for n in life.nodes}
    assert set(volumes) == expected
    for volume in volumes.values():  # boot volumes hold each node's secrets: encrypted like the data
        assert volume.volume_type == config.cloud.encrypted_volume_type, volume.name
        assert volume.is_encrypted is True, volume.name
    for node in db_nodes:
        volume = volumes[f"{node.name}-data"]
        assert volume.volume_type == config.cloud.encrypted_volume_type, volume.name
        assert volume.is_encrypted is True, volume.name
        assert volume.size == db_volume_gib(config), volume.name
        assert volume.status == "in-use", (volume.name, volume.status)
        assert [a["server_id"] for a in volume.attachments] == [servers[node.name].id], volume.name
        assert volume.metadata == tagging.metadata(slug, "db", purpose="data", node=node.name), volume.name


def check_addresses(life: Lifecycle) -> None:
    conn, config, slug = life.conn, life.config, life.config.ministry.slug
    project = _project(conn)
    servers = _servers(conn)
    subnets = {s.name: s for s in conn.network.subnets(project_id=project)}
    network = config.network
    cidrs = {"edge": network.edge_cidr, "data": network.data_cidr, "admin": network.admin_cidr}
    assert {name: ipaddress.ip_network(s.cidr) for name, s in subnets.items()} == {
        f"visio-{slug}-{tier}": cidr for tier, cidr in cidrs.items()
    }
    ports = {p.name: p for p in conn.network.ports(project_id=project, device_owner="compute:nova")}
    assert set(ports) == {n.name for n in life.nodes}
    groups = {g.name: g.id for g in conn.network.security_groups(project_id=project)}
    for node in life.nodes:
        port = ports[node.name]
        subnet = subnets[f"visio-{slug}-{TIER_OF_ROLE[node.role]}"]
        assert port.fixed_ips == [{"subnet_id": subnet.id, "ip_address": str(node.private_ip)}], node.name
        assert port.device_id == servers[node.name].id, node.name
        assert port.security_group_ids == [groups[f"visio-{slug}-{node.role}"]], node.name
        assert set(port.tags) == set(tagging.tags(slug, node.role, node=node.name)), node.name
    external = conn.network.find_network(config.cloud.external_network, ignore_missing=False)
    fips = list(conn.network.ips(project_id=project))
    by_port = {p.id: name for name, p in ports.items()}
    assert sorted(by_port.get(f.port_id, f"port {f.port_id}") for f in fips) == sorted(
        n.name for n in life.nodes if n.role in PUBLIC_ROLES
    )
    roles = {n.name: n.role for n in life.nodes}
    for fip in fips:
        name = by_port[fip.port_id]
        assert roles[name] in PUBLIC_ROLES
        assert fip.floating_network_id == external.id, (name, fip.floating_network_id)
        assert fip.description == f"Public address of {name}", name
        assert set(fip.tags) == set(tagging.tags(slug, roles[name], node=name)), name
    routers = list(conn.network.routers(project_id=project))
    assert [r.name for r in routers] == [f"visio-{slug}"]
    assert routers[0].external_gateway_info["network_id"] == external.id
    interfaces = conn.network.ports(device_id=routers[0].id, device_owner="network:router_interface")
    assert sorted(p.fixed_ips[0]["subnet_id"] for p in interfaces) == sorted(s.id for s in subnets.values())


def check_tags_and_metadata(life: Lifecycle) -> None:
    conn, slug = life.conn, life.config.ministry.slug
    project = _project(conn)
    for network in conn.network.networks(project_id=project):
        assert set(network.tags) == set(tagging.tags(slug, "network")), network.name
    for router in conn.network.routers(project_id=project):
        assert set(router.tags) == set(tagging.tags(slug, "network")), router.name
    for subnet in conn.network.subnets(project_id=project):
        tier = subnet.name.rsplit("-", 1)[1]
        assert set(subnet.tags) == set(tagging.tags(slug, "network", tier=tier)), subnet.name
    servers = _servers(conn)
    for node in life.nodes:
        server = servers[node.name]
        assert server.metadata == tagging.metadata(slug, node.role, node=node.name), node.name
        assert set(server.tags) == set(tagging.tags(slug, node.role, node=node.name)), node.name
    keypair = conn.compute.get_keypair(f"visio-{slug}")
    assert keypair.public_key.split()[:2] == life.config.cloud.ssh_public_keys[0].split()[:2]


ALL_CHECKS = (check_security_groups, check_servers_and_anti_affinity, check_volumes, check_addresses,
              check_tags_and_metadata, check_state_matches_cloud)


# --- the lifecycle, in order -----------------------------------------------------------------------


def test_preview_with_the_policy_pack(life: Lifecycle, record_property: Record) -> None:
    done = life.cli.command("preview", "--policy-pack", "policy", "--diff=false")
    record_property("preview_seconds", life.timings.add("preview", done.seconds))
    assert done.rc == 0, "pulumi preview --policy-pack policy failed"
    assert "visio-security" in done.output, "the policy pack did not run"
    life.done.add("preview")


def test_up_creates_the_stack(life: Lifecycle, record_property: Record) -> None:
    done = life.cli.command("up", "--yes", "--skip-preview", "--diff=false")
    record_property("up_seconds", life.timings.add("up", done.seconds))
    assert done.rc == 0, "pulumi up failed"
    life.done.add("up")


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_the_cloud_holds_what_the_program_declares(life: Lifecycle, check: Callable[[Lifecycle], None]):
    life.require("up")
    check(life)


def test_a_second_up_changes_nothing(life: Lifecycle, record_property: Record) -> None:
    life.require("up")
    done = life.cli.command("up", "--yes", "--skip-preview", "--expect-no-changes", "--diff=false")
    record_property("noop_up_seconds", life.timings.add("noop_up", done.seconds))
    assert done.rc == 0, "a second pulumi up wanted changes"


def test_refresh_finds_no_drift(life: Lifecycle, record_property: Record) -> None:
    """The cloud reads back as the state holds it, and the program then still wants nothing: no value
    the cloud normalises (a CIDR, a rule field) can turn into a perpetual diff."""
    life.require("up")
    done = life.cli.command("refresh", "--yes", "--skip-preview", "--expect-no-changes", "--diff")
    record_property("refresh_seconds", life.timings.add("refresh", done.seconds))
    assert done.rc == 0, "pulumi refresh found drift"
    after = life.cli.command("preview", "--expect-no-changes", "--diff")
    assert after.rc == 0, "after a refresh, the program wants changes (a perpetual diff)"


def _urn(life: Lifecycle, type_: str, name: str) -> str:
    (urn,) = [r["urn"] for r in life.cli.export()["resources"]
              if r["type"] == type_ and r["urn"].endswith(f"::{name}")]
    return str(urn)


RELEASE_SECONDS = 300
"""Bound on Nova finishing a server's deletion after the API call returned (seconds under load)."""


def _wait_until_released(life: Lifecycle, node: str, port_id: str) -> float:
    """Wait until Nova no longer lists the deleted server and its port is unbound; returns the wait.
    The provider's delete returns once the server reads DELETED, but Nova finishes asynchronously:
    on a loaded cloud the server was still listed (status DELETED) and its port still bound, and an
    `up` then got 409 "port still in use". The documented rebuild waits the same way (README)."""
    started = time.monotonic()
    while True:
        servers = [(s.id, s.status) for s in life.conn.compute.servers(name=f"^{node}$")]
        device = life.conn.network.get_port(port_id).device_id
        if not servers and not device:
            return round(time.monotonic() - started, 1)
        assert time.monotonic() - started < RELEASE_SECONDS, (
            f"{node}: Nova still lists {servers} and port {port_id} is bound to {device!r} "
            f"{RELEASE_SECONDS} s after pulumi destroy returned"
        )
        time.sleep(2)


def test_a_server_is_never_replaced_in_place_and_is_rebuilt_the_documented_way(
    life: Lifecycle, record_property: Record
) -> None:
    """Every server sits on its own fixed-IP port, and Pulumi creates a replacement before deleting the
    original: Nova refuses a second server on a port in use (409), so any replacement, a changed boot
    source as much as `pulumi up --replace`, stops at its first server with nothing deleted. Rebuilding
    a node is therefore `pulumi destroy --target <server> --target-dependents`, then `pulumi up`
    (visio_infra/cloud/openstack/node.py): the node comes back on the same port, address and group."""
    life.require("up")
    node = f"{life.config.ministry.slug}-sfu-1"
    urn = _urn(life, "openstack:compute/instance:Instance", f"{node}-server")
    (server,) = life.conn.compute.servers(name=f"^{node}$")
    port = next(iter(life.conn.network.ports(device_id=server.id)))

    replace = ("--replace", urn, "--target", urn)
    refused = life.cli.command("up", "--yes", "--skip-preview", "--diff=false", *replace)
    assert refused.rc != 0, "a server was replaced on a port in use"
    assert f"Port {port.id} is still in use" in refused.output, refused.output[-3000:]
    assert [s.id for s in life.conn.compute.servers(name=f"^{node}$")] == [server.id]
    check_state_matches_cloud(life)

    removed = life.cli.command("destroy", "--yes", "--skip-preview", "--target", urn, "--target-dependents")
    assert removed.rc == 0, "pulumi destroy --target of one server failed"
    released = _wait_until_released(life, node, port.id)
    record_property("nova_release_seconds", released)
    rebuilt = life.cli.command("up", "--yes", "--skip-preview", "--diff=false")
    record_property("rebuild_seconds", life.timings.add("rebuild", removed.seconds + rebuilt.seconds))
    assert rebuilt.rc == 0, "pulumi up did not recreate the server"
    (again,) = life.conn.compute.servers(name=f"^{node}$")
    assert again.id != server.id and [p.id for p in life.conn.network.ports(device_id=again.id)] == [port.id]
    for check in ALL_CHECKS:
        check(life)


def _steps(life: Lifecycle, config_file: Path) -> list[dict[str, Any]]:
    done = life.cli.command("preview", "--json", config_file=config_file, split_stderr=True, echo=False)
    assert done.rc == 0, f"pulumi preview --json failed:\n{done.stderr[-3000:]}"
    return preview_steps(done.output)


def _changes(steps: list[dict[str, Any]]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for step in steps:
        if step["op"] != "same":
            found.setdefault(step["op"], []).append(step["urn"])
    return found


def _type(urn: str) -> str:
    return urn.split("::")[2].rsplit("$", 1)[-1]


def test_one_more_sfu_node_only_creates(life: Lifecycle, record_property: Record) -> None:
    life.require("up")
    slug = life.config.ministry.slug
    new_node = f"{slug}-sfu-{plan(life.config).counts['sfu'] + 1}"
    # The quotas hold the plan's servers exactly: one more node needs more, as a ministry would ask.
    life.admin.compute.update_quota_set(life.conn.current_project_id, **nova_quotas(extra_sfu=1))
    grown = life.grown_config_file()
    steps = _steps(life, grown)
    changes = _changes(steps)
    created = changes.pop("create", [])
    assert created and all(f"{new_node}-" in urn or urn.endswith(f"::{new_node}") for urn in created), created
    kinds = {_type(urn) for urn in created}
    assert {"openstack:compute/instance:Instance", "openstack:networking/port:Port",
            "openstack:networking/floatingIp:FloatingIp"} <= kinds, kinds
    updated = changes.pop("update", [])
    unexpected = [urn for urn in updated if _type(urn) not in UPDATES_ALLOWED_WHEN_GROWING]
    assert not unexpected, f"growing updates existing resources: {unexpected}"
    assert not changes, f"growing replaces or deletes existing resources: {changes}"

    done = life.cli.command("up", "--yes", "--skip-preview", "--diff=false", config_file=grown)
    record_property("grow_seconds", life.timings.add("grow", done.seconds))
    assert done.rc == 0, "pulumi up with one more SFU node failed"
    life.extra_sfu = 1
    for check in ALL_CHECKS:
        check(life)
    life.done.add("grow")


@dataclass(frozen=True)
class Outage:
    """When the compute API goes down during the `up` that adds the last SFU node back."""

    name: str
    description: str
    property: str
    """JUnit property of the recovery time."""
    server_created: bool
    """Whether Nova holds the new server when its API stops (the provider then knows its ID)."""


OUTAGES = (
    Outage("before-the-server", "as the update starts: the node's port and address are created, the "
           "server never is", "fault_early_recovery_seconds", server_created=False),
    Outage("while-the-server-builds", "once Nova has accepted the server, while the provider waits for it "
           "to become ACTIVE (its first poll comes 10 s after the request)", "fault_recovery_seconds",
           server_created=True),
)


def _up_with_compute_api_stopped(
    life: Lifecycle, config_file: Path, outage: Outage, server: str
) -> tuple[int, str]:
    """`pulumi up` during which the compute API is stopped at the outage's moment. Both moments are
    observed, not guessed: the update's first line, or the server appearing in Nova (read through the
    API until it stops), so no request is cut half-way (that would be a race of the test, not a fault
    of the program)."""
    argv = ["bash", "-c", PULUMI, "pulumi", "up", "--yes", "--skip-preview", "--diff=false",
            "--color", "never", "--stack", STACK, "--config-file", str(config_file)]
    started = threading.Event()
    stopped: list[str] = []

    def stop_the_api() -> None:
        started.wait(timeout=600)
        if outage.server_created:
            watcher = new_connection()
            deadline = time.monotonic() + 600
            while not list(watcher.compute.servers(name=f"^{server}$")) and time.monotonic() < deadline:
                time.sleep(0.3)
            watcher.close()
        began = time.monotonic()
        _cloud("systemctl", "stop", COMPUTE_API_UNIT)
        stopped.append(outage.name)
        print(f"[acceptance] {COMPUTE_API_UNIT} stopped ({outage.name}) in {time.monotonic() - began:.1f} s",
              flush=True)

    process = subprocess.Popen(argv, cwd=ROOT, env=life.cli.env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    injector = threading.Thread(target=stop_the_api, daemon=True)
    injector.start()
    lines = []
    for line in process.stdout:
        sys.stdout.write(line)
        lines.append(line)
        if line.startswith("Updating ("):
            started.set()
    started.set()
    rc = process.wait(timeout=1800)
    injector.join(timeout=700)
    assert stopped, "the compute API was never stopped"
    return rc, "".join(lines)


def _cloud(*command: str) -> str:
    done = subprocess.run(["bash", "scripts/openstack-cloud.sh", "exec", *command], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"{' '.join(command)} in the cloud failed: {done.stdout}{done.stderr}"
    return done.stdout


def _wait_for_compute_api(timeout: float = 300) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        conn = new_connection()
        try:
            list(conn.compute.flavors())
            return conn
        except Exception as exc:  # the API is still starting
            conn.close()
            if time.monotonic() > deadline:
                raise AssertionError(f"the compute API is not back after {timeout:.0f} s: {exc}") from exc
            time.sleep(2)


@pytest.mark.parametrize("outage", OUTAGES, ids=lambda o: o.name)
def test_compute_api_outage_mid_up_then_converges(life: Lifecycle, outage: Outage, record_property: Record):
    """The last SFU node is removed, then added back by an `up` during which Nova's API goes down.
    The up fails naming the API it could not reach, and nothing else (no traceback); with the API
    back, the README's recovery (pending creates imported or cleared after a look at the cloud) and
    one `up` converge, and the cloud holds exactly what the state holds, the node's server once."""
    life.require("grow")
    slug = life.config.ministry.slug
    last = f"{slug}-sfu-{life.counts['sfu']}"
    steps = _changes(_steps(life, life.cli.config_file))
    deleted = steps.pop("delete", [])
    assert deleted and all(f"{last}-" in urn or urn.endswith(f"::{last}") for urn in deleted), deleted
    assert all(_type(urn) in UPDATES_ALLOWED_WHEN_GROWING for urn in steps.pop("update", [])), steps
    assert not steps, f"removing the last SFU node changes other resources: {steps}"
    assert life.cli.command("up", "--yes", "--skip-preview", "--diff=false").rc == 0
    life.extra_sfu = 0

    grown = life.grown_config_file()
    try:
        rc, output = _up_with_compute_api_stopped(life, grown, outage, server=last)
        assert rc != 0, "pulumi up succeeded although the compute API was stopped"
        diagnostics = output[output.index("Diagnostics:"):]
        assert f"{last}-server" in diagnostics, diagnostics
        # The compute endpoint and why: "connection refused" (nothing listens) or "EOF" (it went away
        # while answering), after the provider's retries.
        assert ":8774/" in diagnostics and "OpenStack connection error" in diagnostics, diagnostics
        assert "Traceback" not in output and "KeyboardInterrupt" not in output, diagnostics
    finally:
        _cloud("systemctl", "start", COMPUTE_API_UNIT)
    started = time.monotonic()
    life.conn = _wait_for_compute_api()
    requested = len(list(life.conn.compute.servers(name=f"^{last}$")))
    assert requested == int(outage.server_created), (
        f"{requested} server(s) {last} after an outage {outage.description}"
    )
    life.extra_sfu = 1
    resolved = _resolve_pending_operations(life)
    print(f"[acceptance] pending operations resolved: {resolved or 'none'}", flush=True)
    done = life.cli.command("up", "--yes", "--skip-preview", "--diff=false", config_file=grown)
    record_property(outage.property, life.timings.add(outage.property.removesuffix("_seconds"),
                                                      time.monotonic() - started))
    assert done.rc == 0, "pulumi up did not converge once the compute API was back"
    assert life.cli.command("preview", "--expect-no-changes", "--diff", config_file=grown).rc == 0
    assert len(list(life.conn.compute.servers(name=f"^{last}$"))) == 1
    for check in ALL_CHECKS:
        check(life)


def test_a_new_image_reaches_the_bastion_only(life: Lifecycle, record_property: Record) -> None:
    """A newer image of the stack's name reaches the bastion (stateless) only; every other server keeps
    its image (README, "What a `pulumi up` never replaces"). Booting from the local disk, the provider
    moves a server to a new image with Nova's rebuild (same server, port and address, root disk
    rewritten), so that is what the bastion gets here. The image is removed afterwards (the other
    suites expect one image of that name)."""
    life.require("up")
    conn, config = life.conn, life.config
    slug = config.ministry.slug
    before = {s.name: s for s in conn.compute.servers(details=True)}
    newer = conn.image.create_image(
        name=config.cloud.image, data=b"\0" * 1024 * 1024, disk_format="raw", container_format="bare",
        visibility="private",
    )
    try:
        conn.image.wait_for_status(newer, "active", wait=300)
        steps = [s for s in _steps(life, life.config_file()) if s["op"] != "same"]
        bastion = f"{slug}-bastion-1"
        assert {s["urn"].rsplit("::", 1)[1] for s in steps} == {f"{bastion}-server"}, steps
        assert [s["op"] for s in steps] == ["update"], steps
        changed = set(steps[0].get("diffReasons") or []) | set(steps[0].get("detailedDiff") or {})
        assert changed == {"imageId"}, changed
        config_file = life.config_file()
        done = life.cli.command("up", "--yes", "--skip-preview", "--diff=false", config_file=config_file)
        record_property("bastion_image_seconds", life.timings.add("bastion_image", done.seconds))
        assert done.rc == 0, "pulumi up could not move the bastion to the new image"
        after = {s.name: s for s in conn.compute.servers(details=True)}
        assert after[bastion].id == before[bastion].id and after[bastion].image["id"] == newer.id
        assert after[bastion].addresses == before[bastion].addresses
        assert {n: s.id for n, s in after.items() if n != bastion} == {
            n: s.id for n, s in before.items() if n != bastion
        }
        assert all(s.image["id"] != newer.id for n, s in after.items() if n != bastion)
        for check in ALL_CHECKS:
            check(life)
    finally:
        conn.image.delete_image(newer, ignore_missing=True)


def test_destroy_leaves_nothing(life: Lifecycle, record_property: Record) -> None:
    life.require("up")
    done = life.cli.command("destroy", "--yes", "--skip-preview", config_file=life.config_file())
    record_property("destroy_seconds", life.timings.add("destroy", done.seconds))
    assert done.rc == 0, "pulumi destroy failed"
    life.conn = new_connection()
    found = leftovers(life.conn)
    assert not found, "pulumi destroy left:\n  " + "\n  ".join(found)
    life.done.add("destroy")
    assert life.cli.command("stack", "rm", "--yes", "--preserve-config", with_config=False).rc == 0
    # `pulumi stack rm` deletes the stack's config file unless told not to: the committed one stays.
    assert STACK_FILE.is_file(), f"{STACK_FILE} was removed"
