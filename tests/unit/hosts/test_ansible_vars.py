"""Variables handed to the Ansible roles (pure): firewall mirrors the security groups, own STUN/TURN
only, secrets kept apart from the non-secret group_vars, inconsistent input refused."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from pulumi_mocks import sample_config

from visio_infra.commands.configure import ConfigureError, extra_vars, secrets_from_outputs
from visio_infra.hosts import ansible_vars
from visio_infra.hosts.ansible_run import ProgressPrinter, scrub_artifacts
from visio_infra.hosts.ansible_vars import AnsibleVarsError, firewall_rules, group_vars, secret_vars
from visio_infra.hosts.inventory import build_inventory
from visio_infra.model.security_rules import security_rules
from visio_infra.model.topology import plan_nodes

COUNTS = {"sfu": 3, "turn": 3, "db": 3, "redis": 3, "bastion": 1, "monitoring": 1}


def _pem(kind: str, body: str) -> str:
    return f"-----BEGIN {kind}-----\n{body}\n-----END {kind}-----\n"


CERTS = {
    "ca_certificate": _pem("CERTIFICATE", "CA"),
    "signalling": {"cert": _pem("CERTIFICATE", "S"),
                   "key": _pem("PRIVATE KEY", "signalling-key-material-0123456789")},
    "turn": {"cert": _pem("CERTIFICATE", "T"),
             "key": _pem("PRIVATE KEY", "turn-key-material-0123456789abcdef")},
}
SECRETS = {
    "livekit_api_key": "APIkey123",
    "livekit_api_secret": "s" * 40,
    "turn_shared_secret": "t" * 40,
    "redis_password": "r" * 40,
    "db_password": "d" * 40,
    "db_replication_password": "p" * 40,
}


def _setup(config: Any = None, counts: dict[str, int] | None = None) -> tuple[Any, dict[str, Any]]:
    config = config or sample_config()
    nodes = plan_nodes(config, counts or COUNTS)
    public = {n.name: f"203.0.113.{10 + i}" for i, n in enumerate(nodes) if n.public}
    inventory = build_inventory(nodes, public, {"user": "debian", "bastion": {"host": "203.0.113.99"}})
    return config, inventory


def _vars(config: Any = None, **kwargs: Any) -> tuple[Any, dict[str, Any], dict[str, dict[str, Any]]]:
    config, inventory = _setup(config)
    kwargs.setdefault("livekit_binary", "/cache/livekit-server")
    return config, inventory, group_vars(config, inventory, CERTS, **kwargs)


def _ips(inventory: dict[str, Any], group: str, key: str = "private_ip") -> list[str]:
    return [h[key] for h in inventory["groups"][group]]


def test_firewall_has_one_entry_per_ingress_security_rule():
    config, inventory = _setup()
    for role in ("sfu", "turn", "db", "redis", "bastion", "monitoring"):
        ingress = [r for r in security_rules(config, COUNTS)[role] if r.direction == "ingress"]
        assert [r["comment"] for r in firewall_rules(config, inventory, role)] == [r.purpose for r in ingress]


def test_firewall_role_sources_become_node_addresses():
    config, inventory = _setup()
    redis = {r["comment"]: r for r in firewall_rules(config, inventory, "redis")}
    assert redis["redis-sfu"]["sources"] == _ips(inventory, "sfu")
    assert redis["redis-sfu"]["ports"] == "6379"
    db = {r["comment"]: r for r in firewall_rules(config, inventory, "db")}
    assert db["postgresql-app"]["sources"] == [str(config.network.app_cidr)]
    assert db["postgresql-peers"]["sources"] == _ips(inventory, "db")
    ssh = {r["comment"]: r for r in firewall_rules(config, inventory, "sfu")}["ssh-bastion"]
    assert ssh["sources"] == _ips(inventory, "bastion")


def test_firewall_ranges_and_world_sources():
    config, inventory = _setup()
    sfu = {r["comment"]: r for r in firewall_rules(config, inventory, "sfu")}
    udp = config.ports.sfu_udp_range
    assert sfu["media-udp"] == {"comment": "media-udp", "proto": "udp", "ports": f"{udp.start}-{udp.end}",
                                "sources": ["0.0.0.0/0"]}
    rules = firewall_rules(config, inventory, "sfu")
    metrics = [r["sources"] for r in rules if r["comment"] == "livekit-metrics"]
    # The ministry's scrapers and the stack's own monitoring node, nobody else.
    assert metrics == [[str(config.network.monitoring_cidr)], _ips(inventory, "monitoring")]


def test_the_host_firewall_admits_every_exporter_from_the_monitoring_range_and_node_only():
    config, inventory = _setup()
    monitoring = [str(config.network.monitoring_cidr)]
    expected = {
        "sfu": {"node-metrics": "9100", "livekit-metrics": "6789"},
        "turn": {"node-metrics": "9100"},
        "db": {
            "node-metrics": "9100", "postgres-metrics": "9187",
            "etcd-metrics": "2381", "patroni-metrics": "9547",
        },
        "redis": {"node-metrics": "9100", "redis-metrics": "9121"},
        "bastion": {"node-metrics": "9100"},
        "monitoring": {"node-metrics": "9100"},
    }
    scraper = _ips(inventory, "monitoring")
    for role, ports in expected.items():
        for comment, port in ports.items():
            rules = [r for r in firewall_rules(config, inventory, role) if r["comment"] == comment]
            assert {r["proto"] for r in rules} == {"tcp"} and {r["ports"] for r in rules} == {port}, role
            # The monitoring range and the stack's own monitoring node, nobody else.
            assert [r["sources"] for r in rules] == [monitoring, scraper], (role, comment)


def test_without_bastion_ssh_comes_from_the_admin_networks():
    config, inventory = _setup(counts={**COUNTS, "bastion": 0})
    ssh = {r["comment"]: r for r in firewall_rules(config, inventory, "turn")}["ssh-bastion"]
    assert ssh["sources"] == [str(c) for c in config.network.admin_cidrs]


def test_stun_and_turn_are_the_ministrys_own_turn_nodes():
    config, inventory, per_group = _vars()
    sfu = per_group["sfu"]
    turn_public = _ips(inventory, "turn", "public_ip")
    assert sfu["livekit_stun_servers"] == [f"{ip}:3478" for ip in turn_public]
    # Production: plain TURN on every node by address (a lost node leaves the others usable), TLS 443
    # by its name (the certificate's).
    assert {(s["host"], s["port"], s["protocol"]) for s in sfu["livekit_turn_servers"]} == {
        *((ip, 3478, proto) for ip in turn_public for proto in ("udp", "tcp")),
        (config.domains.turn, 443, "tls"),
    }
    assert len(turn_public) >= 2
    rendered = json.dumps(per_group).lower()
    for foreign in ("google", "twilio", "stun.l.", "cloudflare"):
        assert foreign not in rendered


def test_livekit_addresses_ports_and_drain():
    config, inventory, per_group = _vars()
    sfu = per_group["sfu"]
    assert sfu["livekit_redis_sentinel_addresses"] == [f"{ip}:26379" for ip in _ips(inventory, "redis")]
    assert sfu["livekit_redis_sentinel_master_name"] == "visio"
    redis = per_group["redis"]
    assert redis["redis_nodes"] == _ips(inventory, "redis") and redis["redis_sentinel_quorum"] == 2
    assert sfu["livekit_rtc_port_range_start"] == config.ports.sfu_udp_range.start
    assert sfu["livekit_rtc_udp_port"] is None
    assert sfu["livekit_rtc_tcp_port"] == config.ports.sfu_ice_tcp_port
    assert sfu["livekit_drain_timeout_seconds"] == config.upgrade.drain_deadline_seconds
    assert sfu["livekit_version"] == config.versions.livekit


def test_udp_mux_port_replaces_the_range():
    config = sample_config(ports={"sfu_udp_range": None, "sfu_udp_mux_port": 7882})
    _, _, per_group = _vars(config)
    assert per_group["sfu"]["livekit_rtc_udp_port"] == 7882
    assert per_group["sfu"]["livekit_rtc_port_range_start"] is None


def test_coturn_relays_only_to_sfu_nodes_and_serves_5349_through_443():
    _, inventory, per_group = _vars()
    turn = per_group["turn"]
    assert set(turn["coturn_allowed_peer_ips"]) == set(_ips(inventory, "sfu")) | set(
        _ips(inventory, "sfu", "public_ip"))
    assert turn["coturn_tls_listening_port"] == 443
    assert turn["common_port_redirects"] == [
        {"comment": "turns-5349 to the TLS listener", "proto": "tcp", "port": 5349, "to_port": 443}
    ]
    allowed = {(r["proto"], r["ports"]) for r in turn["common_firewall_rules"]}
    assert ("tcp", "443") in allowed and ("tcp", "5349") in allowed


def test_database_primary_replicas_and_app_network():
    config, inventory, per_group = _vars()
    db = per_group["db"]
    names = [h["name"] for h in inventory["groups"]["db"]]
    assert db["postgresql_primary_host"] == names[0]
    assert [r["name"] for r in db["postgresql_replicas"]] == names[1:]
    # Every DB node is a Patroni + etcd member; the first only starts first on a new cluster.
    assert [m["name"] for m in db["postgresql_members"]] == names and len(names) >= 3
    ips = [str(h["private_ip"]) for h in inventory["groups"]["db"]]
    assert [m["ip"] for m in db["postgresql_members"]] == ips
    assert db["postgresql_patroni_scope"] == config.ministry.slug
    db_rules = {(r["comment"], r["ports"]): r["sources"] for r in db["common_firewall_rules"]}
    peers = sorted(str(h["private_ip"]) for h in inventory["groups"]["db"])
    flows = (("etcd-client-peers", "2379"), ("etcd-peer-peers", "2380"), ("patroni-rest-peers", "8008"))
    for purpose, port in flows:
        assert sorted(db_rules[(purpose, port)]) == peers, purpose
    assert db["postgresql_app_cidrs"] == [str(config.network.app_cidr)]
    assert db["postgresql_backup"]["repo_type"] == "posix"


def test_production_backup_settings_pass_through():
    backup = {"repo_type": "s3", "repo_path": "/visio/x", "s3_bucket": "b", "s3_endpoint": "s3.example.fr",
              "s3_region": "fr-par"}
    _, _, per_group = _vars(backup=backup)
    assert per_group["db"]["postgresql_backup"] == backup


def test_no_secret_and_no_private_key_in_group_vars():
    _, _, per_group = _vars()
    rendered = json.dumps(per_group)
    assert "PRIVATE KEY" not in rendered
    for value in SECRETS.values():
        assert value not in rendered


def test_secret_vars_hold_secrets_and_private_keys():
    result = secret_vars(SECRETS, CERTS)
    assert result["visio_turn_shared_secret"] == SECRETS["turn_shared_secret"]
    assert result["visio_redis_password"] == SECRETS["redis_password"]
    assert result["postgresql_replication_password"] == SECRETS["db_replication_password"]
    assert result["livekit_tls_key"] == CERTS["signalling"]["key"]
    assert result["coturn_tls_key"] == CERTS["turn"]["key"]
    values = ansible_vars.secret_values(result)
    assert "signalling-key-material-0123456789" in values  # key lines, for the artifact scan


def _node_certs(inventory: dict[str, Any]) -> dict[str, Any]:
    """A stack CA's certificates: one certificate and key per node."""
    names = [h["name"] for hosts in inventory["groups"].values() for h in hosts]
    return {
        "ca_certificate": CERTS["ca_certificate"],
        "nodes": {
            name: {"cert": _pem("CERTIFICATE", f"cert-of-{name}"),
                   "key": _pem("PRIVATE KEY", f"key-material-of-{name}-0123456789")}
            for name in names
        },
    }


