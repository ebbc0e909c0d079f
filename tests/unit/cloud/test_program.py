"""The real program (`build_deployment`) under Pulumi mocks, for every OpenStack stack in stacks/.

Each stack file is fed to the program the way the Pulumi CLI does (PULUMI_CONFIG), the program runs
once per stack (cached for the module), and every test checks what it registered against the pure
models it must follow: sizing, topology, security rules, tags, cloud-init and the output contract.
`sample` is an extra in-test stack covering variants the ministry stacks do not use (UDP mux port,
an IPv6 admin network).
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pulumi
import pytest
from pulumi_mocks import (
    LAB_STACKS,
    MINISTRY_STACKS,
    OPENSTACK_STACKS,
    STACKS_DIR,
    ProgramRun,
    raw_of,
    run_program,
    stack_run,
)

from visio_infra.cloud.generated_secret import KIND as GENERATED_SECRET_KIND
from visio_infra.cloud.openstack import cloud_init
from visio_infra.cloud.outputs import OUTPUT_NAMES, SECRET_OUTPUTS
from visio_infra.model import tagging
from visio_infra.model.config.base import ROLES
from visio_infra.model.config.stack import StackConfig
from visio_infra.model.pricing import BOOT_VOLUME_GIB
from visio_infra.model.security_rules import security_rules, world_open_sensitive
from visio_infra.model.sizing.plan import plan
from visio_infra.model.sizing.roles import db_volume_gib
from visio_infra.model.sovereignty import find_foreign_endpoints
from visio_infra.model.stack_file import parse_stack_config
from visio_infra.model.topology import PUBLIC_ROLES, plan_nodes

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
"""pulumi_openstack warns about its own deprecated v2 aliases when imported."""

SECRET_SIG = "4dabf18193072939515e22adb298388d"
"""How a Pulumi secret looks in deserialized inputs: {SECRET_SIG: <marker>, "value": ...}."""

T_INSTANCE = "openstack:compute/instance:Instance"
T_VOLUME = "openstack:blockstorage/volume:Volume"
T_ATTACH = "openstack:compute/volumeAttach:VolumeAttach"
T_PORT = "openstack:networking/port:Port"
T_FIP = "openstack:networking/floatingIp:FloatingIp"
T_GROUP = "openstack:networking/secGroup:SecGroup"
T_RULE = "openstack:networking/secGroupRule:SecGroupRule"
T_SERVER_GROUP = "openstack:compute/serverGroup:ServerGroup"
T_SUBNET = "openstack:networking/subnet:Subnet"
T_PROVIDER = "pulumi:providers:openstack"
DYNAMIC = "pulumi-python:dynamic:Resource"
TAGGED_TYPES = {
    "openstack:networking/network:Network", "openstack:networking/router:Router", T_SUBNET, T_GROUP,
    T_PORT, T_FIP,
}
METADATA_TYPES = {T_INSTANCE, T_VOLUME}


def _raw(stack: str) -> dict[str, Any]:
    return raw_of(stack)


def _run(stack: str) -> ProgramRun:
    return stack_run(stack)


@cache
def _config(stack: str) -> StackConfig:
    return parse_stack_config(_raw(stack), source=stack)


@pytest.fixture(params=OPENSTACK_STACKS)
def stack(request) -> str:
    return request.param


@pytest.fixture
def run(stack) -> ProgramRun:
    return _run(stack)


@pytest.fixture
def config(stack) -> StackConfig:
    return _config(stack)


def _role(resource) -> str:
    source = resource.inputs.get("metadata") or resource.inputs.get("tags")
    return tagging.parse_tags(source).get("role", "")


def _by_id(run: ProgramRun, type_: str) -> dict[str, Any]:
    return {f"{r.name}-id": r for r in run.of_type(type_)}


def _unsecret(value: Any) -> Any:
    if isinstance(value, dict) and SECRET_SIG in value:
        return _unsecret(value["value"])
    return value


def test_the_ministry_stacks_are_all_covered():
    assert len(MINISTRY_STACKS) >= 4, f"expected the ministry stacks in {STACKS_DIR}, found {MINISTRY_STACKS}"


def test_node_counts_names_addresses_and_flavors_follow_sizing(run, config):
    sizing = plan(config)
    nodes = plan_nodes(config, sizing.counts)
    instances = {r.inputs["name"]: r for r in run.of_type(T_INSTANCE)}
    assert {role: sum(1 for i in instances.values() if _role(i) == role) for role in ROLES} == sizing.counts
    assert set(instances) == {n.name for n in nodes}
    ports = {r.inputs["name"]: r for r in run.of_type(T_PORT)}
    for node in nodes:
        instance = instances[node.name]
        assert instance.inputs["flavorName"] == sizing.flavors[node.role]
        assert instance.inputs["availabilityZone"] == node.zone
        (fixed,) = ports[node.name].inputs["fixedIps"]
        assert fixed["ipAddress"] == str(node.private_ip)
        assert instance.inputs["networks"] == [{"port": f"{ports[node.name].name}-id"}]


def test_network_has_one_subnet_per_tier_and_a_router_to_the_external_network(run, config):
    subnets = {tagging.parse_tags(s.inputs["tags"])["tier"]: s.inputs["cidr"] for s in run.of_type(T_SUBNET)}
    assert subnets == {
        "edge": str(config.network.edge_cidr),
        "data": str(config.network.data_cidr),
        "admin": str(config.network.admin_cidr),
    }
    (router,) = run.of_type("openstack:networking/router:Router")
    assert router.inputs["externalNetworkId"] == f"{config.cloud.external_network}-id"
    assert len(run.of_type("openstack:networking/routerInterface:RouterInterface")) == 3
    lookups = {token.rsplit(":", 1)[1]: args for token, args in run.calls}
    assert lookups["getNetwork"] == {"name": config.cloud.external_network, "external": True}
    assert lookups["getImage"] == {"name": config.cloud.image, "mostRecent": True}


def test_security_groups_hold_exactly_the_rules_of_each_role(run, config):
    counts = plan(config).counts
    groups = {r.inputs["name"].rsplit("-", 1)[1]: r for r in run.of_type(T_GROUP)}
    assert set(groups) == set(ROLES)
    role_of_group = {f"{g.name}-id": role for role, g in groups.items()}
    for group in groups.values():
        assert group.inputs["deleteDefaultRules"] is True
    actual: dict[str, set] = {role: set() for role in ROLES}
    for rule in run.of_type(T_RULE):
        inputs = rule.inputs
        remote = role_of_group.get(inputs.get("remoteGroupId", ""))
        actual[role_of_group[inputs["securityGroupId"]]].add((
            inputs["direction"], inputs["ethertype"], inputs.get("protocol"),
            inputs.get("portRangeMin"), inputs.get("portRangeMax"), inputs.get("remoteIpPrefix"), remote,
        ))
    expected = {
        role: {(r.direction, r.ethertype, r.protocol, r.port_min, r.port_max, r.remote_cidr, r.remote_role)
               for r in rules}
        for role, rules in security_rules(config, counts).items()
    }
    assert actual == expected
    assert len(run.of_type(T_RULE)) == sum(len(rules) for rules in expected.values())


def test_no_registered_rule_opens_a_sensitive_port_to_the_world(run):
    from visio_infra.model.security_rules import Rule

    for resource in run.of_type(T_RULE):
        i = resource.inputs
        rule = Rule("x", "x", i["direction"], i.get("protocol"), i.get("portRangeMin"), i.get("portRangeMax"),
                    i["ethertype"], remote_cidr=i.get("remoteIpPrefix"),
                    remote_role="group" if i.get("remoteGroupId") else None)
        assert world_open_sensitive(rule) == [], resource.name
        if i["direction"] == "ingress" and i.get("remoteIpPrefix") in ("0.0.0.0/0", "::/0"):
            assert i["protocol"] in ("tcp", "udp") and i.get("portRangeMin") is not None, resource.name


def test_each_port_is_in_its_own_role_group_only(run):
    groups = {f"{g.name}-id": g.inputs["name"].rsplit("-", 1)[1] for g in run.of_type(T_GROUP)}
    for port in run.of_type(T_PORT):
        assert [groups[g] for g in port.inputs["securityGroupIds"]] == [_role(port)]


def test_anti_affinity_server_groups_per_role_within_nova_quota(run, config):
    counts = plan(config).counts
    limit = config.cloud.server_group_max_members
    groups = _by_id(run, T_SERVER_GROUP)
    members: dict[str, list[str]] = {gid: [] for gid in groups}
    for instance in run.of_type(T_INSTANCE):
        [hint] = instance.inputs["schedulerHints"]
        group = groups[hint["group"]]
        assert group.inputs["name"].startswith(f"visio-{config.ministry.slug}-{_role(instance)}")
        members[hint["group"]].append(instance.name)
    roles_with_nodes = {role for role, n in counts.items() if n}
    for gid, group in groups.items():
        assert group.inputs["policies"] == "anti-affinity"
        assert 1 <= len(members[gid]) <= limit, (group.inputs["name"], len(members[gid]))
    for role in roles_with_nodes:
        role_groups = sorted(g.inputs["name"] for g in groups.values() if _role_of_group(g, config) == role)
        expected = -(-counts[role] // limit)
        suffixes = [""] + [f"-{k}" for k in range(2, expected + 1)]
        assert role_groups == sorted(f"visio-{config.ministry.slug}-{role}{x}" for x in suffixes)


def _role_of_group(group, config) -> str:
    return group.inputs["name"].removeprefix(f"visio-{config.ministry.slug}-").split("-")[0]


def test_a_role_beyond_the_group_quota_keeps_its_first_nodes_in_group_one():
    """Growing a role never moves an existing node to another group (that would replace it)."""
    from visio_infra.model.topology import server_group_number

    raw = raw_of("culture")
    raw["visio:cloud"] = {**raw["visio:cloud"], "server_group_max_members": 2}
    config = parse_stack_config(raw, source="x")
    small = plan_nodes(config, {"sfu": 3})
    grown = plan_nodes(config, {"sfu": 5})
    assert [server_group_number(n.index, 2) for n in small] == [1, 1, 2]
    assert [server_group_number(n.index, 2) for n in grown] == [1, 1, 2, 2, 3]


def test_every_volume_is_encrypted_boot_disks_included(run, config):
    volumes = _by_id(run, T_VOLUME)
    attachments = {a.inputs["volumeId"]: a.inputs["instanceId"] for a in run.of_type(T_ATTACH)}
    used = set()
    for instance in run.of_type(T_INSTANCE):
        if config.cloud.boot_from == "image":  # the flavor's local disk: no Cinder boot volume
            assert instance.inputs["imageId"] == "debian-12-image-id"
            assert "blockDevices" not in instance.inputs
            continue
        assert "imageId" not in instance.inputs
        (device,) = instance.inputs["blockDevices"]
        assert device["sourceType"] == device["destinationType"] == "volume"
        assert device["bootIndex"] == 0 and device["deleteOnTermination"] is False
        boot = volumes[device["uuid"]]
        assert boot.inputs["imageId"] == "debian-12-image-id"
        assert boot.inputs["volumeType"] == config.cloud.encrypted_volume_type  # it holds the node's secrets
        assert boot.inputs["size"] == BOOT_VOLUME_GIB
        assert boot.inputs["availabilityZone"] == instance.inputs["availabilityZone"]
        used.add(device["uuid"])
    data = {vid: v for vid, v in volumes.items() if v.inputs["metadata"].get("purpose") == "data"}
    db_instances = {f"{i.name}-id" for i in run.of_type(T_INSTANCE) if _role(i) == "db"}
    assert len(data) == len(db_instances) >= 2
    for volume_id, volume in data.items():
        assert _role(volume) == "db"
        assert volume.inputs["volumeType"] == config.cloud.encrypted_volume_type
        assert volume.inputs["size"] == db_volume_gib(config)
        assert attachments[volume_id] in db_instances
    assert set(attachments.values()) == db_instances
    assert used | set(data) == set(volumes)


def test_floating_ips_only_for_sfu_turn_and_bastion(run, config):
    ports = {f"{p.name}-id": p for p in run.of_type(T_PORT)}
    fips = run.of_type(T_FIP)
    assert {ports[f.inputs["portId"]].inputs["name"] for f in fips} == {
        n.name for n in plan_nodes(config, plan(config).counts) if n.role in PUBLIC_ROLES
    }
    for fip in fips:
        assert _role(ports[fip.inputs["portId"]]) in PUBLIC_ROLES
        assert fip.inputs["pool"] == config.cloud.external_network
        assert any("routerInterface" in dep for dep in fip.dependencies)


def test_everything_taggable_is_tagged(run, config):
    checked = 0
    for resource in run.resources:
        if resource.type in TAGGED_TYPES:
            values = resource.inputs.get("tags")
        elif resource.type in METADATA_TYPES:
            values = resource.inputs.get("metadata")
        else:
            continue
        assert tagging.missing_keys(values) == [], resource.name
        assert tagging.parse_tags(values)["ministry"] == config.ministry.slug
        checked += 1
    assert checked >= len(run.of_type(T_INSTANCE)) * 3


def test_replacement_guards(run, config):
    for instance in run.of_type(T_INSTANCE):
        # Booting from the local disk, the image is the server's own: only the bastion follows it.
        follows = config.cloud.boot_from == "volume" or _role(instance) == "bastion"
        assert set(instance.ignore_changes) == {"userData", "keyPair"} | (set() if follows else {"imageId"})
        # Only the bastion is replaced delete-first (it follows the image); any other replacement keeps
        # the create-first order, which Nova refuses on the node's port in use (node.REBUILD).
        assert instance.delete_before_replace == (_role(instance) == "bastion"), instance.name
    for volume in run.of_type(T_VOLUME):
        if volume.inputs["metadata"]["purpose"] == "boot" and _role(volume) != "bastion":
            assert volume.ignore_changes == ["imageId"], volume.name
        else:
            assert volume.ignore_changes == [], volume.name


def test_one_explicit_provider_without_credentials(run, config):
    (provider,) = run.of_type(T_PROVIDER)
    expected = {"region": config.cloud.region}
    cloud = config.cloud
    expected.update({"cloud": cloud.cloud} if cloud.cloud else {"authUrl": cloud.auth_url})
    assert provider.inputs == expected
    for resource in run.resources:
        if resource.custom and resource.type.startswith("openstack:"):
            assert resource.provider.startswith(provider.urn + "::"), resource.name


def test_every_resource_has_a_component_parent(run):
    by_urn = run.by_urn()
    for resource in run.resources:
        if resource.type.startswith(("openstack:", DYNAMIC, "pulumi:providers:")):
            assert resource.parent in by_urn and not by_urn[resource.parent].custom, resource.name


def test_user_data_is_the_rendered_template_without_secrets(run, config):
    nodes = {n.name: n for n in plan_nodes(config, plan(config).counts)}
    secret_values = [str(run.outputs[name]) for name in ("livekit_api_secret", "turn_shared_secret",
                                                         "redis_password")]
    secret_values.append(run.outputs["meet_env"]["DB_PASSWORD"])
    for instance in run.of_type(T_INSTANCE):
        text = instance.inputs["userData"]
        assert text == cloud_init.user_data(config, nodes[instance.inputs["name"]])
        for value in secret_values:
            assert value not in text


def test_no_secret_in_clear_in_any_input_or_plain_output(run):
    names = ("livekit_api_secret", "turn_shared_secret", "redis_password")
    secrets = {str(run.outputs[name]) for name in names}
    secrets.add(run.outputs["meet_env"]["DB_PASSWORD"])

    def walk(value: Any, where: str) -> None:
        if isinstance(value, dict):
            if SECRET_SIG in value:
                return  # a Pulumi secret: encrypted in state
            for key, item in value.items():
                walk(item, f"{where}.{key}")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{where}[{index}]")
        elif isinstance(value, str):
            assert not any(secret in value for secret in secrets), where

    for resource in run.resources:
        if resource.inputs.get("kind") != GENERATED_SECRET_KIND:
            walk({k: v for k, v in resource.inputs.items() if k != "__provider"}, resource.name)
    for name, value in run.outputs.items():
        if name not in run.secret_outputs:
            walk(value, name)


def test_nothing_points_to_a_non_european_endpoint(run):
    text = json.dumps([{k: v for k, v in r.inputs.items() if k != "__provider"} for r in run.resources],
                      default=str)
    assert find_foreign_endpoints(text) == []
    assert find_foreign_endpoints(json.dumps(run.outputs, default=str)) == []


def test_output_contract(run, config):
    outputs = run.outputs
    assert set(outputs) == set(OUTPUT_NAMES)
    assert run.secret_outputs == set(SECRET_OUTPUTS)
    assert outputs["livekit_url"] == f"wss://{config.domains.signalling}"
    assert outputs["livekit_api_url"] == f"https://{config.domains.signalling}"
    assert all(uri.split(":")[1] == config.domains.turn for uri in outputs["turn_uris"])
    if config.tls.source == "files":
        assert outputs["ca_certificate"] is None  # the ministry's PKI signs; the stack issues no CA
    assert outputs["livekit_api_key"].startswith("API") and len(outputs["livekit_api_key"]) >= 12
    assert len(outputs["livekit_api_secret"]) >= 32
    assert len(outputs["turn_shared_secret"]) >= 32
    assert len(outputs["redis_password"]) >= 32
    assert set(outputs["meet_env"]) == {
        "LIVEKIT_API_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET",
        "DB_HOST", "DB_PORT", "DB_NAME", "DB_USER", "DB_PASSWORD", "DB_TARGET_SESSION_ATTRS", "DATABASE_URL",
        "REDIS_SENTINEL_HOSTS", "REDIS_SENTINEL_MASTER_NAME", "REDIS_SENTINEL_PASSWORD", "REDIS_PASSWORD",
    }
    redis_nodes = [n for n in plan_nodes(config, plan(config).counts) if n.role == "redis"]
    assert len(redis_nodes) >= 3
    sentinels = ",".join(f"{n.private_ip}:26379" for n in redis_nodes)
    assert outputs["meet_env"]["REDIS_SENTINEL_HOSTS"] == sentinels
    assert outputs["meet_env"]["REDIS_SENTINEL_MASTER_NAME"] == "visio"
    assert outputs["meet_env"]["REDIS_PASSWORD"] == outputs["meet_env"]["REDIS_SENTINEL_PASSWORD"]
    assert outputs["meet_env"]["REDIS_PASSWORD"] == outputs["redis_password"]
    assert outputs["meet_env"]["LIVEKIT_API_KEY"] == outputs["livekit_api_key"]
    nodes = plan_nodes(config, plan(config).counts)
    db_ips = [str(n.private_ip) for n in nodes if n.role == "db"]
    assert len(db_ips) >= 3
    assert outputs["meet_env"]["DB_HOST"] == ",".join(db_ips)
    hosts = ",".join(f"{ip}:5432" for ip in db_ips)
    assert outputs["database_url"] == (
        f"postgresql://{config.meet.database_user}:{outputs['meet_env']['DB_PASSWORD']}@{hosts}"
        f"/{config.meet.database}?sslmode=verify-full&target_session_attrs=read-write&connect_timeout=3"
    )
    assert outputs["meet_env"]["DATABASE_URL"] == outputs["database_url"]


def test_inventory_output(run, config):
    inventory = run.outputs["inventory"]
    assert set(inventory["groups"]) == set(ROLES)
    fip_by_port = {f.inputs["portId"]: f.outputs["address"] for f in run.of_type(T_FIP)}
    port_id = {p.inputs["name"]: f"{p.name}-id" for p in run.of_type(T_PORT)}
    for node in plan_nodes(config, plan(config).counts):
        (host,) = [h for h in inventory["groups"][node.role] if h["name"] == node.name]
        assert set(host) == {"name", "private_ip", "public_ip"}
        assert host["private_ip"] == str(node.private_ip)
        assert host["public_ip"] == fip_by_port.get(port_id[node.name])
        assert (host["public_ip"] is None) == (node.role not in PUBLIC_ROLES)
    (bastion,) = inventory["groups"]["bastion"]
    assert inventory["connection"] == {
        "user": "debian", "bastion": {"host": bastion["public_ip"], "user": "debian"}, "ssh_key_file": None,
    }


def test_host_configuration_waits_for_machines_addresses_and_volumes(run, config):
    configurations = [r for r in run.resources if r.type.endswith(":HostConfiguration")]
    if not config.hosts.configure_on_up:
        assert configurations == []  # provisioning only: `visio configure` runs it later
        return
    (configuration,) = configurations
    needed = {r.urn for r in run.resources if r.type in (T_INSTANCE, T_FIP, T_ATTACH)}
    assert needed <= set(configuration.dependencies)


@pytest.mark.parametrize("lab", LAB_STACKS)
def test_lab_shares_secrets_and_output_contract(lab):
    run = _run(lab)
    assert set(run.outputs) == set(OUTPUT_NAMES)
    assert run.secret_outputs == set(SECRET_OUTPUTS)
    assert len(run.outputs["livekit_api_secret"]) >= 32
    assert not run.of_type(T_INSTANCE), "the lab must not create OpenStack resources"
    generated = [r for r in run.of_type(DYNAMIC) if r.inputs.get("kind") == GENERATED_SECRET_KIND]
    assert len(generated) == 7  # LiveKit key and secret, TURN, DB x2, Redis, backup passphrase


def _mistakes():
    from tests.unit.model.test_config import INVALID

    return [pytest.param(base, mutate, field, id=case_id) for case_id, base, mutate, field, _valid in INVALID]


@pytest.mark.parametrize(("base", "mutate", "field"), _mistakes())
def test_every_mistake_in_the_table_stops_the_real_program_before_any_resource(base, mutate, field):
    """The whole table of mistakes (tests/unit/model/test_config.py), through the real program under mocks."""
    from tests.unit.model.test_config import _raw

    raw = _raw(base)
    mutate(raw)
    with pytest.raises(pulumi.RunError) as caught:
        run_program(raw, base)
    message = str(caught.value)
    assert message.startswith(f"stacks/Pulumi.{base}.yaml: "), message
    assert f"\n  - {field}:" in message, message
    from pulumi_mocks import LAST_MONITOR  # set by run_program

    assert LAST_MONITOR.requests == {}


@pytest.mark.parametrize("lab", LAB_STACKS)
def test_outputs_alone_are_enough_for_visio_configure(lab):
    """`visio configure` re-applies the configuration from the outputs: they must hold every secret."""
    from visio_infra.commands.configure import secrets_from_outputs

    run = _run(lab)
    found = secrets_from_outputs(run.outputs)
    assert {"livekit_api_key", "livekit_api_secret", "turn_shared_secret", "redis_password",
            "db_password", "db_replication_password", "backup_cipher_pass"} <= set(found)
    assert all(len(value) >= 12 for value in found.values())


# --- stack settings: boot source and provisioning only ---------------------------------------------


def _variant(stack: str, cloud: dict[str, Any] | None = None, **sections: Any) -> ProgramRun:
    raw = raw_of(stack)
    if cloud:
        raw["visio:cloud"] = {**raw["visio:cloud"], **cloud}
    raw.update({f"visio:{name}": value for name, value in sections.items()})
    return run_program(raw, stack)


def _comparable(run: ProgramRun, skip_types: frozenset[str] = frozenset()) -> dict[str, tuple]:
    """Every registration by URN (inputs and options) minus values the mocks draw at random."""
    # These hold the mocked floating IPs, drawn in any order.
    random_inputs = {"digest", "shared_digest", "sans", "inventory"}
    return {
        r.urn: (
            {k: v for k, v in r.inputs.items() if k not in random_inputs},
            sorted(r.ignore_changes), sorted(r.dependencies), r.parent, r.provider,
        )
        for r in run.resources
        if r.type.rsplit(":", 1)[-1] not in skip_types and r.type not in skip_types
    }


HOST_CONFIGURATION = "HostConfiguration"
"""Its inputs carry the whole config as written and depend on every server and volume."""
DEFAULT_SETTINGS_STACKS = [
    s for s in MINISTRY_STACKS if _config(s).cloud.boot_from == "volume" and _config(s).hosts.configure_on_up
]


@pytest.mark.parametrize("stack", DEFAULT_SETTINGS_STACKS)
def test_the_defaults_are_the_programs_behaviour_before_the_settings(stack):
    """Writing the defaults out changes nothing: same resources, inputs and options."""
    spelled_out = _variant(stack, cloud={"boot_from": "volume"}, hosts={"configure_on_up": True})
    assert _comparable(spelled_out) == _comparable(_run(stack))


def test_booting_from_the_image_changes_only_the_boot_disk():
    """`boot_from: image` is the same deployment without Cinder boot volumes: every other resource is
    registered exactly as with boot volumes, and each server names the image instead."""
    by_volume = _run("culture")
    by_image = _variant("culture", cloud={"boot_from": "image", "local_disk_encrypted": True})
    skip = frozenset({T_INSTANCE, T_VOLUME, HOST_CONFIGURATION})
    assert _comparable(by_image, skip) == _comparable(by_volume, skip)
    assert {r.urn for r in by_image.of_type(T_VOLUME)} == {
        r.urn for r in by_volume.of_type(T_VOLUME) if r.inputs["metadata"]["purpose"] == "data"
    }
    old = {r.urn: r for r in by_volume.of_type(T_INSTANCE)}
    for server in by_image.of_type(T_INSTANCE):
        before = dict(old[server.urn].inputs)
        before.pop("blockDevices")
        assert server.inputs == {**before, "imageId": "debian-12-image-id"}


def test_provisioning_only_registers_the_same_resources_and_outputs_without_configuration():
    """`hosts.configure_on_up: false` drops the Ansible step and nothing else: `visio configure` then
    finds in the outputs everything it needs (inventory, secrets, certificates)."""
    from visio_infra.commands.configure import secrets_from_outputs

    full = _run("culture")
    provisioning = _variant("culture", hosts={"configure_on_up": False})
    configuration = {r.urn for r in full.resources if r.type.endswith(":HostConfiguration")}
    assert len(configuration) == 1
    assert set(_comparable(provisioning)) == set(_comparable(full)) - configuration
    skip = frozenset({HOST_CONFIGURATION})
    assert _comparable(provisioning, skip) == _comparable(full, skip)
    assert set(provisioning.outputs) == set(full.outputs) == set(OUTPUT_NAMES)
    assert provisioning.secret_outputs == set(SECRET_OUTPUTS)
    assert set(provisioning.outputs["inventory"]["groups"]) == set(ROLES)
    assert secrets_from_outputs(provisioning.outputs)


def test_the_acceptance_stack_is_a_ministry_stack():
    """The acceptance stack goes through the same program as every ministry (so through every test of
    this module), provisioning only and booting from the image, with pinned counts."""
    assert "acceptance" in MINISTRY_STACKS
    config = _config("acceptance")
    assert (config.cloud.boot_from, config.hosts.configure_on_up) == ("image", False)
    run = _run("acceptance")
    assert len(run.of_type(T_INSTANCE)) == sum(config.sizing.nodes.values()) == 14
    assert not [r for r in run.resources if r.type.endswith(":HostConfiguration")]


def test_a_cancelled_program_exits_without_a_traceback():
    """A failed update cancels the program with SIGINT (the Python language host's cancellation): the
    entry point's handler ends it at once, so no KeyboardInterrupt traceback buries the resource
    error in the stack's diagnostics (seen on the real cloud with its compute API down)."""
    import subprocess
    import sys

    from visio_infra.cloud.deployment import CANCELLED_EXIT

    code = (
        "import os, signal, time\n"
        "from visio_infra.cloud.deployment import exit_quietly_when_cancelled\n"
        "exit_quietly_when_cancelled()\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "time.sleep(30)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == CANCELLED_EXIT
    assert "Traceback" not in done.stderr and "KeyboardInterrupt" not in done.stderr, done.stderr
    entry = (STACKS_DIR.parent / "__main__.py").read_text(encoding="utf-8")
    assert entry.index("exit_quietly_when_cancelled()") < entry.index("build_deployment(config)")
