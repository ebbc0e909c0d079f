"""Who may reach which port of which role, as pure data.

One list of `Rule`s per role is derived from the stack config. The OpenStack program turns each rule
into a security-group rule, the policy pack and the tests read the same list, so "exactly the ports
a role needs" is written once. Anything not listed here is closed: groups are created without
OpenStack's default rules and egress is listed explicitly.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from visio_infra.model.config.base import ROLES
from visio_infra.model.config.stack import StackConfig

SSH_PORT = 22
HTTPS_PORT = 443
"""TLS signalling on SFU nodes (a local TLS terminator in front of LiveKit 7880) and TURN over TLS."""
LIVEKIT_HTTP_PORT = 7880
"""LiveKit's plain HTTP/WebSocket listener: reached by the TLS terminator of its own node and, as
their fallback, by the peer SFU nodes' terminators (private side only); never open to anyone else."""
LIVEKIT_METRICS_PORT = 6789
"""LiveKit `prometheus.port`, reachable from the monitoring CIDR only."""
TURN_PORT = 3478
TURNS_PORT = 5349
COTURN_METRICS_PORT = 9641
"""coturn's Prometheus exporter (`prometheus` option), reachable from the monitoring CIDR only.

The rule stays even where the installed coturn has no exporter (Debian 12's 4.6.1 build): the role
decides at converge time (`coturn_prometheus: auto`), after the security group exists, so a coturn
upgrade that brings the exporter works without an infrastructure change. Nothing listens behind it
meanwhile, which the verification checks (tests/verify: no listener on a disabled exporter's port)."""
POSTGRES_PORT = 5432
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
ETCD_METRICS_PORT = 2381
"""etcd's `listen-metrics-urls` (/metrics, /health; plain HTTP on the private address): its client port
requires the stack CA's client certificates, which Prometheus does not hold."""
PATRONI_REST_PORT = 8008
PATRONI_METRICS_PORT = 9547
"""roles/postgresql's relay of Patroni's /metrics (plain HTTP on the private address)."""
REDIS_PORT = 6379
NODE_EXPORTER_PORT = 9100
"""Debian's prometheus-node-exporter on every node (roles/common), on the private address."""
POSTGRES_EXPORTER_PORT = 9187
"""Debian's prometheus-postgres-exporter on DB nodes (roles/postgresql), on the private address."""
REDIS_EXPORTER_PORT = 9121
"""Debian's prometheus-redis-exporter on Redis nodes (roles/redis), on the private address."""
PROMETHEUS_PORT = 9090
"""The monitoring node's Prometheus (API, UI, dashboard, federation): from the ministry's scrapers
(`network.monitoring_cidr`) and through the bastion only."""
SENTINEL_PORT = 26379
"""Redis Sentinel: clients (LiveKit, Meet) ask it for the current master; sentinels talk to each other."""
REDIS_SENTINEL_MASTER_NAME = "visio"
"""The name the Sentinels monitor the Redis master under; LiveKit and Meet ask for it by this name."""

SENSITIVE_TCP_PORTS: dict[int, str] = {
    SSH_PORT: "SSH",
    POSTGRES_PORT: "PostgreSQL",
    REDIS_PORT: "Redis",
    ETCD_CLIENT_PORT: "etcd client",
    ETCD_PEER_PORT: "etcd peer",
    PATRONI_REST_PORT: "Patroni REST API",
    LIVEKIT_HTTP_PORT: "LiveKit plain HTTP API",
    LIVEKIT_METRICS_PORT: "LiveKit metrics",
    COTURN_METRICS_PORT: "coturn metrics",
    NODE_EXPORTER_PORT: "node exporter metrics",
    POSTGRES_EXPORTER_PORT: "PostgreSQL exporter metrics",
    REDIS_EXPORTER_PORT: "Redis exporter metrics",
    ETCD_METRICS_PORT: "etcd metrics",
    SENTINEL_PORT: "Redis Sentinel",
}
"""TCP ports that must never be reachable from the whole Internet (checked by the policy pack)."""

