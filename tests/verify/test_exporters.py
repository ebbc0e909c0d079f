"""Every node: the metrics Prometheus scrapes are served, on the node's private address only.

For each endpoint of the node's role (the node exporter everywhere, PostgreSQL, etcd and Patroni
metrics on DB nodes, the Redis exporter; ports from `METRICS_PORTS`, the list the firewall is built
from): its unit is active and enabled, every listener on its port is bound to the private address
(none on a wildcard), and what it serves, read on the node itself at that address, holds the series
that prove it reads its service (pg_up 1, redis_up 1, a TURN node's allocation figures from the
textfile collector...).
"""

from __future__ import annotations

import shlex

from visio_infra.model.security_rules import METRICS_PORTS

from . import expectations as ex

ROLES = ("sfu", "turn", "db", "redis", "bastion", "monitoring")


def _listeners(node, port: int) -> list[ex.Listener]:
    found = []
    for proto in ("tcp", "tcp6"):
        found += ex.parse_proc_net(node.host.file(f"/proc/net/{proto}").content_string, proto)
    return [item for item in found if item.port == port]


def _fetch(node, url: str, ca_file: str | None) -> tuple[int, str]:
    context = f"ssl.create_default_context(cafile={ca_file!r})" if ca_file else "None"
    code = (
        "import ssl, urllib.request; "
        f"print(urllib.request.urlopen({url!r}, timeout=10, context={context}).read().decode())"
    )
    result = node.host.run(f"python3 -c {shlex.quote(code)}")
    return result.rc, result.stdout if result.rc == 0 else result.stderr.strip()[-300:]


def test_exporters_serve_their_series_on_the_private_address_only(node, facts, group_vars):
    problems = []
    variables = ex.node_variables(facts, group_vars, node.role)
    for check in ex.exporter_checks(node.role, variables):
        port = METRICS_PORTS[node.role][check.purpose]
        service = node.host.service(check.unit)
        if not service.is_running:
            problems.append(f"{check.unit} is not running")
            continue
        if not service.is_enabled:
            problems.append(f"{check.unit} is not enabled at boot")
        listeners = _listeners(node, port)
        if not listeners:
            problems.append(f"nothing listens on {port} ({check.purpose})")
        elsewhere = [str(item) for item in listeners if item.address != node.private_ip]
        if elsewhere:
            problems.append(f"{check.purpose} listens beyond {node.private_ip}: {', '.join(elsewhere)}")
        url = f"{'https' if check.ca_file else 'http'}://{node.private_ip}:{port}/metrics"
        rc, text = _fetch(node, url, check.ca_file)
        if rc != 0:
            problems.append(f"{check.purpose}: GET {url} failed: {text}")
            continue
        problems += [f"{check.purpose}: {p}" for p in ex.metrics_problems(text, check.series)]
    assert not problems, f"{node}: " + "; ".join(problems)
