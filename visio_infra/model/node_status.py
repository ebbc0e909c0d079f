"""What `visio status` shows for each node, and the cluster-wide findings drawn from it (pure).

Each node is read with one small shell script over SSH (`probe_script`): CPU over one second from
/proc/stat, the load, its role's services, and the figures SREs ask for first:
- SFU: rooms and participants from LiveKit's own Prometheus endpoint (loopback on the node);
- TURN: relay allocations, counted as coturn's UDP sockets outside its listening ports (coturn 4.6
  has no metrics endpoint; every allocation holds one relay socket);
- DB: the node's Patroni member (role, state, replication lag), from `patronictl list`;
- Redis: INFO replication (role, link to the master, replicas) with the password read on the node
  into redis-cli's environment, never on a command line, never sent back;
- SFU, TURN, DB: days left on the certificate their TLS listener serves (signalling front, turns,
  PostgreSQL), read on the wire with `openssl s_client` on the node, against the node's own clock.
The output is split into `### <section>` blocks and parsed here, so everything but the SSH call is
tested without a host.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from visio_infra.model.certificate_expiry import RENEW_BEFORE, days_left

SERVICES: dict[str, tuple[str, ...]] = {
    "sfu": ("livekit", "nginx"),
    "turn": ("coturn",),
    "db": ("patroni", "etcd"),
    "redis": ("redis-server", "redis-sentinel"),
    "monitoring": ("prometheus", "prometheus-alertmanager"),
}
"""The systemd units whose state each role's line shows."""

PATRONICTL = "runuser -u postgres -- patronictl -c /etc/patroni/config.yml"
REDIS_AUTH = "REDISCLI_AUTH=$(sed -n 's/^requirepass \"\\(.*\\)\"$/\\1/p' /etc/redis/visio-redis.conf)"


@dataclass(frozen=True)
class Ports:
    """Ports the probes read on the node itself (from the roles' defaults)."""

    livekit_metrics: int = 6789
    prometheus: int = 9090
    redis: int = 6379
    https: int = 443
    postgres: int = 5432

    def tls_listener(self, role: str) -> tuple[int, str] | None:
        """(port, extra `openssl s_client` options) of the role's TLS listener, if it has one."""
        return {
            "sfu": (self.https, ""),
            # coturn's one TLS listener; 5349 reaches it through a prerouting redirect, which
            # traffic from the node itself does not take.
            "turn": (self.https, ""),
            "db": (self.postgres, " -starttls postgres"),
        }.get(role)


def probe_script(role: str, private_ip: str, ports: Ports = Ports()) -> str:
    """The shell script run on a node of `role` (fed on stdin to `bash -s`)."""
    lines = [
        "echo '### cpu'; head -1 /proc/stat; sleep 1; head -1 /proc/stat",
        "echo '### cores'; nproc",
        "echo '### load'; cat /proc/loadavg",
        "echo '### services'",
    ]
    lines += [f"echo {unit} $(systemctl is-active {unit}.service)" for unit in SERVICES.get(role, ())]
    if role == "sfu":
        url = f"http://127.0.0.1:{ports.livekit_metrics}/metrics"
        fetch = (
            "import urllib.request, sys; "
            f"sys.stdout.write(urllib.request.urlopen({url!r}, timeout=5).read().decode())"
        )
        lines += [
            "echo '### livekit'",
            f"python3 -c {shlex.quote(fetch)} | grep -E '^livekit_(room|participant)_total'",
        ]
    elif role == "turn":
        lines += ["echo '### sockets'", "ss -Hanp | grep '\"turnserver\"'"]
    elif role == "db":
        lines += ["echo '### patroni'", f"{PATRONICTL} list -f json"]
    elif role == "monitoring":
        url = f"http://{private_ip}:{ports.prometheus}/api/v1/alerts"
        fetch = (
            "import json, urllib.request; "
            f"alerts = json.load(urllib.request.urlopen({url!r}, timeout=5))['data']['alerts']; "
            "print('\\n'.join(['### alerts'] + [a['labels']['alertname'] + ' ' "
            "+ a['labels'].get('node', '-') for a in alerts if a['state'] == 'firing']))"
        )
        # The section header comes from the script itself: no answer from Prometheus, no section.
        lines += [f"python3 -c {shlex.quote(fetch)}"]
    elif role == "redis":
        lines += [
            "echo '### redis'",
            f"{REDIS_AUTH} redis-cli --no-auth-warning -h {shlex.quote(private_ip)} -p {ports.redis}"
            " INFO replication",
        ]
    listener = ports.tls_listener(role)
    if listener is not None:
        port, extra = listener
        address = shlex.quote(f"{private_ip}:{port}")
        lines += [
            "echo '### cert'",
            "date -u +now=%s",
            f"echo | timeout 5 openssl s_client -connect {address}{extra} 2>/dev/null"
            " | openssl x509 -noout -enddate",
        ]
    return "\n".join(lines) + "\n"