def test_per_node_certificates_reach_each_host_alone():
    config, inventory = _setup()
    certs = _node_certs(inventory)
    per_group = group_vars(config, inventory, certs, livekit_binary="/x")
    # The roles' certificate variables point at the node's own (a host variable), never a shared one.
    assert per_group["sfu"]["livekit_tls_cert"] == "{{ visio_node_certificate }}"
    assert per_group["turn"]["coturn_tls_cert"] == "{{ visio_node_certificate }}"
    assert per_group["db"]["postgresql_tls_cert"] == "{{ visio_node_certificate }}"
    hosts = ansible_vars.host_vars(inventory, certs)
    for name, values in hosts.items():
        assert values == {"visio_node_certificate": certs["nodes"][name]["cert"]}
    assert "PRIVATE KEY" not in json.dumps(hosts) + json.dumps(per_group)
    # Keys: in the secret file only, each role's key variable resolving to the host's own.
    secret = secret_vars(SECRETS, certs)
    assert secret["visio_node_private_keys"] == {n: e["key"] for n, e in certs["nodes"].items()}
    for var in ("livekit_tls_key", "coturn_tls_key", "postgresql_tls_key"):
        assert secret[var] == "{{ visio_node_private_keys[inventory_hostname] }}"
    values = ansible_vars.secret_values(secret)
    some = next(iter(certs["nodes"]))
    assert certs["nodes"][some]["key"] in values and f"key-material-of-{some}-0123456789" in values
    assert not any("{{" in v for v in values)  # the references are not secrets to scrub


