"""The stack-config contract: every shipped stack loads; every mistake gets its own readable line."""

from __future__ import annotations

import copy
import ipaddress
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import MINISTRY_STACKS, STACKS_DIR

from visio_infra.model import pricing
from visio_infra.model.config.base import StackConfigError
from visio_infra.model.config.cloud import LabCloud, OpenStackCloud
from visio_infra.model.config.field_checks import ssh_key_problem
from visio_infra.model.config.stack import StackConfig
from visio_infra.model.stack_file import load_stack_file, parse_stack_config

Raw = dict[str, Any]


def _raw(stack: str) -> Raw:
    document = yaml.safe_load((STACKS_DIR / f"Pulumi.{stack}.yaml").read_text(encoding="utf-8"))
    return copy.deepcopy(document["config"])


def _write(tmp_path: Path, raw: Raw, name: str = "bad") -> Path:
    path = tmp_path / f"Pulumi.{name}.yaml"
    path.write_text(yaml.safe_dump({"config": raw}, allow_unicode=True), encoding="utf-8")
    return path


def _set(section: str, **fields: Any) -> Callable[[Raw], None]:
    def mutate(raw: Raw) -> None:
        raw[f"visio:{section}"].update(fields)

    return mutate


def _delete(section: str, field: str) -> Callable[[Raw], None]:
    def mutate(raw: Raw) -> None:
        del raw[f"visio:{section}"][field]

    return mutate


def _add_section(name: str, value: Any) -> Callable[[Raw], None]:
    def mutate(raw: Raw) -> None:
        raw[f"visio:{name}"] = value

    return mutate


# --- every shipped stack --------------------------------------------------------------------------


def test_every_shipped_stack_loads(stack_config: StackConfig, stack_name: str) -> None:
    assert stack_config.ministry.slug == stack_name


def test_stack_files_are_written_the_way_pulumi_rewrites_them(stack_name: str) -> None:
    """`pulumi stack init` / `pulumi config set` re-serialise the whole file with one space before an
    inline comment; a file written otherwise shows a spurious diff after the engineer's first command."""
    path = STACKS_DIR / f"Pulumi.{stack_name}.yaml"
    offending = [
        f"{path.name}:{number}"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if line.lstrip() and not line.lstrip().startswith("#") and "  #" in line
    ]
    assert not offending, f"use one space before an inline comment: {offending}"


def test_there_are_at_least_four_ministries_on_different_clouds_and_sizes() -> None:
    configs = [load_stack_file(STACKS_DIR / f"Pulumi.{name}.yaml") for name in MINISTRY_STACKS]
    assert len(configs) >= 4
    offers = {c.cloud.offer for c in configs if isinstance(c.cloud, OpenStackCloud)}
    assert {"interieur-pi", "nubo"} <= offers and len(offers) >= 3
    users = sorted(c.audience.users for c in configs)
    assert users[-1] >= 50 * users[0], "stacks should span a small and a very large ministry"
    for config in configs:
        assert isinstance(config.cloud, OpenStackCloud)
        assert config.cloud.offer in pricing.OFFERS


def test_ministry_stacks_do_not_share_address_space() -> None:
    nets: list[tuple[str, ipaddress.IPv4Network]] = []
    for name in MINISTRY_STACKS:
        network = load_stack_file(STACKS_DIR / f"Pulumi.{name}.yaml").network
        nets += [(name, network.edge_cidr), (name, network.data_cidr), (name, network.admin_cidr)]
    for i, (a, net_a) in enumerate(nets):
        for b, net_b in nets[i + 1 :]:
            if a != b:
                assert not net_a.overlaps(net_b), (a, net_a, b, net_b)


