"""What a correctly configured node looks like, derived from the stack config, the inventory and the
roles' own variables (pure: no SSH, no Pulumi).

Ports come from `visio_infra.model.security_rules` (the same list the security groups and the nftables
rules are built from), paths and service users from the roles' `defaults/`/`vars/` files, so a
changed port or path is changed in one place and the suite follows. The only facts written here are
the ones that *are* the specification: which systemd units a role runs, and that secret-bearing
files give nothing to "others".
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from visio_infra.model.config.stack import StackConfig
from visio_infra.model.security_rules import (
    HTTPS_PORT,
    LIVEKIT_HTTP_PORT,
    METRICS_PORTS,
    POSTGRES_PORT,
    SSH_PORT,
    TURNS_PORT,
    security_rules,
)

ROOT = Path(__file__).resolve().parents[2]

COMMON_SERVICES = ("ssh", "nftables", "systemd-journald")
"""Units every node runs (roles/common)."""

TIME_SERVICE = "chrony"
"""The time daemon roles/common runs on a VM. A container shares the host kernel's clock and cannot set
it, so the role runs none there (see `common_services`)."""

CLOCK_MAX_OFFSET_SECONDS = 1.0
"""How far a container's clock may be from the controller's (beyond half the command's round trip).
It is the host kernel's clock, so anything measurable is a broken host; TURN REST credentials and
LiveKit tokens are checked to the second."""


def common_services(in_container: bool) -> tuple[str, ...]:
    """Units of roles/common on a node: chrony only where the node owns its clock (not in a container)."""
    return COMMON_SERVICES if in_container else (*COMMON_SERVICES, TIME_SERVICE)


def role_services(role: str, facts: Mapping[str, Any]) -> tuple[str, ...]:
    """Units a role runs (what `systemctl is-enabled/is-active` must report)."""
    return {
        "sfu": ("livekit", "nginx"),
        "turn": ("coturn",),
        # Patroni runs PostgreSQL; etcd holds its leader key (one member per DB node).
        "db": (facts.get("postgresql_service", "patroni"), "etcd"),
        "redis": ("redis-server", "redis-sentinel"),
        "bastion": (),
        "monitoring": ("prometheus", "prometheus-alertmanager", "prometheus-blackbox-exporter"),
    }[role]


# --------------------------------------------------------------------------- role facts


_JINJA = re.compile(r"{{\s*([a-z_][a-z0-9_]*)\s*}}")


def role_facts(root: Path = ROOT) -> dict[str, Any]:
    """Plain variables of every role (defaults, then vars), with simple `{{ var }}` references
    resolved. Expressions with filters or conditions are left out: they depend on the host."""
    raw: dict[str, Any] = {}
    for role_dir in sorted((root / "roles").glob("*")):
        for part in ("defaults", "vars"):
            path = role_dir / part / "main.yml"
            if path.exists():
                raw.update(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    resolved: dict[str, Any] = {}
    for _ in range(3):  # references nest at most a couple of levels
        for key, value in raw.items():
            if not isinstance(value, str) or "{{" not in value:
                resolved[key] = value
                continue
            names = _JINJA.findall(value)
            if _JINJA.sub("", value).count("{{"):
                continue  # a real expression (filters, conditions): host-dependent
            if all(n in resolved for n in names):
                resolved[key] = _JINJA.sub(lambda m: str(resolved[m.group(1)]), value)
    return resolved


def node_variables(
    facts: Mapping[str, Any], group_vars: Mapping[str, Mapping[str, Any]], role: str
) -> dict[str, Any]:
    """What the roles see on a `role` node: role defaults/vars, then the wrapper's `all` and group vars
    (visio_infra.hosts.ansible_vars.group_vars, the same values a converge passes)."""
    return {**facts, **group_vars.get("all", {}), **group_vars.get(role, {})}


def coturn_exporter_enabled(setting: Any, turnserver_help: str) -> bool:
    """The coturn role's rule (roles/coturn/tasks/install.yml) for its Prometheus exporter:
    `true` on, `false` off, `auto` on when the installed turnserver was built with it."""
    value = str(setting).lower()
    return value == "true" or (value == "auto" and "--prometheus" in turnserver_help)


def chrony_sources(conf: str) -> list[str]:
    """Hosts of the `pool`/`server` lines of a chrony.conf, in order."""
    sources = []
    for line in conf.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2 and fields[0] in ("pool", "server"):
            sources.append(fields[1])
    return sources


# --------------------------------------------------------------------------- listening sockets


@dataclass(frozen=True, order=True)
class Listener:
    proto: str
    address: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.proto}/{host}:{self.port}"

    @property
    def loopback(self) -> bool:
        return ipaddress.ip_address(self.address).is_loopback


def _hex_address(text: str) -> str:
    """/proc/net address (little-endian 32-bit words) to an IP string."""
    data = bytes.fromhex(text)
    if len(data) == 4:
        return str(ipaddress.IPv4Address(data[::-1]))
    words = b"".join(data[i : i + 4][::-1] for i in range(0, 16, 4))
    address = ipaddress.IPv6Address(words)
    return str(address.ipv4_mapped or address)


def parse_proc_net(text: str, proto: str) -> list[Listener]:
    """Listening sockets from /proc/net/{tcp,tcp6,udp,udp6}.

    TCP: state 0A (LISTEN). UDP: unconnected sockets (remote address all zeros), i.e. receivers;
    connected client sockets (a DNS query, chrony talking to its server) are not listeners.
    """
    listeners = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4:
            continue
        local, remote, state = fields[1], fields[2], fields[3]
        address, port = local.split(":")
        if proto.startswith("tcp") and state != "0A":
            continue
        if proto.startswith("udp") and set(remote.split(":")[0]) != {"0"}:
            continue
        listeners.append(Listener(proto.rstrip("6"), _hex_address(address), int(port, 16)))
    return sorted(set(listeners))


@dataclass
class ListenerPlan:
    """Expected listeners of one node."""

    required: set[tuple[str, int]] = field(default_factory=set)
    """(proto, port) that must be listening on a non-loopback address."""
    ranges: list[tuple[str, int, int]] = field(default_factory=list)
    """(proto, low, high): media/relay ports opened on demand; allowed, not required."""
    private_only: set[tuple[str, int]] = field(default_factory=set)
    """(proto, port) allowed only on the node's private address (never on a wildcard/public one)."""
    absent: dict[tuple[str, int], str] = field(default_factory=dict)
    """(proto, port) the firewall opens but no process may listen on, with why: served through a
    host-firewall redirect to another port, or an exporter the role does not run."""


INTERNAL_LISTENERS: dict[str, set[tuple[str, int]]] = {
    # LiveKit's plain HTTP API: nginx proxies to it on loopback, and the peer SFU nodes' fronts fall
    # back to it on the private address (the firewall opens it to them only). Never on a wildcard.
    "sfu": {("tcp", LIVEKIT_HTTP_PORT)},
}

PRIVATE_METRICS = frozenset(
    {"node-metrics", "postgres-metrics", "etcd-metrics", "redis-metrics", "patroni-metrics"}
)
"""Metrics endpoints of `METRICS_PORTS` the roles bind to the node's private address only (the
exporters they install, etcd's metrics listener, the Patroni metrics relay): a wildcard listener there is
a fault even though the firewall would hide it."""


def listener_plan(
    config: StackConfig,
    inventory: Mapping[str, Any],
    role: str,
    variables: Mapping[str, Any] | None = None,
    exporters: Mapping[str, bool] | None = None,
) -> ListenerPlan:
    """What `role` nodes must (and may) listen on, from the security-group rules.

    `variables` (see `node_variables`) bring the role's design: ports in `common_port_redirects` are
    answered by their target port's listener, not their own. `exporters` says which metrics endpoints
    of `METRICS_PORTS` really run ({"coturn-metrics": False} when coturn was built without it); a
    stopped exporter's port must then have no listener.
    """
    counts = {group: len(hosts or []) for group, hosts in inventory.get("groups", {}).items()}
    plan = ListenerPlan(required={("tcp", SSH_PORT)})
    for rule in security_rules(config, counts)[role]:
        if rule.direction != "ingress" or rule.protocol is None or rule.port_min is None:
            continue
        high = rule.port_max if rule.port_max is not None else rule.port_min
        if high == rule.port_min:
            plan.required.add((rule.protocol, rule.port_min))
        else:
            plan.ranges.append((rule.protocol, rule.port_min, high))
    plan.private_only = set(INTERNAL_LISTENERS.get(role, set()))
    for redirect in (variables or {}).get("common_port_redirects") or []:
        source = (str(redirect["proto"]), int(redirect["port"]))
        target = (str(redirect["proto"]), int(redirect["to_port"]))
        plan.required.discard(source)
        plan.required.add(target)
        plan.absent[source] = f"redirected to {target[1]} by the host firewall"
    for purpose, port in METRICS_PORTS.get(role, {}).items():
        if purpose in PRIVATE_METRICS:
            plan.private_only.add(("tcp", port))
        if (exporters or {}).get(purpose, True):
            continue
        plan.required.discard(("tcp", port))
        plan.absent[("tcp", port)] = f"{purpose} exporter is not enabled"
    return plan


def compare_listeners(
    listeners: Iterable[Listener], plan: ListenerPlan, private_ip: str
) -> tuple[list[str], list[str]]:
    """(missing, unexpected) as readable strings. Loopback listeners are the node's own business."""
    exposed = [item for item in listeners if not item.loopback]
    seen = {(item.proto, item.port) for item in exposed}
    missing = sorted(f"{proto}/{port}" for proto, port in plan.required - seen)
    unexpected = []
    for item in exposed:
        key = (item.proto, item.port)
        if key in plan.absent:
            unexpected.append(f"{item} ({plan.absent[key]})")
            continue
        if key in plan.private_only:
            if item.address != private_ip:
                unexpected.append(str(item))
            continue
        if key in plan.required:
            continue
        if any(item.proto == proto and low <= item.port <= high for proto, low, high in plan.ranges):
            continue
        if key in plan.private_only and item.address == private_ip:
            continue
        unexpected.append(str(item))
    return missing, sorted(unexpected)


# --------------------------------------------------------------------------- metrics exporters


@dataclass(frozen=True)
class ExporterCheck:
    """One metrics endpoint a role serves to Prometheus, read on the node at its private address."""

    purpose: str
    """Its key in `METRICS_PORTS` (which gives the port)."""
    unit: str
    """The systemd unit serving it."""
    series: tuple[tuple[str, float | None], ...]
    """(series name, required value or None for "present") that must be in what it serves."""
    ca_file: str | None = None
    """Served over HTTPS, checked against this CA file on the node (None: plain HTTP)."""


EXPORTERS: dict[str, tuple[ExporterCheck, ...]] = {
    "db": (
        ExporterCheck("postgres-metrics", "prometheus-postgres-exporter", (("pg_up", 1.0),)),
        ExporterCheck("etcd-metrics", "etcd", (("etcd_server_has_leader", 1.0),)),
        # Patroni's /metrics through roles/postgresql's relay (plain HTTP, private address).
        ExporterCheck("patroni-metrics", "visio-patroni-metrics", (("patroni_postgres_running", 1.0),)),
    ),
    "redis": (ExporterCheck("redis-metrics", "prometheus-redis-exporter", (("redis_up", 1.0),)),),
}
"""Role exporters beyond the node exporter, and what proves each one reads its service: PostgreSQL
answered the exporter (pg_up 1, over the socket as postgres), Redis accepted its password
(redis_up 1), the etcd member sees a leader."""

NODE_SERIES: dict[str, tuple[tuple[str, float | None], ...]] = {
    # The node exporter's own figures, and its textfile collector reading the shared directory.
    "*": (("node_cpu_seconds_total", None), ("node_filesystem_avail_bytes", None),
          ("node_textfile_scrape_error", 0.0)),
    # roles/coturn's allocation counter (Debian 12's coturn has no metrics endpoint).
    "turn": (("visio_turn_allocations", None), ("visio_turn_allocation_quota", None),
             ("visio_turn_server_up", 1.0)),
}


def exporter_checks(role: str, variables: Mapping[str, Any] | None = None) -> list[ExporterCheck]:
    """Every metrics endpoint a `role` node must serve: the node exporter (with the role's textfile
    series) and the role's own exporters (on DB nodes, Patroni's /metrics through its relay).
    `variables` (see `node_variables`) is kept for exporters that would depend on the role's design."""
    node = ExporterCheck(
        "node-metrics", "prometheus-node-exporter", NODE_SERIES["*"] + NODE_SERIES.get(role, ())
    )
    checks = [node, *EXPORTERS.get(role, ())]
    unknown = [c.purpose for c in checks if c.purpose not in METRICS_PORTS.get(role, {})]
    assert not unknown, f"{role}: {unknown} not in METRICS_PORTS: the firewall would not open them"
    return checks


def metric_values(text: str, name: str) -> list[float]:
    """Values of every sample of `name` (any labels) in a Prometheus text exposition."""
    values = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.match(rf"^{re.escape(name)}(?:{{[^}}]*}})?\s+(\S+)", line)
        if match:
            values.append(float(match.group(1)))
    return values


def metrics_problems(text: str, series: Iterable[tuple[str, float | None]]) -> list[str]:
    """What is missing or wrong in served metrics (empty when every series is there with its value)."""
    problems = []
    for name, wanted in series:
        values = metric_values(text, name)
        if not values:
            problems.append(f"no {name}")
        elif wanted is not None and any(v != wanted for v in values):
            problems.append(f"{name} is {values}, want {wanted:g}")
    return problems


# --------------------------------------------------------------------------- sshd and nftables


def parse_sshd_t(text: str) -> dict[str, str]:
    """`sshd -T` output as {keyword: value} (first occurrence, lowercase keys)."""
    result: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key and key.lower() not in result:
            result[key.lower()] = value.strip()
    return result


def ssh_hardening_problems(
    settings: Mapping[str, str], max_auth_tries: int, algorithms: Mapping[str, list[str]] | None = None
) -> list[str]:
    """What is wrong with an effective sshd configuration (empty when hardened)."""
    wanted = {
        "passwordauthentication": {"no"},
        "kbdinteractiveauthentication": {"no"},
        "permitemptypasswords": {"no"},
        "pubkeyauthentication": {"yes"},
        "permitrootlogin": {"prohibit-password", "without-password", "no"},
        "x11forwarding": {"no"},
    }
    problems = [
        f"{key} is {settings.get(key, 'unset')!r}, want {' or '.join(sorted(values))}"
        for key, values in wanted.items()
        if settings.get(key) not in values
    ]
    tries = settings.get("maxauthtries", "")
    if not tries.isdigit() or int(tries) > max_auth_tries:
        problems.append(f"maxauthtries is {tries or 'unset'}, want at most {max_auth_tries}")
    for key, want in (algorithms or {}).items():
        have = settings.get(key, "").split(",")
        if have != list(want):
            problems.append(f"{key} is {','.join(have)!r}, want {','.join(want)!r} (roles/common defaults)")
    return problems


SSHD_ALGORITHM_SETTINGS = {
    "kexalgorithms": "common_ssh_kex_algorithms",
    "ciphers": "common_ssh_ciphers",
    "macs": "common_ssh_macs",
    "hostkeyalgorithms": "common_ssh_host_key_algorithms",
}
"""`sshd -T` keyword -> the roles/common variable listing what it must be, in order."""


def sshd_algorithms(facts: Mapping[str, Any]) -> dict[str, list[str]]:
    """The algorithm lists sshd must run with, from the role's variables."""
    return {key: list(facts[var]) for key, var in SSHD_ALGORITHM_SETTINGS.items()}


def input_policy(ruleset: str) -> str | None:
    """Policy of the base chain hooked on input in `nft list ruleset` output (None if there is none)."""
    for match in re.finditer(r"type filter hook input priority [^;]+;\s*policy (\w+);", ruleset):
        return match.group(1)
    return None


# --------------------------------------------------------------------------- secret files


@dataclass(frozen=True)
class FileRule:
    """A file whose owner and mode matter. `private`: nothing for group-others ("others" bits 0)."""

    path: str
    owner: str
    private: bool
    why: str


def file_rules(role: str, facts: Mapping[str, Any], config: StackConfig) -> list[FileRule]:
    """Config and key files of a role: owner, and no access for others where they hold secrets."""
    rules = [
        FileRule("/etc/nftables.conf", "root", True, "host firewall rules"),
        FileRule("/etc/ssh/sshd_config.d/10-visio-hardening.conf", "root", False, "SSH hardening"),
    ]
    if role == "sfu":
        user = str(facts.get("livekit_user", "livekit"))
        conf = str(facts.get("livekit_config_dir", "/etc/livekit"))
        rules += [
            FileRule(f"{conf}/keys.yaml", user, True, "LiveKit API keys"),
            FileRule(f"{conf}/turn-secret", user, True, "TURN shared secret"),
            FileRule(f"{conf}/config.yaml", user, True, "LiveKit config (Redis password)"),
            FileRule("/etc/nginx/tls/signalling.key", "root", True, "signalling TLS private key"),
        ]
    elif role == "turn":
        rules += [
            FileRule("/etc/turnserver.conf", "turnserver", True, "coturn config (static-auth-secret)"),
            FileRule("/etc/coturn/tls/turn.key", "turnserver", True, "TURN TLS private key"),
        ]
    elif role == "redis":
        rules += [
            FileRule("/etc/redis/redis.conf", "redis", True, "Redis config (password, from CONFIG REWRITE)"),
            FileRule("/etc/redis/visio-redis.conf", "redis", True, "Redis config (requirepass, masterauth)"),
            FileRule("/etc/redis/sentinel.conf", "redis", True, "Sentinel config (requirepass, auth-pass)"),
        ]
    elif role == "db":
        cluster = facts.get("postgresql_cluster", "main")
        data_dir = f"/var/lib/postgresql/{config.versions.postgresql}/{cluster}"
        rules += [
            FileRule(f"{data_dir}/pg_hba.conf", "postgres", True, "who may connect (written by Patroni)"),
            FileRule("/etc/patroni/config.yml", "postgres", True, "replication and Patroni REST passwords"),
            FileRule("/etc/patroni/tls/server.key", "postgres", True, "PostgreSQL/Patroni TLS private key"),
            FileRule("/etc/etcd/tls/server.key", "etcd", True, "etcd TLS private key"),
        ]
    return rules


def mode_problem(rule: FileRule, owner: str, mode: int) -> str | None:
    """Why a file's owner/mode is wrong, or None."""
    if owner != rule.owner:
        return f"{rule.path} is owned by {owner}, want {rule.owner} ({rule.why})"
    if mode & 0o002:
        return f"{rule.path} is world-writable (mode {mode:04o})"
    if rule.private and mode & 0o007:
        return f"{rule.path} gives access to others (mode {mode:04o}); it holds {rule.why}"
    return None


# --------------------------------------------------------------------------- hardening (ssh-audit)

SSH_AUDIT_EXPLAINED = {
    "sntrup761x25519-sha512@openssh.com": (
        "ssh-audit 2.5.0 (Debian 12, 2021) calls it experimental; it is OpenSSH's default key exchange "
        "since 9.0 (2022), a post-quantum hybrid with curve25519, kept first on purpose"
    ),
    "kex-strict-s-v00@openssh.com": (
        "not an algorithm: the strict key exchange marker (the Terrapin fix, CVE-2023-48795) that "
        "Debian's OpenSSH 9.2p1-2+deb12u2 and later always announces; ssh-audit 2.5.0 predates it"
    ),
}
"""ssh-audit warnings the roles keep on purpose, each with why. A failure is never explained away."""

_SSH_AUDIT_LINE = re.compile(
    r"^\((?P<kind>[a-z]+)\) (?P<name>\S+)(?: \(\d+-bit\))?\s+-- \[(?P<level>fail|warn|info)\] (?P<text>.*)$"
)
_SSH_AUDIT_MORE = re.compile(r"^\s+`- \[(?P<level>fail|warn|info)\] (?P<text>.*)$")


@dataclass(frozen=True)
class SshAuditFinding:
    level: str
    kind: str
    """ssh-audit's section: kex, key, enc, mac, gen, cve..."""
    name: str
    text: str

    def __str__(self) -> str:
        return f"[{self.level}] ({self.kind}) {self.name}: {self.text}"


def ssh_audit_findings(text: str) -> list[SshAuditFinding]:
    """The warn and fail lines of `ssh-audit -n` output (each attached to its algorithm)."""
    found: list[SshAuditFinding] = []
    kind = name = ""
    for line in text.splitlines():
        if match := _SSH_AUDIT_LINE.match(line):
            kind, name = match["kind"], match["name"]
            level, detail = match["level"], match["text"]
        elif (more := _SSH_AUDIT_MORE.match(line)) and name:
            level, detail = more["level"], more["text"]
        else:
            if not line.startswith(" "):
                kind = name = ""  # a line of another shape: what follows is not this algorithm's
            continue
        if level in ("warn", "fail"):
            found.append(SshAuditFinding(level, kind, name, detail.strip()))
    return found


def ssh_audit_problems(findings: Iterable[SshAuditFinding]) -> list[str]:
    """Every failure, and every warning not explained in SSH_AUDIT_EXPLAINED."""
    return [
        str(f) for f in findings if f.level == "fail" or f.name not in SSH_AUDIT_EXPLAINED
    ]


# --------------------------------------------------------------------------- hardening (testssl.sh)

TESTSSL_MUST_NOT_OFFER = ("SSLv2", "SSLv3", "TLS1", "TLS1_1")
"""Protocols no TLS listener may offer."""
TESTSSL_WEAK_CIPHER_LISTS = (
    "cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT", "cipherlist_LOW",
    "cipherlist_3DES_IDEA", "cipherlist_AVERAGE",
)
"""testssl.sh's cipher categories that must be "not offered" (AVERAGE: the obsolete CBC suites)."""


def testssl_problems(entries: Iterable[Mapping[str, Any]]) -> list[str]:
    """What is wrong in a testssl.sh JSON report (`--jsonfile`, run with `-p -s`): an old protocol or a
    weak cipher category offered, no TLS 1.2/1.3, anything rated MEDIUM or worse, or a scan that could
    not finish."""
    by_id = {str(e.get("id")): e for e in entries}
    problems = []
    for entry in by_id.values():
        if entry.get("severity") == "FATAL" or entry.get("id") == "scanProblem":
            problems.append(f"the scan did not finish: {entry.get('finding')}")
    for key in (*TESTSSL_MUST_NOT_OFFER, *TESTSSL_WEAK_CIPHER_LISTS):
        finding = str(by_id.get(key, {}).get("finding", "missing from the report"))
        if not finding.startswith("not offered"):
            problems.append(f"{key}: {finding}")
    if not any(str(by_id.get(k, {}).get("finding", "")).startswith("offered") for k in ("TLS1_2", "TLS1_3")):
        problems.append("neither TLS 1.2 nor TLS 1.3 offered")
    problems += [
        f"{e.get('id')}: {e.get('finding')} ({e.get('severity')})"
        for e in by_id.values()
        if e.get("severity") in ("MEDIUM", "HIGH", "CRITICAL")
    ]
    return sorted(set(problems))


def tls_listeners(inventory: dict[str, Any]) -> list[tuple[str, str, int, str | None]]:
    """(node, address, port, STARTTLS protocol) of every TLS listener this host can reach: the
    signalling front of each SFU node, both TLS ports of each TURN node (5349 is redirected to
    coturn's 443 listener), and PostgreSQL on each DB node when no bastion stands in between (then
    `test_hardening_db_tls_settings` checks the server's own settings instead)."""
    groups = inventory["groups"]
    bastion = (inventory.get("connection") or {}).get("bastion")
    found: list[tuple[str, str, int, str | None]] = []
    for host in groups.get("sfu") or []:
        found.append((host["name"], host.get("public_ip") or host["private_ip"], HTTPS_PORT, None))
    for host in groups.get("turn") or []:
        for port in (HTTPS_PORT, TURNS_PORT):
            found.append((host["name"], host.get("public_ip") or host["private_ip"], port, None))
    if not bastion:
        found += [(h["name"], h["private_ip"], POSTGRES_PORT, "postgres") for h in groups.get("db") or []]
    return found


# --------------------------------------------------------------------------- monitoring


PROBE_JOBS: dict[str, tuple[str, ...]] = {"turn": ("turn",), "signalling": ("sfu",)}
"""Blackbox probe jobs of roles/monitoring (templates/prometheus.yml.j2) and the groups they probe:
`turn` twice per TURN node (plain TCP and TLS), `signalling` once per SFU node."""

PROBES_PER_NODE = {"turn": 2, "signalling": 1}


def scrape_jobs(root: Path = ROOT) -> list[dict[str, Any]]:
    """The monitoring role's scrape jobs (name, groups, port) as its defaults declare them."""
    defaults = yaml.safe_load((root / "roles/monitoring/defaults/main.yml").read_text(encoding="utf-8"))
    return [
        {"name": str(job["name"]), "groups": list(job["groups"]), "port": int(job["port"])}
        for job in defaults["monitoring_scrape_jobs"]
    ]


def expected_targets(
    jobs: Iterable[Mapping[str, Any]], inventory: Mapping[str, Any]
) -> dict[tuple[str, str], int]:
    """{(job, node): how many targets} Prometheus must scrape for this inventory: one per exporter on
    every host of the job's groups, the probes of every public endpoint, and Prometheus itself."""
    groups = inventory.get("groups", {})
    expected: dict[tuple[str, str], int] = {}
    for job in jobs:
        for group in job["groups"]:
            for host in groups.get(group) or []:
                expected[(str(job["name"]), str(host["name"]))] = 1
    for job, probed in PROBE_JOBS.items():
        for group in probed:
            for host in groups.get(group) or []:
                expected[(job, str(host["name"]))] = PROBES_PER_NODE[job]
    for host in groups.get("monitoring") or []:
        expected[("prometheus", str(host["name"]))] = 1
    return expected


def target_problems(
    active: Iterable[Mapping[str, Any]], expected: Mapping[tuple[str, str], int]
) -> list[str]:
    """What is wrong with Prometheus' active targets (`/api/v1/targets` data.activeTargets): missing or
    unexpected targets, and every target not `up` with its last error."""
    seen: dict[tuple[str, str], int] = {}
    problems: list[str] = []
    for target in active:
        labels = target.get("labels") or {}
        key = (str(labels.get("job")), str(labels.get("node")))
        seen[key] = seen.get(key, 0) + 1
        if target.get("health") != "up":
            problems.append(
                f"{key[0]} on {key[1]} ({target.get('scrapeUrl')}): {target.get('health')}"
                f" {str(target.get('lastError') or '').strip()}".rstrip()
            )
    for key, count in sorted(expected.items()):
        if seen.get(key, 0) != count:
            problems.append(f"{key[0]} on {key[1]}: {seen.get(key, 0)} targets, expected {count}")
    problems += [f"{job} on {node}: not in the inventory" for job, node in sorted(set(seen) - set(expected))]
    return problems


def duration_seconds(value: str) -> int:
    """A Prometheus duration (`15s`, `2m`, `3h10m`, `1d`) in seconds, as rule files and the
    monitoring role's defaults write them."""
    text = str(value).strip()
    if not re.fullmatch(r"(\d+[smhd])+", text):
        raise ValueError(f"not a Prometheus duration: {value!r}")
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(int(number) * units[unit] for number, unit in re.findall(r"(\d+)([smhd])", text))


def prometheus_time(value: str) -> float:
    """Seconds since the epoch of one of Prometheus' API timestamps (RFC 3339 with up to nanoseconds,
    `Z` or an offset; Go's zero time `0001-01-01T00:00:00Z` for never)."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", value.strip())
    if not match:
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}")
    whole, fraction, zone = match.groups()
    moment = dt.datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    return moment.timestamp() + (float(f"0.{fraction}") if fraction else 0.0)


def first_scrapes_since(
    targets: Iterable[Mapping[str, Any]], since: float, known: Mapping[str, float]
) -> dict[str, float]:
    """`known` ({scrape URL: time}) plus the targets whose last scrape is at or after `since` and that
    `known` lacks: the first scrape of each target seen after `since` (Prometheus' own clock)."""
    found = dict(known)
    for target in targets:
        url = str(target.get("scrapeUrl"))
        scraped = prometheus_time(str(target.get("lastScrape") or "0001-01-01T00:00:00Z"))
        if url not in found and scraped >= since:
            found[url] = scraped
    return found


def stale_for_alerts(
    targets: Iterable[Mapping[str, Any]],
    groups: Iterable[Mapping[str, Any]],
    first_scrapes: Mapping[str, float],
) -> list[str]:
    """Why Prometheus' alert states may not yet reflect the stack as it is now, empty once they do:
    every active target has a scrape in `first_scrapes` (from `first_scrapes_since`), and every rule
    group was evaluated after the latest of those. An alert read before that can still be firing on a
    sample taken before a node came back (found on the lab: `SignallingEndpointDown` read as firing
    after the SFU node it named served again)."""
    waiting = [
        f"target {labels.get('job')} on {labels.get('node')} not scraped yet"
        for t in targets
        if str(t.get("scrapeUrl")) not in first_scrapes
        for labels in [t.get("labels") or {}]
    ]
    latest = max(first_scrapes.values(), default=None)
    if waiting or latest is None:
        return waiting or ["no target scraped yet"]
    return [
        f"rule group {group.get('name')} not evaluated since"
        for group in groups
        if prometheus_time(str(group.get("lastEvaluation") or "0001-01-01T00:00:00Z")) <= latest
    ]


def firing_alerts(alerts: Iterable[Mapping[str, Any]]) -> list[str]:
    """Alerts in state `firing` (`/api/v1/alerts` data.alerts), as `name on node: summary`."""
    return sorted(
        f"{a['labels'].get('alertname')} on {a['labels'].get('node', '?')}: "
        f"{(a.get('annotations') or {}).get('summary', '')}"
        for a in alerts
        if a.get("state") == "firing"
    )


# --------------------------------------------------------------------------- hardening (Lynis)

LYNIS_MIN_HARDENING_INDEX = 80
"""The hardening index (0-100) Lynis must give every node. Issue 14's target: measured 65 on a Debian 12
container with main's roles/common, 80 with the hardening of roles/common (docs/hardening.md). What is
left is explained there: kernel-wide sysctls a container cannot set, no separate /home and /var
partitions, no remote log host yet, no auditd/AIDE/malware scanner, sshd on port 22 and MaxSessions 4."""

LYNIS_SKIPPED_TESTS: dict[str, dict[str, str]] = {
    "redis": {
        "DBS-1884": (
            "Lynis greps only /etc/redis/redis.conf for requirepass; the role sets it in its include "
            "/etc/redis/visio-redis.conf (redis.conf is the run-time part Sentinel rewrites). In force: "
            "test_redis.py checks a connection without the password, or with a wrong one, is refused"
        ),
        "DBS-1886": (
            "Lynis greps only /etc/redis/redis.conf for `rename-command CONFIG`; the role renames it in "
            "the include. In force: test_redis.py checks CONFIG is refused under its own name"
        ),
        "DBS-1888": (
            "Lynis wants Redis on localhost; LiveKit on the SFU nodes must reach it, so it listens on "
            "the node's private address only (test_redis.py) and the firewall admits the SFU nodes only"
        ),
    },
}
"""Lynis tests not run on a role's nodes, each with why and the check that verifies the same thing
for real (docs/hardening.md says the same). A skipped test does not count in the hardening index."""


def lynis_command(role: str) -> str:
    """Lynis on a node, printing its machine-readable report (`key=value` lines) and nothing else. No
    log file is written on the node; the report goes to a temporary file read back at once. The role's
    LYNIS_SKIPPED_TESTS go in a profile of their own (`--profile`), removed with the report."""
    skips = "".join(f"skip-test={test}\\n" for test in sorted(LYNIS_SKIPPED_TESTS.get(role, {})))
    return (
        f'p=$(mktemp --suffix=.prf) && printf "{skips}" > "$p" && f=$(mktemp) && '
        'lynis audit system --quick --no-colors --quiet --no-log --profile "$p" --report-file "$f" '
        '>/dev/null 2>&1; rc=$?; cat "$f"; rm -f "$f" "$p"; exit $rc'
    )


LYNIS_EXPLAINED_WARNINGS = {
    "PKGS-7392": (
        "security updates published and not yet installed: unattended-upgrades installs them daily from "
        "the security suite (coturn and PostgreSQL by `visio upgrade`, rolling); the pending packages "
        "are listed with the figures"
    ),
}
"""Lynis warnings a node may show, each with why (docs/hardening.md says the same). Any other warning
fails the check."""

_LYNIS_ITEM = re.compile(r"^(?P<kind>warning|suggestion)\[\]=(?P<body>.*)$")


@dataclass(frozen=True)
class LynisFinding:
    test: str
    """Lynis' test id (PKGS-7392), or LYNIS for its own notes."""
    text: str
    details: str = ""

    def __str__(self) -> str:
        return f"{self.test}: {self.text}" + (f" ({self.details})" if self.details else "")


@dataclass(frozen=True)
class LynisReport:
    hardening_index: int | None
    warnings: list[LynisFinding] = field(default_factory=list)
    suggestions: list[LynisFinding] = field(default_factory=list)
    vulnerable_packages: list[str] = field(default_factory=list)
    version: str = ""


def lynis_report(text: str) -> LynisReport:
    """A Lynis report file (`--report-file`: `hardening_index=80`, `warning[]=ID|text|details|solution|`,
    `suggestion[]=...`, `vulnerable_package[]=name`) as its figures. No index: None."""
    index: int | None = None
    warnings: list[LynisFinding] = []
    suggestions: list[LynisFinding] = []
    vulnerable: list[str] = []
    version = ""
    for line in text.splitlines():
        line = line.strip()
        if match := _LYNIS_ITEM.match(line):
            fields = match["body"].split("|")
            details = fields[2].strip() if len(fields) > 2 and fields[2].strip() != "-" else ""
            finding = LynisFinding(fields[0].strip(), fields[1].strip() if len(fields) > 1 else "", details)
            (warnings if match["kind"] == "warning" else suggestions).append(finding)
        elif line.startswith("hardening_index="):
            value = line.partition("=")[2].strip()
            index = int(value) if value.isdigit() else None
        elif line.startswith("vulnerable_package[]="):
            vulnerable.append(line.partition("=")[2].strip())
        elif line.startswith("lynis_version="):
            version = line.partition("=")[2].strip()
    return LynisReport(index, warnings, suggestions, vulnerable, version)


def lynis_problems(
    report: LynisReport,
    minimum: int = LYNIS_MIN_HARDENING_INDEX,
    explained: Mapping[str, str] = LYNIS_EXPLAINED_WARNINGS,
) -> list[str]:
    """What fails a node: no index (Lynis did not finish), an index under `minimum`, a warning not in
    `explained`."""
    problems = []
    if report.hardening_index is None:
        problems.append("Lynis gave no hardening index (the audit did not finish)")
    elif report.hardening_index < minimum:
        problems.append(f"hardening index {report.hardening_index}, want at least {minimum}")
    problems += [f"unexplained warning {w}" for w in report.warnings if w.test not in explained]
    return problems


def lynis_figures(node: str, role: str, report: LynisReport, seconds: float) -> dict[str, Any]:
    """What `visio verify` keeps of a node's Lynis run (reports/verify-<stack>-<time>/lynis-<node>.json)
    and prints in its summary."""
    return {
        "node": node,
        "role": role,
        "lynis_version": report.version,
        "hardening_index": report.hardening_index,
        "minimum": LYNIS_MIN_HARDENING_INDEX,
        "warnings": [
            {"test": w.test, "text": w.text, "explained": w.test in LYNIS_EXPLAINED_WARNINGS}
            for w in report.warnings
        ],
        "suggestions": [{"test": s.test, "text": s.text, "details": s.details} for s in report.suggestions],
        "skipped_tests": LYNIS_SKIPPED_TESTS.get(role, {}),
        "vulnerable_packages": report.vulnerable_packages,
        "seconds": round(seconds, 1),
    }


# --------------------------------------------------------------------------- hardening (sysctl)


def sysctl_file_settings(text: str) -> dict[str, str]:
    """The `key = value` lines of a sysctl.d file, in order (comments and blank lines skipped; a
    leading `-`, "ignore errors", dropped; values with their whitespace collapsed)."""
    settings: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;" or "=" not in line:
            continue
        key, _, value = line.partition("=")
        settings[key.strip().lstrip("-")] = " ".join(value.split())
    return settings


def sysctl_values(text: str) -> dict[str, str]:
    """`sysctl -a` output as {key: value} (values' whitespace collapsed; interface names with a dot
    are shown with `/` by sysctl)."""
    return sysctl_file_settings(text)


def sysctl_drift(expected: Mapping[str, Any], actual: Mapping[str, str]) -> list[str]:
    """Every expected setting not in force: `key is X, want Y`, or `key: no such setting`. A key with
    `*` (every interface) must match at least one key of `actual`, and every key it matches must hold
    the value."""
    problems = []
    for key, value in expected.items():
        want = " ".join(str(value).split())
        keys = [k for k in actual if fnmatch.fnmatchcase(k, key)] if "*" in key else (
            [key] if key in actual else []
        )
        if not keys:
            problems.append(f"{key}: no such setting")
        problems += [f"{k} is {actual[k]}, want {want}" for k in keys if actual[k] != want]
    return problems


def sysctl_hardening(facts: Mapping[str, Any], in_container: bool) -> dict[str, dict[str, str]]:
    """The hardening sysctl files roles/common writes on a node, {path: {key: value}}: the network
    one everywhere, the kernel-wide one on a VM only (a container shares its host's kernel)."""
    files = {str(facts["common_sysctl_netns_file"]): dict(facts["common_sysctl_netns"])}
    if not in_container:
        files[str(facts["common_sysctl_kernel_file"])] = dict(facts["common_sysctl_kernel"])
    return {
        path: {str(key): " ".join(str(value).split()) for key, value in values.items()}
        for path, values in files.items()
    }
