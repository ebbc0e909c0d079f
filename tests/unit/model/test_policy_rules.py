"""The policy pack's checks: pure functions tested directly, on every stack's real program, and wired."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pulumi_mocks import MINISTRY_STACKS, OPENSTACK_STACKS, raw_of, stack_run

from visio_infra.model import policy_rules as pr
from visio_infra.model.stack_file import parse_stack_config

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TAGS = ["managed-by=visio-infra", "ministry=interieur", "role=db"]
META = {"managed-by": "visio-infra", "ministry": "interieur", "role": "db"}


def _rule(**props):
    base = {"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp", "securityGroupId": "sg"}
    return pr.security_rule_violations(pr.SEC_GROUP_RULE, {**base, **props})


@pytest.mark.parametrize(
    "props, fragment",
    [
        ({"portRangeMin": 22, "portRangeMax": 22, "remoteIpPrefix": "0.0.0.0/0"}, "SSH"),
        ({"portRangeMin": 5432, "portRangeMax": 5432, "remoteIpPrefix": "0.0.0.0/0"}, "PostgreSQL"),
        ({"portRangeMin": 6379, "portRangeMax": 6379}, "Redis"),
        ({"portRangeMin": 6789, "portRangeMax": 6789, "remoteIpPrefix": "::/0", "ethertype": "IPv6"},
         "LiveKit metrics"),
        ({"portRangeMin": 9641, "portRangeMax": 9641, "remoteIpPrefix": "0.0.0.0/0"}, "coturn metrics"),
        ({"portRangeMin": 7000, "portRangeMax": 8000, "remoteIpPrefix": "0.0.0.0/0"}, "LiveKit plain HTTP"),
        ({"protocol": None, "remoteIpPrefix": "0.0.0.0/0"}, "every protocol"),
        ({"remoteIpPrefix": "0.0.0.0/0"}, "every tcp port"),
    ],
)
def test_world_open_sensitive_rules_are_violations(props, fragment):
    problems = _rule(**props)
    assert any(fragment in p for p in problems), problems


@pytest.mark.parametrize(
    "props",
    [
        {"portRangeMin": 443, "portRangeMax": 443, "remoteIpPrefix": "0.0.0.0/0"},
        {"protocol": "udp", "portRangeMin": 50000, "portRangeMax": 60000, "remoteIpPrefix": "0.0.0.0/0"},
        {"portRangeMin": 22, "portRangeMax": 22, "remoteGroupId": "bastion-sg"},
        {"portRangeMin": 5432, "portRangeMax": 5432, "remoteIpPrefix": "10.30.0.0/24"},
        {"direction": "egress", "protocol": None, "remoteIpPrefix": "0.0.0.0/0"},
        {"portRangeMin": 22, "portRangeMax": 22, "remoteIpPrefix": pr.UNKNOWN},
    ],
)
def test_restricted_or_public_service_rules_pass(props):
    assert _rule(**props) == []


def test_floating_ip_on_private_role():
    assert pr.floating_ip_violations(pr.FLOATING_IP, {"tags": TAGS, "pool": "ext"})
    assert pr.floating_ip_violations(pr.FLOATING_IP, {"tags": [t.replace("db", "redis") for t in TAGS]})
    assert pr.floating_ip_violations(pr.FLOATING_IP, {"tags": [t.replace("db", "sfu") for t in TAGS]}) == []


def test_every_volume_is_encrypted():
    data = {"metadata": {**META, "purpose": "data"}, "volumeType": "ceph-luks"}
    assert pr.encrypted_volume_violations(pr.VOLUME, data, {"ceph-luks"}) == []
    (problem,) = pr.encrypted_volume_violations(pr.VOLUME, {**data, "volumeType": "ceph-ssd"}, {"ceph-luks"})
    assert "not encrypted" in problem and "ceph-luks" in problem and "db data volume" in problem
    assert pr.encrypted_volume_violations(pr.VOLUME, {**data, "volumeType": None}, {"ceph-luks"})
    assert "cannot be checked" in pr.encrypted_volume_violations(pr.VOLUME, data, None)[0]
    # Boot volumes hold each node's secrets: the same rule, whatever the role.
    boot = {"metadata": {**META, "role": "turn", "purpose": "boot"}}
    (problem,) = pr.encrypted_volume_violations(pr.VOLUME, boot, {"ceph-luks"})
    assert "turn boot volume without a volume type" in problem
    assert pr.encrypted_volume_violations(pr.VOLUME, {**boot, "volumeType": "ceph-luks"}, {"ceph-luks"}) == []
    assert pr.encrypted_volume_violations(pr.VOLUME, {**boot, "volumeType": "ceph-ssd"}, {"ceph-luks"})
    assert pr.encrypted_volume_violations(pr.INSTANCE, boot, {"ceph-luks"}) == []


def test_a_local_disk_server_needs_the_cloud_to_encrypt_local_disks():
    server = {"imageId": "debian-12", "metadata": {**META, "node": "culture-sfu-1"}}
    (problem,) = pr.local_disk_violations(pr.INSTANCE, server, local_disk_encrypted=False)
    assert "culture-sfu-1" in problem and "local_disk_encrypted" in problem and "boot_from: volume" in problem
    assert pr.local_disk_violations(pr.INSTANCE, server, local_disk_encrypted=True) == []
    by_volume = {"blockDevices": [{"sourceType": "volume"}], "metadata": META}
    assert pr.local_disk_violations(pr.INSTANCE, by_volume, local_disk_encrypted=False) == []
    assert pr.local_disk_violations(pr.VOLUME, server, local_disk_encrypted=False) == []


def test_anti_affinity():
    assert pr.anti_affinity_violations(pr.SERVER_GROUP, {"policies": "anti-affinity"}) == []
    assert pr.anti_affinity_violations(pr.SERVER_GROUP, {"policies": ["anti-affinity"]}) == []
    assert pr.anti_affinity_violations(pr.SERVER_GROUP, {"policies": "soft-anti-affinity"})
    assert pr.anti_affinity_violations(pr.SERVER_GROUP, {"policies": "affinity"})
    assert pr.anti_affinity_violations(pr.SERVER_GROUP, {})
    assert pr.anti_affinity_violations(pr.INSTANCE, {"schedulerHints": [{"group": "g-id"}]}) == []
    assert pr.anti_affinity_violations(pr.INSTANCE, {"schedulerHints": [{"group": pr.UNKNOWN}]}) == []
    assert pr.anti_affinity_violations(pr.INSTANCE, {"schedulerHints": []})
    assert pr.anti_affinity_violations(pr.INSTANCE, {})


def test_tags():
    assert pr.tag_violations(pr.PORT, {"tags": TAGS}) == []
    assert pr.tag_violations(pr.INSTANCE, {"metadata": META}) == []
    assert "role" in pr.tag_violations(pr.PORT, {"tags": TAGS[:2]})[0]
    foreign = {"metadata": {**META, "managed-by": "x"}}
    assert "managed-by=visio-infra" in pr.tag_violations(pr.VOLUME, foreign)[0]
    assert pr.tag_violations(pr.INSTANCE, {})
    assert pr.tag_violations(pr.SEC_GROUP_RULE, {}) == []  # cannot carry tags


def test_foreign_endpoints_anywhere_in_props():
    props = {"userData": "#cloud-config\n", "config": {"rtc": {"stun_servers": ["stun.l.google.com:19302"]}}}
    (problem,) = pr.foreign_endpoint_violations("pulumi-python:dynamic:Resource", props)
    assert problem.startswith("config.rtc.stun_servers[0] mentions") and "Google" in problem
    mirror = {"userData": "uri: https://mirror.example/debian"}
    assert pr.foreign_endpoint_violations(pr.INSTANCE, mirror) == []
    assert pr.foreign_endpoint_violations(pr.INSTANCE, {"__provider": "api.pulumi.com"}) == []


def test_stack_check_finds_a_floating_ip_on_a_db_port():
    port = pr.ResourceView("urn:port-db", pr.PORT, {"tags": TAGS})
    sfu_port = pr.ResourceView("urn:port-sfu", pr.PORT, {"tags": [t.replace("db", "sfu") for t in TAGS]})
    bad = pr.ResourceView("urn:fip-1", pr.FLOATING_IP, {"tags": []}, {"portId": ["urn:port-db"]})
    good = pr.ResourceView("urn:fip-2", pr.FLOATING_IP, {"tags": []}, {"portId": ["urn:port-sfu"]})
    (problem,) = pr.private_node_public_ip_violations([port, sfu_port, bad, good])
    assert "urn:fip-1" in problem and "db" in problem


@pytest.mark.parametrize("stack", OPENSTACK_STACKS)
def test_every_stack_complies_with_every_policy(stack):
    run = stack_run(stack)
    config = parse_stack_config(raw_of(stack), source=stack)
    encrypted = {config.cloud.encrypted_volume_type}
    problems = []
    for resource in run.resources:
        for name, check in pr.RESOURCE_CHECKS.items():
            problems += [f"{name} {resource.name}: {p}" for p in check(resource.type, resource.inputs)]
        problems += pr.encrypted_volume_violations(resource.type, resource.inputs, encrypted)
        attested = config.cloud.local_disk_encrypted
        problems += pr.local_disk_violations(resource.type, resource.inputs, attested)
    views = [pr.ResourceView(r.urn, r.type, r.inputs, r.property_dependencies) for r in run.resources]
    problems += pr.private_node_public_ip_violations(views)
    assert problems == []
    # The stack check really sees the floating IPs' ports through property dependencies.
    fips = [v for v in views if v.type == pr.FLOATING_IP]
    assert fips and all(v.property_dependencies.get("portId") for v in fips)


def test_policy_catches_a_tampered_program_run():
    """Same registrations with the DB's data volume unencrypted and a DB port behind a floating IP."""
    run = stack_run("sample")
    db_port = next(r for r in run.resources if r.type == pr.PORT and "role=db" in r.inputs["tags"])
    views = [pr.ResourceView(r.urn, r.type, r.inputs, r.property_dependencies) for r in run.resources]
    views.append(pr.ResourceView("urn:evil-fip", pr.FLOATING_IP, {"tags": db_port.inputs["tags"]},
                                 {"portId": [db_port.urn]}))
    assert pr.private_node_public_ip_violations(views)
    data = next(r for r in run.of_type(pr.VOLUME) if r.inputs["metadata"].get("purpose") == "data")
    tampered = {**data.inputs, "volumeType": "standard"}
    assert pr.encrypted_volume_violations(pr.VOLUME, tampered, {"ceph-ssd-luks"})


