"""The monitoring node: Prometheus ready with the project's rules, every exporter and probe of the
inventory scraped and up, and no alert firing on a healthy stack. Read through Prometheus' own API on
the monitoring node (its private address), as an operator behind the bastion would."""

from __future__ import annotations

import json
import shlex
import time

from visio_infra.model.security_rules import PROMETHEUS_PORT

from . import expectations as ex

ROLES = ("monitoring",)

FRESH_DATA_SECONDS = 90
"""How long Prometheus may take to scrape every target once more and evaluate its rules on those
samples: 15 s scrape and evaluation intervals and 5 s probe timeouts (roles/monitoring's defaults),
with room for a loaded host. A Prometheus that takes longer is itself a failure."""

GET = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())"


def _api(node, path: str) -> dict:
    url = f"http://{node.private_ip}:{PROMETHEUS_PORT}{path}"
    result = node.host.run(f"python3 -c {shlex.quote(GET)} {shlex.quote(url)}")
    assert result.rc == 0, f"{node}: GET {path} failed: {result.stderr.strip()[-300:]}"
    body = json.loads(result.stdout)
    assert body.get("status") == "success", f"{node}: {path}: {body}"
    return body["data"]


_FRESH: dict[str, list[dict]] = {}


def _fresh_targets(node) -> list[dict]:
    """The active targets, once every one was scraped after this call and every rule group evaluated
    on those samples: the targets' health and the alerts then describe the stack as it is now, not as
    it was before a node came back (a verify right after `pulumi up` restored one). Once per node."""
    if node.name not in _FRESH:
        since = float(_api(node, "/api/v1/query?query=time()")["result"][0])
        deadline = time.monotonic() + FRESH_DATA_SECONDS
        first: dict[str, float] = {}
        while True:
            active = _api(node, "/api/v1/targets?state=active")["activeTargets"]
            first = ex.first_scrapes_since(active, since, first)
            waiting = ex.stale_for_alerts(active, _api(node, "/api/v1/rules")["groups"], first)
            if not waiting:
                break
            assert time.monotonic() < deadline, (
                f"{node}: Prometheus did not scrape and evaluate anew within {FRESH_DATA_SECONDS} s: "
                + "; ".join(waiting[:10])
            )
            time.sleep(3)
        _FRESH[node.name] = active
    return _FRESH[node.name]


def test_prometheus_loads_the_project_rules(node):
    groups = {g["name"]: g for g in _api(node, "/api/v1/rules")["groups"]}
    expected = {"visio-sfu", "visio-turn", "visio-database"}
    missing = sorted(expected - set(groups))
    assert not missing, f"{node}: rule groups {sorted(groups)} lack {missing}"
    broken = [
        f"{rule['name']}: {rule.get('lastError')}"
        for group in groups.values()
        for rule in group["rules"]
        if rule.get("health") == "err"
    ]
    assert not broken, f"{node}: rules failing to evaluate: {broken}"


def test_every_node_of_the_inventory_is_scraped_and_up(node, inventory):
    problems = ex.target_problems(_fresh_targets(node), ex.expected_targets(ex.scrape_jobs(), inventory))
    assert not problems, f"{node}: " + "; ".join(problems)


def test_no_alert_fires_on_a_healthy_stack(node):
    _fresh_targets(node)  # alerts evaluated on samples taken now
    firing = ex.firing_alerts(_api(node, "/api/v1/alerts")["alerts"])
    assert not firing, f"{node}: alerts firing: " + "; ".join(firing)