def test_per_node_certificates_must_cover_every_node():
    config, inventory = _setup()
    certs = _node_certs(inventory)
    missing = inventory["groups"]["turn"][1]["name"]
    del certs["nodes"][missing]
    with pytest.raises(AnsibleVarsError, match=rf"nodes\.{missing}\.cert is missing"):
        group_vars(config, inventory, certs, livekit_binary="/x")
    assert ansible_vars.host_vars(inventory, CERTS) == {}  # per-purpose files: no host variable


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"redis_password": ""}, "missing secrets: redis_password"),
        ({"turn_shared_secret": "short"}, "shorter than 32"),
        ({"redis_pasword": "x" * 40}, "unknown secrets"),
    ],
)
def test_secret_vars_refuse_bad_secrets(change, message):
    with pytest.raises(AnsibleVarsError, match=message):
        secret_vars({**SECRETS, **change}, CERTS)


def test_refuses_missing_certificates_or_binary():
    config, inventory = _setup()
    with pytest.raises(AnsibleVarsError, match="no certificates"):
        group_vars(config, inventory, None, livekit_binary="/x")
    with pytest.raises(AnsibleVarsError, match=r"turn\.key"):
        group_vars(config, inventory, {**CERTS, "turn": {"cert": CERTS["turn"]["cert"]}}, livekit_binary="/x")
    with pytest.raises(AnsibleVarsError, match="livekit_binary"):
        group_vars(config, inventory, CERTS)
    with pytest.raises(AnsibleVarsError, match="sha256"):
        group_vars(config, inventory, CERTS, livekit_binary_url="https://mirror.example.fr/livekit-server")