# --- The pack's wiring (policy/visio_policies.py), with the engine's own property proxy ----------

POLICY_DIR = Path(__file__).resolve().parents[3] / "policy"


@pytest.fixture(scope="module")
def pack():
    sys.path.insert(0, str(POLICY_DIR))
    try:
        import visio_policies

        yield visio_policies
    finally:
        sys.path.remove(str(POLICY_DIR))


def _validate(policy, resource_type, props, urn="urn:pulumi:interieur::visio::x::y", config=None):
    from pulumi_policy import PolicyCustomTimeouts, PolicyResourceOptions, ResourceValidationArgs
    from pulumi_policy.proxy import unknown_checking_proxy

    reported = []
    options = PolicyResourceOptions(False, [], False, [], PolicyCustomTimeouts(0, 0, 0), [])
    args = ResourceValidationArgs(resource_type, unknown_checking_proxy(props), urn, "y", options, None,
                                  config or {})
    policy.validate(args, lambda message, urn=None: reported.append(message))
    return reported


def test_pack_declares_every_check(pack):
    names = {p.name for p in pack.policies()}
    assert names == {
        *pr.RESOURCE_CHECKS, "encrypted-volumes", "encrypted-local-disks", "no-public-ip-on-private-ports"
    }
    assert all(p.enforcement_level.value == "mandatory" for p in pack.policies())