def test_lab_keeps_its_pinned_counts_and_network() -> None:
    lab = load_stack_file(STACKS_DIR / "Pulumi.lab.yaml")
    assert isinstance(lab.cloud, LabCloud)
    assert dict(lab.sizing.nodes) == {"sfu": 2, "turn": 2, "db": 3, "redis": 3, "bastion": 0, "monitoring": 1}
    assert str(lab.cloud.subnet) == "10.77.0.0/24"
    assert (str(lab.network.edge_cidr), str(lab.network.data_cidr), str(lab.network.admin_cidr)) == (
        "10.77.0.64/27",
        "10.77.0.96/27",
        "10.77.0.128/27",
    )


def test_pulumi_style_json_strings_are_accepted() -> None:
    """`pulumi config` hands structured values to the program as JSON strings."""
    raw = {
        key: json.dumps(value) if isinstance(value, dict) else value for key, value in _raw("culture").items()
    }
    config = parse_stack_config(raw, source="stacks/Pulumi.culture.yaml")
    assert config.audience.users == 11000


def test_other_namespaces_are_not_judged() -> None:
    raw = _raw("culture")
    raw["openstack:insecure"] = "false"
    assert parse_stack_config(raw, source="x").ministry.slug == "culture"


# --- the table of mistakes ---------------------------------------------------------------------------