METRICS_PORTS: dict[str, dict[str, int]] = {
    "sfu": {"node-metrics": NODE_EXPORTER_PORT, "livekit-metrics": LIVEKIT_METRICS_PORT},
    # TURN allocations reach Prometheus through the node exporter (roles/coturn's textfile timer).
    "turn": {"node-metrics": NODE_EXPORTER_PORT, "coturn-metrics": COTURN_METRICS_PORT},
    "db": {
        "node-metrics": NODE_EXPORTER_PORT,
        "postgres-metrics": POSTGRES_EXPORTER_PORT,
        "etcd-metrics": ETCD_METRICS_PORT,
        # Patroni's /metrics through roles/postgresql's relay (Patroni 3.0.2 writes samples Prometheus
        # rejects); the REST API itself stays closed to the monitoring.
        "patroni-metrics": PATRONI_METRICS_PORT,
    },
    "redis": {"node-metrics": NODE_EXPORTER_PORT, "redis-metrics": REDIS_EXPORTER_PORT},
    "bastion": {"node-metrics": NODE_EXPORTER_PORT},
    "monitoring": {"node-metrics": NODE_EXPORTER_PORT},
}
"""Metrics endpoints per role, each opened to `network.monitoring_cidr` only: the ports Prometheus
scrapes (roles/monitoring's `monitoring_scrape_jobs`). A role that installs an exporter adds it here."""

WORLD_V4 = "0.0.0.0/0"
WORLD_V6 = "::/0"

Direction = Literal["ingress", "egress"]
Protocol = Literal["tcp", "udp"]


@dataclass(frozen=True)
class Rule:
    """One allowed flow into (or out of) a role's security group.

    The source is either a CIDR (`remote_cidr`) or every member of another role's group
    (`remote_role`), never both. `protocol=None` with no ports means any traffic (egress only).
    """

    role: str
    purpose: str
    direction: Direction
    protocol: Protocol | None
    port_min: int | None
    port_max: int | None
    ethertype: Literal["IPv4", "IPv6"] = "IPv4"
    remote_cidr: str | None = None
    remote_role: str | None = None

    @property
    def key(self) -> str:
        """Stable, unique-per-role name part (used in resource names: changing it replaces the rule)."""
        if self.remote_role:
            source = f"from-{self.remote_role}"
        elif self.world_open:
            source = "world"
        else:
            source = re.sub(r"[^0-9a-f]+", "-", str(self.remote_cidr).lower()).strip("-")
        return f"{self.purpose}-{self.protocol or 'all'}-{source}-{self.ethertype.lower()}"

    @property
    def description(self) -> str:
        ports = "" if self.port_min is None else (
            f" {self.port_min}" if self.port_min == self.port_max else f" {self.port_min}-{self.port_max}"
        )
        source = f"group {self.remote_role}" if self.remote_role else (self.remote_cidr or "anywhere")
        way = "from" if self.direction == "ingress" else "to"
        return f"{self.purpose}: {self.protocol or 'any'}{ports} {way} {source}"

    @property
    def world_open(self) -> bool:
        """True when anyone on the Internet matches this rule."""
        return self.remote_role is None and self.remote_cidr in (None, WORLD_V4, WORLD_V6)

    def covers(self, protocol: str, port: int) -> bool:
        if self.protocol is not None and self.protocol != protocol:
            return False
        if self.port_min is None:
            return True
        return self.port_min <= port <= (self.port_max if self.port_max is not None else self.port_min)


def _ethertype(cidr: str) -> Literal["IPv4", "IPv6"]:
    return "IPv6" if ipaddress.ip_network(cidr).version == 6 else "IPv4"


def _from_cidr(role: str, purpose: str, protocol: Protocol, low: int, high: int, cidr: str) -> Rule:
    return Rule(role, purpose, "ingress", protocol, low, high, _ethertype(cidr), remote_cidr=cidr)


def _from_world(role: str, purpose: str, protocol: Protocol, low: int, high: int | None = None) -> Rule:
    # Floating IPs and subnets are IPv4 only, so the world is 0.0.0.0/0.
    return Rule(role, purpose, "ingress", protocol, low, high or low, "IPv4", remote_cidr=WORLD_V4)


def _from_role(role: str, purpose: str, protocol: Protocol, port: int, source: str) -> Rule:
    return Rule(role, purpose, "ingress", protocol, port, port, "IPv4", remote_role=source)


