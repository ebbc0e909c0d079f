"""The security rules are exactly the flows each role needs (pure, no Pulumi)."""

from __future__ import annotations

import pytest
from pulumi_mocks import sample_config

from visio_infra.model.config.base import ROLES
from visio_infra.model.security_rules import (
    METRICS_PORTS,
    SENSITIVE_TCP_PORTS,
    Rule,
    security_rules,
    world_open_sensitive,
)


def _source(rule: Rule) -> str:
    return f"group:{rule.remote_role}" if rule.remote_role else str(rule.remote_cidr)


def _ingress(rules: list[Rule]) -> set[tuple[str | None, int | None, int | None, str]]:
    return {(r.protocol, r.port_min, r.port_max, _source(r)) for r in rules if r.direction == "ingress"}


@pytest.fixture(scope="module")
def rules() -> dict[str, list[Rule]]:
    counts = {"sfu": 4, "turn": 3, "db": 2, "redis": 3, "bastion": 1, "monitoring": 1}
    return security_rules(sample_config(), counts)


def test_one_rule_list_per_role(rules):
    assert set(rules) == set(ROLES)


def test_sfu_exactly_tls_ice_media_range_and_peer_fallback(rules):
    assert _ingress(rules["sfu"]) == {
        ("tcp", 443, 443, "0.0.0.0/0"),
        ("tcp", 7881, 7881, "0.0.0.0/0"),
        ("tcp", 7880, 7880, "group:sfu"),
        ("udp", 50000, 60000, "0.0.0.0/0"),
        ("tcp", 6789, 6789, "10.40.0.0/28"),
        ("tcp", 6789, 6789, "group:monitoring"),
        ("tcp", 9100, 9100, "10.40.0.0/28"),  # node exporter
        ("tcp", 9100, 9100, "group:monitoring"),
        ("tcp", 22, 22, "group:bastion"),
    }


def test_sfu_mux_port_replaces_the_range():
    config = sample_config(ports={"sfu_udp_range": None, "sfu_udp_mux_port": 7882, "sfu_ice_tcp_port": 7890})
    ingress = _ingress(security_rules(config)["sfu"])
    assert ("udp", 7882, 7882, "0.0.0.0/0") in ingress
    assert ("tcp", 7890, 7890, "0.0.0.0/0") in ingress
    assert not any(proto == "udp" and low != 7882 for proto, low, _, _ in ingress)


def test_turn_listeners_and_relay_range(rules):
    assert _ingress(rules["turn"]) == {
        ("udp", 3478, 3478, "0.0.0.0/0"),
        ("tcp", 3478, 3478, "0.0.0.0/0"),
        ("tcp", 443, 443, "0.0.0.0/0"),
        ("tcp", 5349, 5349, "0.0.0.0/0"),
        ("udp", 49152, 65535, "0.0.0.0/0"),
        ("tcp", 9641, 9641, "10.40.0.0/28"),
        ("tcp", 9641, 9641, "group:monitoring"),
        ("tcp", 9100, 9100, "10.40.0.0/28"),  # node exporter (with the allocation figures)
        ("tcp", 9100, 9100, "group:monitoring"),
        ("tcp", 22, 22, "group:bastion"),
    }


def test_turn_relay_range_follows_config():
    config = sample_config(ports={"turn_relay_range": {"start": 40000, "end": 40999}})
    assert ("udp", 40000, 40999, "0.0.0.0/0") in _ingress(security_rules(config)["turn"])


def test_db_only_from_app_cidr_and_db_peers(rules):
    assert _ingress(rules["db"]) == {
        ("tcp", 5432, 5432, "10.30.0.0/24"),
        ("tcp", 5432, 5432, "group:db"),
        # etcd (client, peer) and Patroni's REST API: DB nodes among themselves, REST from operators too
        ("tcp", 2379, 2379, "group:db"),
        ("tcp", 2380, 2380, "group:db"),
        ("tcp", 8008, 8008, "group:db"),
        ("tcp", 8008, 8008, "192.0.2.0/28"),
        ("tcp", 8008, 8008, "2001:db8::/48"),
        # Prometheus: node and PostgreSQL exporters, etcd's metrics listener, Patroni's /metrics
        ("tcp", 9100, 9100, "10.40.0.0/28"),
        ("tcp", 9187, 9187, "10.40.0.0/28"),
        ("tcp", 2381, 2381, "10.40.0.0/28"),
        ("tcp", 9547, 9547, "10.40.0.0/28"),
        # ... and the same from the stack's own monitoring node
        ("tcp", 9100, 9100, "group:monitoring"),
        ("tcp", 9187, 9187, "group:monitoring"),
        ("tcp", 2381, 2381, "group:monitoring"),
        ("tcp", 9547, 9547, "group:monitoring"),
        ("tcp", 22, 22, "group:bastion"),
    }


