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

FIRST_SCRAPES_SECONDS = 60
"""How long a just-converged Prometheus may take to scrape every target once (15 s interval, plus
the blackbox probes' timeouts). Only targets never scraped yet are waited for: a target that was
scraped and is down fails at once."""

GET = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())"


def _api(node, path: str) -> dict:
    url = f"http://{node.private_ip}:{PROMETHEUS_PORT}{path}"
    result = node.host.run(f"python3 -c {shlex.quote(GET)} {shlex.quote(url)}")
    assert result.rc == 0, f"{node}: GET {path} failed: {result.stderr.strip()[-300:]}"
    body = json.loads(result.stdout)
    assert body.get("status") == "success", f"{node}: {path}: {body}"
    return body["data"]


def _scraped_targets(node) -> list[dict]:
    deadline = time.monotonic() + FIRST_SCRAPES_SECONDS
    while True:
        active = _api(node, "/api/v1/targets?state=active")["activeTargets"]
        if all(t.get("health") != "unknown" for t in active) or time.monotonic() > deadline:
            return active
        time.sleep(3)


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
    problems = ex.target_problems(_scraped_targets(node), ex.expected_targets(ex.scrape_jobs(), inventory))
    assert not problems, f"{node}: " + "; ".join(problems)


def test_no_alert_fires_on_a_healthy_stack(node):
    firing = ex.firing_alerts(_api(node, "/api/v1/alerts")["alerts"])
    assert not firing, f"{node}: alerts firing: " + "; ".join(firing)