def test_sfu_without_redis_is_refused():
    config, inventory = _setup(counts={**COUNTS, "redis": 0})
    with pytest.raises(AnsibleVarsError, match="Redis"):
        group_vars(config, inventory, CERTS, livekit_binary="/x")


def test_scrub_artifacts_counts_and_removes_secrets(tmp_path):
    (tmp_path / "job_events").mkdir()
    leaky = tmp_path / "job_events" / "1.json"
    leaky.write_text(json.dumps({"stdout": f"password={SECRETS['redis_password']}"}))
    clean = tmp_path / "stdout"
    clean.write_text("ok: [lab-redis-1]")
    assert scrub_artifacts(tmp_path, [SECRETS["redis_password"]]) == 1
    assert SECRETS["redis_password"] not in leaky.read_text()
    assert clean.read_text() == "ok: [lab-redis-1]"


def test_progress_lines_never_show_censored_results():
    out = io.StringIO()
    printer = ProgressPrinter(out)
    printer({"event": "runner_on_ok", "event_data": {
        "host": "lab-sfu-1", "role": "livekit", "task": "Write keys", "res": {"censored": "hidden"}}})
    printer({"event": "runner_on_failed", "event_data": {"host": "lab-db-1", "task": "Start",
                                                          "res": {"msg": "boom"}}})
    lines = out.getvalue().splitlines()
    assert "done" in lines[0] and "no_log" in lines[0] and "hidden" not in lines[0]
    assert "FAILED" in lines[1] and "boom" in lines[1]
    assert printer.failures == ["lab-db-1: Start: boom"]