def test_redis_and_sentinel_only_from_sfu_meet_and_peers(rules):
    assert _ingress(rules["redis"]) == {
        ("tcp", 6379, 6379, "group:sfu"),
        ("tcp", 26379, 26379, "group:sfu"),
        ("tcp", 6379, 6379, "10.30.0.0/24"),  # Meet (app range), through the Sentinels
        ("tcp", 26379, 26379, "10.30.0.0/24"),
        ("tcp", 6379, 6379, "group:redis"),  # replication, and Sentinel watching every instance
        ("tcp", 26379, 26379, "group:redis"),  # Sentinels talk to each other
        ("tcp", 9100, 9100, "10.40.0.0/28"),  # node exporter
        ("tcp", 9121, 9121, "10.40.0.0/28"),  # Redis exporter
        ("tcp", 9100, 9100, "group:monitoring"),  # both, from the stack's own monitoring node
        ("tcp", 9121, 9121, "group:monitoring"),
        ("tcp", 22, 22, "group:bastion"),
    }
    single = _ingress(security_rules(sample_config(), {"redis": 1})["redis"])
    assert not any(source == "group:redis" for *_, source in single)


def test_bastion_ssh_only_from_admin_cidrs_with_right_ethertype(rules):
    bastion = [r for r in rules["bastion"] if r.direction == "ingress"]
    assert {(r.remote_cidr or r.remote_role, r.ethertype, r.port_min) for r in bastion} == {
        ("192.0.2.0/28", "IPv4", 22),
        ("2001:db8::/48", "IPv6", 22),
        ("10.40.0.0/28", "IPv4", 9100),  # node exporter, from the monitoring range
        ("monitoring", "IPv4", 9100),  # and from the stack's monitoring node
    }


def test_ssh_on_every_node_only_from_the_bastion_group(rules):
    for role, role_rules in rules.items():
        ssh = [r for r in role_rules if r.direction == "ingress" and r.covers("tcp", 22)]
        assert ssh, role
        for rule in ssh:
            if role == "bastion":
                assert rule.remote_cidr in {"192.0.2.0/28", "2001:db8::/48"}
            else:
                assert rule.remote_role == "bastion"


def test_nothing_sensitive_is_world_open_and_7880_only_from_sfu_peers(rules):
    for role_rules in rules.values():
        for rule in role_rules:
            assert world_open_sensitive(rule) == [], rule
            if rule.direction == "ingress" and rule.covers("tcp", 7880):
                # The signalling fronts' fallback: SFU nodes reach each other's LiveKit, nobody else.
                assert (rule.role, rule.remote_role, rule.remote_cidr) == ("sfu", "sfu", None), rule
    assert any(r.covers("tcp", 7880) and r.remote_role == "sfu" for r in rules["sfu"])


def test_world_open_sensitive_detects_bad_rules():
    assert world_open_sensitive(Rule("db", "x", "ingress", "tcp", 5432, 5432, remote_cidr="0.0.0.0/0")) == [
        "PostgreSQL"
    ]
    everything = Rule("sfu", "x", "ingress", None, None, None, remote_cidr=None)
    assert set(world_open_sensitive(everything)) == set(SENSITIVE_TCP_PORTS.values())
    wide = Rule("sfu", "x", "ingress", "tcp", 1, 65535, "IPv6", remote_cidr="::/0")
    assert "LiveKit plain HTTP API" in world_open_sensitive(wide)
    # UDP ranges, egress and restricted sources are fine.
    udp = Rule("sfu", "x", "ingress", "udp", 1024, 65535, remote_cidr="0.0.0.0/0")
    assert world_open_sensitive(udp) == []
    assert world_open_sensitive(Rule("sfu", "x", "egress", None, None, None, remote_cidr="0.0.0.0/0")) == []
    assert world_open_sensitive(Rule("db", "x", "ingress", "tcp", 5432, 5432, remote_cidr="10.0.0.0/8")) == []


def test_metrics_only_from_monitoring_cidr_and_the_monitoring_node(rules):
    for role, role_rules in rules.items():
        for rule in role_rules:
            if "metrics" in rule.purpose and rule.direction == "ingress":
                assert rule.remote_cidr == "10.40.0.0/28" or rule.remote_role == "monitoring", (role, rule)