def cert_days(text: str) -> int | None:
    """Whole days left on the served certificate, from the probe's `now=<epoch>` and openssl's
    `notAfter=<date>` lines (None when either is missing: the certificate was not read)."""
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    try:
        now = dt.datetime.fromtimestamp(int(values["now"]), dt.UTC)
        not_after = dt.datetime.strptime(values["notAfter"].strip(), "%b %d %H:%M:%S %Y GMT")
    except (KeyError, ValueError):
        return None
    return math.floor(days_left(not_after.replace(tzinfo=dt.UTC), now))


def sections(output: str) -> dict[str, str]:
    """`### name` blocks of a probe's output."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.replace("\r", "").splitlines():
        if line.startswith("### "):
            current = found.setdefault(line[4:].strip(), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines).strip() for name, lines in found.items()}


def cpu_percent(text: str) -> float | None:
    """Busy share of all cores between two `cpu ...` lines of /proc/stat."""
    samples = [line.split()[1:] for line in text.splitlines() if line.startswith("cpu ")]
    if len(samples) != 2:
        return None
    try:
        before, after = ([int(v) for v in sample] for sample in samples)
    except ValueError:
        return None
    total = sum(after) - sum(before)
    idle = sum(after[3:5]) - sum(before[3:5])  # idle + iowait
    return round(100 * (total - idle) / total, 1) if total > 0 else None


def metric_sums(text: str) -> dict[str, float]:
    """Prometheus text format: each metric name's samples summed over their labels."""
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        brace = line.find("{")
        if brace != -1 and brace < line.find(" "):
            name, rest = line[:brace], line[line.rindex("}") + 1 :].split()
        else:
            name, *rest = line.split()
        if not rest:
            continue
        value = rest[0]
        try:
            number = float(value)
        except ValueError:
            continue
        if math.isfinite(number):
            sums[name] = sums.get(name, 0.0) + number
    return sums


def turn_allocations(text: str) -> int:
    """coturn's relay sockets: its UDP sockets whose port is none of its TCP listening ports."""
    listening: set[str] = set()
    udp: list[str] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        port = fields[4].rsplit(":", 1)[-1]
        if fields[0] == "tcp" and fields[1] == "LISTEN":
            listening.add(port)
        elif fields[0] == "udp":
            udp.append(port)
    return sum(1 for port in udp if port not in listening)


def redis_replication(text: str) -> dict[str, str]:
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))


@dataclass(frozen=True)
class NodeStatus:
    name: str
    role: str
    error: str = ""
    """Why the node could not be read (unreachable, probe failed); empty when it was."""
    cpu_percent: float | None = None
    cores: int | None = None
    load1: float | None = None
    services: dict[str, str] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def reachable(self) -> bool:
        return not self.error

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "reachable": self.reachable,
            "error": self.error,
            "cpu_percent": self.cpu_percent,
            "cores": self.cores,
            "load1": self.load1,
            "services": self.services,
            "figures": self.figures,
        }


def parse_probe(name: str, role: str, output: str) -> NodeStatus:
    """A node's status from its probe output (missing parts stay None: shown as '?', never guessed)."""
    parts = sections(output)
    load = parts.get("load", "").split()
    services = dict(line.split(" ", 1) for line in parts.get("services", "").splitlines() if " " in line)
    figures: dict[str, Any] = {}
    if role == "sfu":
        sums = metric_sums(parts.get("livekit", ""))
        figures["rooms"] = int(sums["livekit_room_total"]) if "livekit_room_total" in sums else None
        figures["participants"] = (
            int(sums["livekit_participant_total"]) if "livekit_participant_total" in sums else None
        )
    elif role == "turn":
        figures["allocations"] = turn_allocations(parts["sockets"]) if parts.get("sockets") else None
    elif role == "db":
        figures.update(_patroni_member(name, parts.get("patroni", "")))
    elif role == "monitoring":
        # Missing section (Prometheus not answering): unknown, not "no alert".
        figures["alerts_firing"] = (
            [" ".join(line.split()) for line in parts["alerts"].splitlines() if line.strip()]
            if "alerts" in parts else None
        )
    elif role == "redis":
        info = redis_replication(parts.get("redis", ""))
        figures["redis_role"] = info.get("role")
        if info.get("role") == "master":
            figures["replicas"] = int(info.get("connected_slaves", "0"))
        elif info.get("role") == "slave":
            figures["master_link"] = info.get("master_link_status")
            figures["master"] = info.get("master_host")
    if Ports().tls_listener(role) is not None:
        figures["cert_days"] = cert_days(parts.get("cert", ""))
    cores = parts.get("cores", "")
    return NodeStatus(
        name=name,
        role=role,
        cpu_percent=cpu_percent(parts.get("cpu", "")),
        cores=int(cores) if cores.isdigit() else None,
        load1=float(load[0]) if load else None,
        services=services,
        figures=figures,
    )


def _patroni_member(name: str, text: str) -> dict[str, Any]:
    try:
        members = json.loads(text) if text else []
    except json.JSONDecodeError:
        return {"patroni_role": None}
    for member in members:
        if member.get("Member") == name:
            lag = member.get("Lag in MB")
            return {
                "patroni_role": member.get("Role"),
                "patroni_state": member.get("State"),
                "lag_mb": lag if isinstance(lag, int | float) else None,
            }
    return {"patroni_role": None}