def _sfu(config: StackConfig) -> list[Rule]:
    ports = config.ports
    rules = [
        _from_world("sfu", "signalling-tls", "tcp", HTTPS_PORT),
        _from_world("sfu", "ice-tcp", "tcp", ports.sfu_ice_tcp_port),
        # Each node's TLS front falls back to its peers' LiveKit when its own is stopped or drained.
        _from_role("sfu", "livekit-peers", "tcp", LIVEKIT_HTTP_PORT, "sfu"),
    ]
    if ports.sfu_udp_range is not None:
        media = ports.sfu_udp_range
        rules.append(_from_world("sfu", "media-udp", "udp", media.start, media.end))
    else:
        assert ports.sfu_udp_mux_port is not None  # config guarantees one of the two
        rules.append(_from_world("sfu", "media-udp-mux", "udp", ports.sfu_udp_mux_port))
    return rules


def _turn(config: StackConfig) -> list[Rule]:
    relay = config.ports.turn_relay_range
    return [
        _from_world("turn", "turn-udp", "udp", TURN_PORT),
        _from_world("turn", "turn-tcp", "tcp", TURN_PORT),
        _from_world("turn", "turns-443", "tcp", HTTPS_PORT),
        _from_world("turn", "turns-5349", "tcp", TURNS_PORT),
        _from_world("turn", "relay-udp", "udp", relay.start, relay.end),
    ]


def _db(config: StackConfig) -> list[Rule]:
    return [
        _from_cidr("db", "postgresql-app", "tcp", POSTGRES_PORT, POSTGRES_PORT, str(config.network.app_cidr)),
        # Streaming replication and pgBackRest between the primary and its replicas.
        _from_role("db", "postgresql-peers", "tcp", POSTGRES_PORT, "db"),
        # Patroni's consensus store (etcd client and peer traffic) and Patroni's REST API (leader
        # checks, switchover), between DB nodes and from the operators only.
        _from_role("db", "etcd-client-peers", "tcp", ETCD_CLIENT_PORT, "db"),
        _from_role("db", "etcd-peer-peers", "tcp", ETCD_PEER_PORT, "db"),
        _from_role("db", "patroni-rest-peers", "tcp", PATRONI_REST_PORT, "db"),
        *(
            _from_cidr("db", "patroni-rest-admin", "tcp", PATRONI_REST_PORT, PATRONI_REST_PORT, str(cidr))
            for cidr in config.network.admin_cidrs
        ),
    ]


def _redis(config: StackConfig, counts: Mapping[str, int]) -> list[Rule]:
    app = str(config.network.app_cidr)
    # LiveKit (SFU) and Meet (app range) ask a Sentinel for the master, then talk to the master.
    rules = [
        _from_role("redis", "redis-sfu", "tcp", REDIS_PORT, "sfu"),
        _from_role("redis", "sentinel-sfu", "tcp", SENTINEL_PORT, "sfu"),
        _from_cidr("redis", "redis-app", "tcp", REDIS_PORT, REDIS_PORT, app),
        _from_cidr("redis", "sentinel-app", "tcp", SENTINEL_PORT, SENTINEL_PORT, app),
    ]
    if counts.get("redis", 1) > 1:
        # Replication (replica -> master) and Sentinel (sentinel -> every instance and every sentinel).
        rules.append(_from_role("redis", "redis-replication", "tcp", REDIS_PORT, "redis"))
        rules.append(_from_role("redis", "sentinel-peers", "tcp", SENTINEL_PORT, "redis"))
    return rules


def _monitoring(config: StackConfig) -> list[Rule]:
    return [
        _from_cidr(
            "monitoring", "prometheus-scrapers", "tcp", PROMETHEUS_PORT, PROMETHEUS_PORT,
            str(config.network.monitoring_cidr),
        ),
        # Operators reach the dashboard through the bastion (an SSH tunnel); in the lab, from admin_cidrs.
        _from_role("monitoring", "prometheus-bastion", "tcp", PROMETHEUS_PORT, "bastion"),
    ]


def _bastion(config: StackConfig) -> list[Rule]:
    return [
        _from_cidr("bastion", "ssh-admin", "tcp", SSH_PORT, SSH_PORT, str(cidr))
        for cidr in config.network.admin_cidrs
    ]


WORLDS: tuple[tuple[Literal["IPv4", "IPv6"], str], ...] = (("IPv4", WORLD_V4), ("IPv6", WORLD_V6))

OPEN_EGRESS_ROLES = frozenset({"sfu", "turn"})
"""Roles that answer clients anywhere (media, relayed peers): any outbound traffic."""