# (id, base stack, mutation, the field the single problem line must name, a fragment saying what is valid)
INVALID: list[tuple[str, str, Callable[[Raw], None], str, str]] = [
    (
        "missing-field",
        "culture",
        _delete("audience", "users"),
        "visio:audience.users",
        "required field is missing",
    ),
    (
        "missing-section",
        "culture",
        lambda r: r.pop("visio:domains"),
        "visio:domains",
        "required field is missing",
    ),
    (
        "unknown-key",
        "culture",
        _set("cloud", flavour="c3-8"),
        "visio:cloud.flavour",
        "valid fields here: auth_url",
    ),
    (
        "unknown-section",
        "culture",
        _add_section("recording", {"enabled": True}),
        "visio:recording",
        "valid sections: visio:ministry",
    ),
    (
        "bad-cidr",
        "culture",
        _set("network", edge_cidr="10.90.0.0/33"),
        "visio:network.edge_cidr",
        "e.g. 10.20.0.0/24",
    ),
    (
        "host-bits-cidr",
        "culture",
        _set("network", data_cidr="10.90.1.5/26"),
        "visio:network.data_cidr",
        "CIDR form",
    ),
    (
        "overlapping-tiers",
        "culture",
        _set("network", data_cidr="10.90.0.128/26"),
        "visio:network.data_cidr",
        "tiers must be disjoint",
    ),
    (
        "public-tier",
        "culture",
        _set("network", edge_cidr="51.38.0.0/24"),
        "visio:network.edge_cidr",
        "RFC 1918",
    ),
    (
        "tier-too-small-for-nodes",
        "culture",
        lambda r: r["visio:network"].update(edge_cidr="10.90.0.0/28"),
        "visio:network.edge_cidr",
        "widen network.edge_cidr",
    ),
    (
        "inverted-port-range",
        "culture",
        _add_section("ports", {"sfu_udp_range": {"start": 60000, "end": 50000}}),
        "visio:ports.sfu_udp_range",
        "swap them",
    ),
    (
        "mux-and-range",
        "culture",
        _add_section("ports", {"sfu_udp_mux_port": 7882}),
        "visio:ports.sfu_udp_mux_port",
        "sfu_udp_range: null",
    ),
    (
        "relay-range-over-turn-port",
        "culture",
        _add_section("ports", {"turn_relay_range": {"start": 3000, "end": 40000}}),
        "visio:ports.turn_relay_range",
        "default 49152-65535",
    ),
    (
        "ice-on-livekit-http",
        "culture",
        _add_section("ports", {"sfu_ice_tcp_port": 7880}),
        "visio:ports.sfu_ice_tcp_port",
        "use 7881",
    ),
    (
        "ssh-open-to-world",
        "culture",
        _set("network", admin_cidrs=["0.0.0.0/0"]),
        "visio:network.admin_cidrs",
        "operators' own networks",
    ),
    (
        "ssh-open-to-world-v6",
        "culture",
        _set("network", admin_cidrs=["203.0.113.16/28", "::/0"]),
        "visio:network.admin_cidrs",
        "operators' own networks",
    ),
    (
        "ssh-open-to-a-slash-8",
        "culture",
        _set("network", admin_cidrs=["51.0.0.0/8"]),
        "visio:network.admin_cidrs",
        "no broader than /16",
    ),
    (
        "livekit-below-floor",
        "culture",
        _set("versions", livekit="1.8.4"),
        "visio:versions.livekit",
        "floor 1.10.0",
    ),
    ("livekit-1.9.10", "culture", _set("versions", livekit="1.9.10"), "visio:versions.livekit", "known-bad"),
    (
        "livekit-not-a-version",
        "culture",
        _set("versions", livekit="latest"),
        "visio:versions.livekit",
        "like 1.13.11",
    ),
    ("zero-users", "culture", _set("audience", users=0), "visio:audience.users", "greater than 0"),
    ("users-not-a-number", "culture", _set("audience", users="lots"), "visio:audience.users", "whole number"),
    (
        "peak-above-users",
        "culture",
        _set("audience", peak_participants=20000),
        "visio:audience.peak_participants",
        "at most the number of accounts",
    ),
    (
        "meeting-above-peak",
        "culture",
        _set("audience", largest_meeting=600),
        "visio:audience.largest_meeting",
        "part of the peak",
    ),
    (
        "meeting-fits-no-node",
        "culture",
        _set("audience", peak_participants=5000, largest_meeting=2000),
        "visio:audience.largest_meeting",
        "lower largest_meeting to at most",
    ),
    (
        "share-above-one",
        "culture",
        _set("audience", video_share=1.5),
        "visio:audience.video_share",
        "less than or equal to 1",
    ),
    (
        "bad-ssh-key",
        "culture",
        _set("cloud", ssh_public_keys=["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA ops"]),
        "visio:cloud.ssh_public_keys",
        "truncated ed25519 key",
    ),
    (
        "ssh-key-type-mismatch",
        "culture",
        _set(
            "cloud",
            ssh_public_keys=["ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIK2O58Y+h+XnrcscOa4ELleB74olmOVPfxxOXJijTGmO"],
        ),
        "visio:cloud.ssh_public_keys",
        "is a 'ssh-ed25519' key",
    ),
    ("unknown-offer", "culture", _set("cloud", offer="aws"), "visio:cloud.offer", "known offers"),
    (
        "flavor-not-in-table",
        "culture",
        _set("cloud", flavors={"sfu": "m5.large"}),
        "visio:cloud.flavors.sfu",
        "valid flavors: c3-4",
    ),
    (
        "flavor-too-small-for-meeting",
        "culture",
        _set("cloud", flavors={"sfu": "c3-8"}),
        "visio:cloud.flavors.sfu",
        "largest meeting needs",
    ),
    (
        "auth-and-cloud",
        "finances",
        _set("cloud", cloud="nubo"),
        "visio:cloud",
        "either `cloud` or `auth_url`",
    ),
    (
        "foreign-mirror",
        "culture",
        _set("cloud", package_mirror="https://debian-mirror.storage.googleapis.com/debian"),
        "visio:cloud.package_mirror",
        "non-European service",
    ),
    (
        "missing-mirror",
        "culture",
        _delete("cloud", "package_mirror"),
        "visio:cloud.package_mirror",
        "required field is missing (The ministry's own Debian mirror, e.g. `package_mirror: http://miroir",
    ),
    (
        "foreign-security-mirror",
        "interieur",
        _set("cloud", security_mirror="https://debian-security.storage.googleapis.com/debian-security"),
        "visio:cloud.security_mirror",
        "non-European service",
    ),
    (
        "foreign-ntp",
        "culture",
        _set("cloud", ntp_servers=["time.google.com"]),
        "visio:cloud.ntp_servers",
        "non-European time service",
    ),
    (
        "ntp-not-a-host",
        "culture",
        _set("cloud", ntp_servers=["ntp://ntp1.culture.gouv.fr"]),
        "visio:cloud.ntp_servers",
        "not a host name or an IP address",
    ),
    (
        "no-ntp-server",
        "culture",
        _set("cloud", ntp_servers=[]),
        "visio:cloud.ntp_servers",
        "at least one NTP server",
    ),
    (
        "foreign-webhook",
        "culture",
        _set("meet", webhook_url="https://hooks.slack.com/services/x"),
        "visio:meet.webhook_url",
        "non-European service",
    ),
    (
        "foreign-alert-webhook",
        "culture",
        _add_section("monitoring", {"alert_webhook_url": "https://hooks.slack.com/services/x"}),
        "visio:monitoring.alert_webhook_url",
        "non-European service",
    ),
    (
        "foreign-remote-write",
        "culture",
        _add_section("monitoring", {"remote_write_url": "https://prometheus-prod-01.grafana.net/api/prom/push"}),
        "visio:monitoring.remote_write_url",
        "non-European service",
    ),
    (
        "monitoring-node-count-against-mode",
        "lab",
        _add_section("monitoring", {"prometheus": "external"}),
        "visio:sizing.nodes.monitoring",
        "does not match monitoring.prometheus 'external'",
    ),
    (
        "domain-outside-zone",
        "culture",
        _set("domains", turn="turn.visio.example.org"),
        "visio:domains.turn",
        "use a name like turn.visio.culture.gouv.fr",
    ),
    (
        "same-domain-twice",
        "culture",
        _set("domains", turn="sfu.visio.culture.gouv.fr"),
        "visio:domains.turn",
        "its own name",
    ),
    (
        "tls-files-without-key",
        "culture",
        lambda r: r["visio:tls"].pop("key_file"),
        "visio:tls.key_file",
        "cert_file and key_file",
    ),
    (
        "no-spare-for-sfu",
        "culture",
        _add_section("sizing", {"nodes": {"sfu": 2}}),
        "visio:sizing.nodes.sfu",
        "two serving nodes while one drains",
    ),
    (
        "pinned-sfu-below-demand",
        "culture",
        lambda r: (
            _set("cloud", flavors={"sfu": "c3-32"})(r),
            _add_section("sizing", {"nodes": {"sfu": 3}})(r),
        ),
        "visio:sizing.nodes.sfu",
        "pinned count gives 2",
    ),
    ("wrong-kind", "culture", _set("cloud", kind="vsphere"), "visio:cloud.kind", "'openstack', 'lab'"),
    (
        "lab-tier-outside-subnet",
        "lab",
        _set("network", edge_cidr="10.78.0.64/27"),
        "visio:network.edge_cidr",
        "inside the lab subnet 10.77.0.0/24",
    ),
    (
        "lab-tier-on-bridge",
        "lab",
        _set("network", admin_cidr="10.77.0.0/27"),
        "visio:network.admin_cidr",
        "bridge address 10.77.0.1",
    ),
    (
        "lab-with-bastion",
        "lab",
        _add_section("sizing", {"nodes": {"sfu": 2, "turn": 1, "db": 3, "redis": 3, "bastion": 1,
                                          "monitoring": 1}}),
        "visio:sizing.nodes.bastion",
        "use 0",
    ),
    (
        "lab-redis-below-sentinel-quorum",
        "lab",
        _add_section("sizing", {"nodes": {"sfu": 2, "turn": 1, "db": 3, "redis": 1, "bastion": 0,
                                          "monitoring": 1}}),
        "visio:sizing.nodes.redis",
        "Sentinel needs three Redis nodes for a quorum of 2 (a master and two replicas); use redis: 3",
    ),
    (
        "ministry-redis-two",
        "culture",
        _add_section("sizing", {"nodes": {"redis": 2}}),
        "visio:sizing.nodes.redis",
        "2 is below 3",
    ),
    (
        "lab-with-two-db",
        "lab",
        _add_section("sizing", {"nodes": {"sfu": 2, "turn": 1, "db": 2, "redis": 3, "bastion": 0,
                                          "monitoring": 1}}),
        "visio:sizing.nodes.db",
        "etcd needs three members",
    ),
    (
        "ministry-with-one-db",
        "culture",
        _add_section("sizing", {"nodes": {"db": 1}}),
        "visio:sizing.nodes.db",
        "use db: 3",
    ),
    (
        "lab-files-tls",
        "lab",
        _set("tls", source="files", cert_file="a.pem", key_file="b.pem"),
        "visio:tls.source",
        "use 'stack-ca'",
    ),
    (
        "lab-provisioning-only",
        "lab",
        _add_section("hosts", {"configure_on_up": False}),
        "visio:hosts.configure_on_up",
        "configured by the same `pulumi up` that starts them; use true",
    ),
    (
        "provisioning-only-not-a-boolean",
        "culture",
        _add_section("hosts", {"configure_on_up": "later"}),
        "visio:hosts.configure_on_up",
        "give true or false",
    ),
    (
        "unknown-boot-source",
        "culture",
        _set("cloud", boot_from="local-disk"),
        "visio:cloud.boot_from",
        "'volume' or 'image'",
    ),
    (
        "local-disk-boot-without-encrypted-local-disks",
        "culture",
        _set("cloud", boot_from="image"),
        "visio:cloud",
        "local_disk_encrypted: true only if the cloud encrypts local disks",
    ),
]