def test_configure_reads_secrets_from_outputs():
    outputs = {
        "livekit_api_key": "APIx", "livekit_api_secret": "a" * 40, "turn_shared_secret": "b" * 40,
        "redis_password": "c" * 40, "db_replication_password": "e" * 40,
        "meet_env": {"DB_PASSWORD": "d" * 40},
    }
    assert secrets_from_outputs(outputs)["db_password"] == "d" * 40
    with pytest.raises(ConfigureError, match="db_replication_password"):
        secrets_from_outputs({k: v for k, v in outputs.items() if k != "db_replication_password"})


def test_configure_extra_vars():
    assert extra_vars(["postgresql_restore_mode=cleanup", "x=a=b"]) == {
        "postgresql_restore_mode": "cleanup", "x": "a=b"}
    with pytest.raises(ConfigureError, match="KEY=VALUE"):
        extra_vars(["novalue"])


def test_ntp_servers_come_from_the_stack_config():
    config = sample_config(cloud={"ntp_servers": ["ntp1.interieur.gouv.fr", "192.0.2.123"]})
    _, _, per_group = _vars(config)
    assert per_group["all"]["common_ntp_pools"] == ["ntp1.interieur.gouv.fr", "192.0.2.123"]
    default = _vars()[2]["all"]["common_ntp_pools"]
    assert default and all(server.endswith(".fr.pool.ntp.org") for server in default)


def test_chrony_renders_the_configured_sources_and_serves_no_one():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    from visio_infra.model.rendering import TEMPLATES_DIR

    templates = TEMPLATES_DIR.parent / "roles" / "common" / "templates"
    env = Environment(loader=FileSystemLoader(templates), undefined=StrictUndefined, autoescape=False)  # noqa: S701 (chrony config, not HTML)
    text = env.get_template("chrony.conf.j2").render(
        ansible_managed="managed", common_ntp_pools=["ntp1.interieur.gouv.fr", "ntp2.interieur.gouv.fr"]
    )
    assert [line.split()[1] for line in text.splitlines() if line.startswith("pool ")] == [
        "ntp1.interieur.gouv.fr", "ntp2.interieur.gouv.fr"
    ]
    assert "port 0" in text.splitlines() and "cmdport 0" in text.splitlines()


def test_roles_get_both_debian_mirrors_of_the_stack():
    config, _inventory, per_group = _vars()
    assert per_group["all"]["common_package_mirror"] == "https://miroir.exemple.gouv.fr/debian"
    assert per_group["all"]["common_security_mirror"] == "https://miroir.exemple.gouv.fr/debian-security"
    own = config.model_copy(
        update={"cloud": config.cloud.model_copy(update={"security_mirror": "https://secu.exemple.gouv.fr/d"})}
    )
    assert _vars(own)[2]["all"]["common_security_mirror"] == "https://secu.exemple.gouv.fr/d"


def test_a_lab_config_without_its_host_mirrors_is_refused_not_rendered_with_none(tmp_path):
    from visio_infra.model.apt_sources import with_node_mirrors
    from visio_infra.model.stack_file import load_stack_file, stack_file

    lab = load_stack_file(stack_file("lab"))
    nodes = plan_nodes(lab, {"sfu": 0, "turn": 0, "db": 0, "redis": 1, "bastion": 0})
    inventory = build_inventory(nodes, {}, {})
    with pytest.raises(AnsibleVarsError, match="with_node_mirrors"):
        group_vars(lab, inventory, CERTS)
    (tmp_path / "sources.list").write_text("deb http://mirror.example/debian bookworm main\n")
    filled = group_vars(with_node_mirrors(lab, tmp_path), inventory, CERTS)["all"]
    assert filled["common_package_mirror"] == "http://mirror.example/debian"
    assert filled["common_security_mirror"] == "http://mirror.example/debian-security"