def findings(statuses: Iterable[NodeStatus]) -> list[str]:
    """What is wrong across the stack, in words an SRE acts on (empty: nothing seen wrong)."""
    nodes = list(statuses)
    found: list[str] = []
    for node in nodes:
        if not node.reachable:
            found.append(f"{node.name}: not read ({node.error})")
            continue
        down = [unit for unit, state in node.services.items() if state != "active"]
        if down:
            found.append(f"{node.name}: {', '.join(down)} not active")
        if "cert_days" in node.figures:
            days = node.figures["cert_days"]
            if days is None and not down:
                found.append(f"{node.name}: the certificate of its TLS listener was not read")
            elif days is not None and days < RENEW_BEFORE.days:
                found.append(
                    f"{node.name}: its TLS certificate ends in {days} days (renewal margin "
                    f"{RENEW_BEFORE.days}): `pulumi up` re-issues a stack-CA certificate; "
                    "certificate files are replaced, then `visio configure`"
                )
        if node.role == "monitoring" and not down:
            firing = node.figures.get("alerts_firing")
            if firing is None:
                found.append(f"{node.name}: Prometheus did not answer for its alerts")
            elif firing:
                shown = ", ".join(f"{a.split()[0]} ({a.split()[-1]})" for a in firing)
                found.append(f"{node.name}: alerts firing: {shown} (details: its /alerts page)")
    db = [n for n in nodes if n.role == "db" and n.reachable]
    if db:
        roles = [n.figures.get("patroni_role") for n in db]
        leaders = roles.count("Leader")
        if leaders != 1:
            found.append(f"PostgreSQL: {leaders} Patroni leaders (expected 1)")
        if len(db) > 1 and "Sync Standby" not in roles:
            found.append("PostgreSQL: no synchronous standby (a commit would not survive the primary's loss)")
    redis = [n for n in nodes if n.role == "redis" and n.reachable]
    if redis:
        masters = [n.name for n in redis if n.figures.get("redis_role") == "master"]
        if len(masters) != 1:
            found.append(f"Redis: {len(masters)} masters {masters} (expected 1)")
        broken = [
            n.name for n in redis
            if n.figures.get("redis_role") == "slave" and n.figures.get("master_link") != "up"
        ]
        if broken:
            found.append(f"Redis: {', '.join(broken)} not linked to the master")
    return found


def _value(value: Any, unit: str = "") -> str:
    return "?" if value is None else f"{value}{unit}"


def details(node: NodeStatus) -> str:
    """The role-specific column (and the days left on the certificate, where there is one)."""
    text = _role_details(node)
    if "cert_days" in node.figures:
        text += f", cert {_value(node.figures['cert_days'], ' d')}"
    return text


def _role_details(node: NodeStatus) -> str:
    f = node.figures
    if node.role == "sfu":
        return f"rooms {_value(f.get('rooms'))}, participants {_value(f.get('participants'))}"
    if node.role == "turn":
        return f"allocations {_value(f.get('allocations'))}"
    if node.role == "db":
        text = f"{_value(f.get('patroni_role'))} {_value(f.get('patroni_state'))}"
        return text + (f", lag {f['lag_mb']} MB" if f.get("lag_mb") is not None else "")
    if node.role == "redis":
        if f.get("redis_role") == "master":
            return f"master, {f.get('replicas')} replicas"
        if f.get("redis_role") == "slave":
            return f"replica of {_value(f.get('master'))}, link {_value(f.get('master_link'))}"
        return "role ?"
    if node.role == "monitoring":
        firing = f.get("alerts_firing")
        return f"alerts firing {_value(None if firing is None else len(firing))}"
    return ""


def render_table(stack: str, statuses: Iterable[NodeStatus], taken_at: str) -> str:
    """The terminal view: one line per node, then the findings."""
    nodes = list(statuses)
    rows = [("NODE", "ROLE", "CPU", "LOAD", "SERVICES", "DETAILS")]
    for node in nodes:
        if not node.reachable:
            rows.append((node.name, node.role, "-", "-", "-", f"NOT READ: {node.error}"))
            continue
        services = " ".join(u if s == "active" else f"{u}!{s}" for u, s in node.services.items())
        cpu = "?" if node.cpu_percent is None else f"{node.cpu_percent:.0f}%"
        load = "?" if node.load1 is None else f"{node.load1:.2f}"
        rows.append((node.name, node.role, cpu, load, services, details(node)))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = [f"visio status {stack}   {taken_at}"]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[5]
              for row in rows]
    found = findings(nodes)
    lines.append("")
    lines += [f"! {item}" for item in found] or ["ok: every node read, every service active, clusters agree"]
    return "\n".join(lines)


def summary(statuses: Iterable[NodeStatus]) -> dict[str, Any]:
    """Machine-readable form (`visio status --json`)."""
    nodes = list(statuses)
    return {"nodes": [n.as_dict() for n in nodes], "findings": findings(nodes)}