def test_monitoring_node_serves_prometheus_to_scrapers_and_bastion_and_scrapes_every_exporter(rules):
    assert _ingress(rules["monitoring"]) == {
        ("tcp", 9090, 9090, "10.40.0.0/28"),
        ("tcp", 9090, 9090, "group:bastion"),
        ("tcp", 9100, 9100, "10.40.0.0/28"),  # its own node exporter
        ("tcp", 9100, 9100, "group:monitoring"),
        ("tcp", 22, 22, "group:bastion"),
    }
    egress = [r for r in rules["monitoring"] if r.direction == "egress"]
    scraped = {(r.remote_role, r.port_min) for r in egress if r.remote_role}
    assert scraped == {(role, port) for role, ports in METRICS_PORTS.items() for port in ports.values()}
    world = {(r.protocol, r.port_min) for r in egress if not r.remote_role}
    assert ("tcp", 3478) in world and ("tcp", 443) in world  # the TURN and TLS probes of public addresses
    assert all(r.protocol is not None for r in rules["monitoring"])  # never "any traffic"


def test_without_a_monitoring_node_only_the_ministry_scrapers_reach_metrics():
    config = sample_config(monitoring={"prometheus": "external"})
    rules = security_rules(config)
    metrics = [r for rs in rules.values() for r in rs if "metrics" in r.purpose and r.direction == "ingress"]
    assert metrics and all(r.remote_cidr == "10.40.0.0/28" for r in metrics)


def test_every_port_prometheus_scrapes_is_open_to_the_monitoring_range(rules):
    """roles/monitoring scrapes each job's port on every host of its groups: each of those ports is
    open to the monitoring range on that role (a forgotten one shows as a target down, not here)."""
    import pathlib

    import yaml

    defaults = pathlib.Path(__file__).resolve().parents[3] / "roles" / "monitoring" / "defaults" / "main.yml"
    jobs = yaml.safe_load(defaults.read_text(encoding="utf-8"))["monitoring_scrape_jobs"]
    missing = [
        f"{job['name']} {job['port']} on {role}"
        for job in jobs
        for role in job["groups"]
        if role in rules
        and not any(
            r.direction == "ingress" and r.remote_cidr == "10.40.0.0/28" and r.covers("tcp", int(job["port"]))
            for r in rules[role]
        )
    ]
    assert not missing, missing
    node_job = next(job for job in jobs if job["name"] == "node")
    assert set(ROLES) <= set(node_job["groups"])  # the node exporter runs on every role


def test_rule_keys_unique_and_stable(rules):
    for role, role_rules in rules.items():
        keys = [r.key for r in role_rules]
        assert len(keys) == len(set(keys)), role
    assert rules["bastion"][1].key == "ssh-admin-tcp-2001-db8-48-ipv6"
    assert rules["sfu"][0].key == "signalling-tls-tcp-world-ipv4"


def test_media_roles_may_send_anywhere_in_both_families(rules):
    for role in ("sfu", "turn"):
        egress = {(r.ethertype, r.remote_cidr, r.protocol) for r in rules[role] if r.direction == "egress"}
        assert egress == {("IPv4", "0.0.0.0/0", None), ("IPv6", "::/0", None)}


def test_db_redis_and_bastion_only_reach_names_time_packages_and_their_peers(rules):
    allowed_world = {("udp", 53), ("tcp", 53), ("udp", 123), ("tcp", 80), ("tcp", 443)}
    for role in ("db", "redis", "bastion"):
        egress = [r for r in rules[role] if r.direction == "egress"]
        assert all(r.protocol is not None and r.port_min == r.port_max for r in egress), role
        world = [r for r in egress if r.remote_role is None]
        assert {(r.protocol, r.port_min) for r in world} == allowed_world, role
        for ethertype, cidr in (("IPv4", "0.0.0.0/0"), ("IPv6", "::/0")):
            assert {(r.protocol, r.port_min) for r in world if r.ethertype == ethertype} == allowed_world
            assert all(r.remote_cidr == cidr for r in world if r.ethertype == ethertype)
        peers = {(r.remote_role, r.protocol, r.port_min) for r in egress if r.remote_role}
        expected = {
            "db": {("db", "tcp", 5432), ("db", "tcp", 2379), ("db", "tcp", 2380), ("db", "tcp", 8008)},
            "redis": {("redis", "tcp", 6379), ("redis", "tcp", 26379)},  # replication and Sentinel
            "bastion": {(target, "tcp", 22) for target in ("sfu", "turn", "db", "redis", "monitoring")},
        }[role]
        assert peers == expected, role