@pytest.mark.parametrize(
    ("base", "mutate", "field", "valid"), [case[1:] for case in INVALID], ids=[case[0] for case in INVALID]
)
def test_each_mistake_gets_its_own_clear_line(
    tmp_path: Path, base: str, mutate: Callable[[Raw], None], field: str, valid: str
) -> None:
    raw = _raw(base)
    mutate(raw)
    path = _write(tmp_path, raw)
    with pytest.raises(StackConfigError) as caught:
        load_stack_file(path)
    error = caught.value
    assert error.source.endswith("Pulumi.bad.yaml")
    assert str(error).startswith(error.source + ":"), "the message names the stack file first"
    assert len(error.problems) == 1, error.problems
    problem = error.problems[0]
    assert problem.startswith(field + ":"), problem
    assert valid in problem, problem


def test_the_table_has_many_distinct_messages() -> None:
    messages = set()
    for _id, base, mutate, _field, _valid in INVALID:
        raw = _raw(base)
        mutate(raw)
        with pytest.raises(StackConfigError) as caught:
            parse_stack_config(raw, source="stacks/Pulumi.x.yaml")
        messages.add(caught.value.problems[0])
    assert len(INVALID) >= 15
    assert len(messages) == len(INVALID)


def test_every_problem_is_reported_at_once() -> None:
    raw = _raw("culture")
    raw["visio:audience"]["users"] = 0
    raw["visio:network"]["admin_cidrs"] = ["0.0.0.0/0"]
    raw["visio:versions"]["livekit"] = "1.9.10"
    raw["visio:cloud"]["flavour"] = "x"
    with pytest.raises(StackConfigError) as caught:
        parse_stack_config(raw, source="stacks/Pulumi.culture.yaml")
    fields = sorted(p.split(":")[0] + ":" + p.split(":")[1] for p in caught.value.problems)
    assert fields == [
        "visio:audience.users",
        "visio:cloud.flavour",
        "visio:network.admin_cidrs",
        "visio:versions.livekit",
    ]
    assert "4 problem(s)" in str(caught.value)