def test_pack_reports_violations_and_tolerates_unknowns(pack):
    from pulumi_policy.proxy import UNKNOWN_STRING_VALUE as ENGINE_UNKNOWN

    policies = {p.name: p for p in pack.policies()}
    ssh = {"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp", "portRangeMin": 22,
           "portRangeMax": 22}
    world = _validate(policies["no-world-open-admin-ports"], pr.SEC_GROUP_RULE,
                      {**ssh, "remoteIpPrefix": "0.0.0.0/0"})
    assert world and "SSH" in world[0]
    pending = {**ssh, "remoteGroupId": ENGINE_UNKNOWN, "securityGroupId": ENGINE_UNKNOWN}
    assert _validate(policies["no-world-open-admin-ports"], pr.SEC_GROUP_RULE, pending) == []
    server = {"schedulerHints": [{"group": ENGINE_UNKNOWN}], "metadata": META}
    assert _validate(policies["anti-affinity"], pr.INSTANCE, server) == []
    assert _validate(policies["anti-affinity"], pr.INSTANCE, {"metadata": META})


def test_pack_reads_the_encrypted_volume_type_from_the_stack_file(pack):
    policy = {p.name: p for p in pack.policies()}["encrypted-volumes"]
    stack = MINISTRY_STACKS[0]
    expected = parse_stack_config(raw_of(stack), source=stack).cloud.encrypted_volume_type
    data = {"metadata": {**META, "purpose": "data"}}
    urn = f"urn:pulumi:{stack}::visio::openstack:blockstorage/volume:Volume::v"
    assert _validate(policy, pr.VOLUME, {**data, "volumeType": expected}, urn) == []
    assert _validate(policy, pr.VOLUME, {**data, "volumeType": "plain"}, urn)
    # The policy config wins when given (e.g. a stack file kept elsewhere).
    assert _validate(policy, pr.VOLUME, {**data, "volumeType": "plain"}, urn,
                     {"encrypted_volume_types": ["plain"]}) == []


def test_pack_reads_local_disk_encryption_from_the_stack_file(pack):
    policy = {p.name: p for p in pack.policies()}["encrypted-local-disks"]
    server = {"imageId": "debian-12", "metadata": META}
    ministry = "urn:pulumi:culture::visio::openstack:compute/instance:Instance::s"
    assert _validate(policy, pr.INSTANCE, server, ministry)  # boots from volumes: no attestation
    acceptance = "urn:pulumi:acceptance::visio::openstack:compute/instance:Instance::s"
    assert _validate(policy, pr.INSTANCE, server, acceptance) == []  # local_disk_encrypted: true
    assert _validate(policy, pr.INSTANCE, server, acceptance, {"local_disk_encrypted": False})