BASE_EGRESS: tuple[tuple[str, Protocol, int], ...] = (
    ("dns", "udp", 53),
    ("dns-tcp", "tcp", 53),
    ("ntp", "udp", 123),
    ("http", "tcp", 80),  # the Debian package mirror
    ("https", "tcp", HTTPS_PORT),  # the package mirror, object storage
)
"""What every other node may open outbound: names, time, packages. Nothing else leaves a DB, Redis
or bastion node, so a compromised one cannot reach arbitrary services."""


def _to_role(role: str, purpose: str, protocol: Protocol, port: int, target: str) -> Rule:
    return Rule(role, purpose, "egress", protocol, port, port, "IPv4", remote_role=target)


def _egress(role: str, counts: Mapping[str, int]) -> list[Rule]:
    if role in OPEN_EGRESS_ROLES:
        return [
            Rule(role, "egress", "egress", None, None, None, family, remote_cidr=world)
            for family, world in WORLDS
        ]
    rules = [
        Rule(role, f"egress-{purpose}", "egress", protocol, port, port, family, remote_cidr=world)
        for purpose, protocol, port in BASE_EGRESS
        for family, world in WORLDS
    ]
    if role == "db":
        # A replica connects to the primary (streaming replication, pg_basebackup, pgBackRest).
        rules.append(_to_role("db", "egress-postgresql-peers", "tcp", POSTGRES_PORT, "db"))
        rules += [
            _to_role("db", f"egress-{purpose}", "tcp", port, "db")
            for purpose, port in (
                ("etcd-client-peers", ETCD_CLIENT_PORT),
                ("etcd-peer-peers", ETCD_PEER_PORT),
                ("patroni-rest-peers", PATRONI_REST_PORT),
            )
        ]
    if role == "monitoring":
        # Scrapes every exporter at its private address; probes the public TURN listener (3478/tcp;
        # TLS 443 is in BASE_EGRESS) at the nodes' floating addresses, hence the world.
        rules += [
            _to_role("monitoring", f"egress-{purpose}", "tcp", port, target)
            for target, ports in METRICS_PORTS.items()
            for purpose, port in ports.items()
        ]
        rules += [
            Rule("monitoring", "egress-turn-probe", "egress", "tcp", TURN_PORT, TURN_PORT, family,
                 remote_cidr=world)
            for family, world in WORLDS
        ]
    if role == "redis" and counts.get("redis", 1) > 1:
        rules.append(_to_role("redis", "egress-redis-replication", "tcp", REDIS_PORT, "redis"))
        rules.append(_to_role("redis", "egress-sentinel-peers", "tcp", SENTINEL_PORT, "redis"))
    if role == "bastion":
        rules += [
            _to_role("bastion", f"egress-ssh-{target}", "tcp", SSH_PORT, target)
            for target in ROLES
            if target != "bastion"
        ]
    return rules


def security_rules(config: StackConfig, counts: Mapping[str, int] | None = None) -> dict[str, list[Rule]]:
    """Every allowed flow, per role. `counts` (nodes per role) only adds peer rules when a role has peers."""
    counts = counts or {}
    monitoring = str(config.network.monitoring_cidr)
    service = {
        "sfu": _sfu(config),
        "turn": _turn(config),
        "db": _db(config),
        "redis": _redis(config, counts),
        "bastion": _bastion(config),
        "monitoring": _monitoring(config),
    }
    result: dict[str, list[Rule]] = {}
    for role in ROLES:
        rules = list(service[role])
        for purpose, port in METRICS_PORTS.get(role, {}).items():
            rules.append(_from_cidr(role, purpose, "tcp", port, port, monitoring))
            if config.monitoring.node_count:
                rules.append(_from_role(role, purpose, "tcp", port, "monitoring"))
        if role != "bastion":
            rules.append(_from_role(role, "ssh-bastion", "tcp", SSH_PORT, "bastion"))
        rules += _egress(role, counts)
        keys = [rule.key for rule in rules]
        assert len(keys) == len(set(keys)), f"duplicate rule keys for {role}: {keys}"
        result[role] = rules
    return result


def world_open_sensitive(rule: Rule) -> list[str]:
    """Names of sensitive ports a rule opens to the whole Internet (empty when the rule is fine)."""
    if rule.direction != "ingress" or not rule.world_open:
        return []
    return [name for port, name in SENSITIVE_TCP_PORTS.items() if rule.covers("tcp", port)]