def test_cross_checks_also_run_when_the_model_is_validated_directly() -> None:
    """Code that builds a StackConfig without parse_stack_config still gets the cross-section rules."""
    raw = _raw("culture")
    data = {key.removeprefix("visio:"): value for key, value in raw.items()}
    data["domains"] = {**data["domains"], "turn": "turn.example.org"}
    with pytest.raises(ValueError, match=r"domains\.turn: 'turn\.example\.org' is outside cloud\.dns_zone"):
        StackConfig.model_validate(data)


def test_missing_file_lists_known_stacks(tmp_path: Path) -> None:
    with pytest.raises(StackConfigError, match=r"stacks in .*: acceptance, culture, education"):
        load_stack_file(STACKS_DIR / "Pulumi.nosuch.yaml")


def test_not_yaml_and_no_config_mapping(tmp_path: Path) -> None:
    broken = tmp_path / "Pulumi.broken.yaml"
    broken.write_text("config: [unclosed\n", encoding="utf-8")
    with pytest.raises(StackConfigError, match="not valid YAML"):
        load_stack_file(broken)
    empty = tmp_path / "Pulumi.empty.yaml"
    empty.write_text("encryptionsalt: abc\n", encoding="utf-8")
    with pytest.raises(StackConfigError, match="no `config:` mapping"):
        load_stack_file(empty)


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        ("ssh-ed25519", "not an SSH public key line"),
        ("ssh-dss AAAAB3NzaC1kc3MAAACBAP", "is not accepted"),
        ("ssh-ed25519 !!!notbase64", "not valid base64"),
    ],
)
def test_ssh_key_problems(key: str, fragment: str) -> None:
    problem = ssh_key_problem(key)
    assert problem is not None and fragment in problem


def test_real_keys_from_the_stacks_are_accepted() -> None:
    for name in MINISTRY_STACKS:
        cloud = load_stack_file(STACKS_DIR / f"Pulumi.{name}.yaml").cloud
        assert isinstance(cloud, OpenStackCloud)
        assert all(ssh_key_problem(key) is None for key in cloud.ssh_public_keys)


def test_boot_source_and_host_configuration_defaults_keep_todays_behaviour() -> None:
    """A stack that says nothing boots from Cinder volumes and is configured by `pulumi up`."""
    config = parse_stack_config(_raw("culture"), source="x")
    assert isinstance(config.cloud, OpenStackCloud)
    assert config.cloud.boot_from == "volume"
    assert config.hosts.configure_on_up is True


def test_acceptance_stack_fits_the_quotas_tests_openstack_sets_even_grown() -> None:
    """Nova's default quotas (10 instances, 20 cores, 51200 MB) no longer hold three DB nodes (Patroni's
    etcd quorum), three Redis nodes (Sentinel) and the monitoring node: tests/openstack raises them to
    what the plan needs (`nova_quotas` in tests/openstack/acceptance_ops.py; the grow test one SFU node
    more). The bounds here keep the acceptance stack small enough for the one-machine test cloud."""
    from visio_infra.model.sizing.plan import plan

    config = load_stack_file(STACKS_DIR / "Pulumi.acceptance.yaml")
    assert isinstance(config.cloud, OpenStackCloud)
    assert (config.cloud.boot_from, config.hosts.configure_on_up) == ("image", False)
    assert config.cloud.local_disk_encrypted is True  # said in the file: the fake driver writes no disk
    sizing = plan(config)
    table = pricing.offer(config.cloud.offer)
    for extra_sfu in (0, 1):
        counts = {**sizing.counts, "sfu": sizing.counts["sfu"] + extra_sfu}
        cores = sum(n * table.flavor(sizing.flavors[role]).vcpu for role, n in counts.items())
        ram_mib = sum(n * table.flavor(sizing.flavors[role]).ram_gib * 1024 for role, n in counts.items())
        assert cores <= 28 + 2 * extra_sfu and ram_mib <= 53248 + 4096 * extra_sfu, (counts, cores, ram_mib)
    assert sum(sizing.counts.values()) == 14
