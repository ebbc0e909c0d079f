"""A real outage makes the matching alert fire on the lab's monitoring node (needs `scripts/lab.sh up`).

coturn is stopped on one TURN node; Prometheus' blackbox probes of that node fail, `TURNNodeDown`
goes pending, then firing once its `for:` has passed, and reaches Alertmanager; the other TURN node
raises nothing. coturn is started again and the alert resolves. The figures printed are what an SRE
would want to know about their paging: seconds from the outage to firing, and to resolution.
"""

from __future__ import annotations

import json
import shlex
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.lab.lab_ops import ROOT, STACK, ssh
from tests.verify.expectations import duration_seconds
from visio_infra.commands.verify import fetch_outputs
from visio_infra.model.security_rules import PROMETHEUS_PORT

pytestmark = pytest.mark.labhost

RULES = ROOT / "roles/monitoring/files/rules/visio-alerts.yml"
ALERT = "TURNNodeDown"
DEFAULTS = ROOT / "roles/monitoring/defaults/main.yml"


def _scrape_and_evaluation_seconds(defaults: Path = DEFAULTS) -> int:
    """roles/monitoring's scrape and rule evaluation intervals added: a probe failure is seen within
    one scrape and the rule acts on it at its next evaluation."""
    values = yaml.safe_load(defaults.read_text(encoding="utf-8"))
    return duration_seconds(values["monitoring_scrape_interval"]) + duration_seconds(
        values["monitoring_evaluation_interval"]
    )


SCRAPE_AND_EVALUATION_SECONDS = _scrape_and_evaluation_seconds()
PROBE_TIMEOUT_SECONDS = 10
"""The blackbox modules' timeout (a TCP connect to a stopped listener is refused at once; TLS too)."""


def _for_seconds(alert: str, rules: Path = RULES) -> int:
    """The alert's `for:` from the project's rule file, in seconds."""
    for group in yaml.safe_load(rules.read_text(encoding="utf-8"))["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == alert:
                return duration_seconds(rule["for"])
    raise AssertionError(f"{alert} is not in {rules}")


def _alerts(monitoring: dict[str, Any]) -> list[dict[str, Any]]:
    url = f"http://{monitoring['private_ip']}:{PROMETHEUS_PORT}/api/v1/alerts"
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.load(answer)["data"]["alerts"]


def _state(monitoring: dict[str, Any], node: str) -> str | None:
    states = [a["state"] for a in _alerts(monitoring)
              if a["labels"].get("alertname") == ALERT and a["labels"].get("node") == node]
    return "firing" if "firing" in states else (states[0] if states else None)


def _in_alertmanager(inventory: dict[str, Any], monitoring: dict[str, Any], node: str) -> bool:
    """Whether Alertmanager (loopback only, on the monitoring node) holds the active alert for `node`."""
    read = ("import json,urllib.request;"
            "print(json.dumps(json.load(urllib.request.urlopen('http://127.0.0.1:9093/api/v2/alerts',"
            "timeout=10))))")
    alerts = json.loads(ssh(inventory, monitoring, f"python3 -c {shlex.quote(read)}", check=True))
    return any(a["labels"].get("alertname") == ALERT and a["labels"].get("node") == node
               and a["status"]["state"] == "active" for a in alerts)


def _wait(what: str, seconds: float, done) -> float:
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if done():
            return time.monotonic() - start
        time.sleep(2)
    raise AssertionError(f"{what}: not within {seconds:.0f} s")


def test_coturn_stopped_fires_turn_node_down_then_resolves(record_property) -> None:
    inventory = fetch_outputs(STACK)["inventory"]
    [monitoring] = inventory["groups"]["monitoring"]
    victim, other = inventory["groups"]["turn"][:2]
    for host in (victim, other):
        assert _state(monitoring, host["name"]) is None, f"{ALERT} already raised for {host['name']}"
    hold = _for_seconds(ALERT)
    bound = hold + 2 * SCRAPE_AND_EVALUATION_SECONDS + PROBE_TIMEOUT_SECONDS

    ssh(inventory, victim, "systemctl stop coturn", check=True)
    stopped = time.monotonic()
    try:
        pending = _wait("pending", SCRAPE_AND_EVALUATION_SECONDS * 2 + PROBE_TIMEOUT_SECONDS,
                        lambda: _state(monitoring, victim["name"]) in ("pending", "firing"))
        firing = pending + _wait(f"{ALERT} firing for {victim['name']}", bound - pending,
                                 lambda: _state(monitoring, victim["name"]) == "firing")
        _wait("the alert in Alertmanager", SCRAPE_AND_EVALUATION_SECONDS * 2,
              lambda: _in_alertmanager(inventory, monitoring, victim["name"]))
        assert _state(monitoring, other["name"]) is None, f"{ALERT} raised for the healthy {other['name']}"
    finally:
        ssh(inventory, victim, "systemctl start coturn", check=True)
    restarted = time.monotonic()
    resolved = _wait(f"{ALERT} resolved for {victim['name']}", SCRAPE_AND_EVALUATION_SECONDS * 2
                     + PROBE_TIMEOUT_SECONDS, lambda: _state(monitoring, victim["name"]) is None)
    figures = {"for_seconds": hold, "pending_after_s": round(pending, 1), "firing_after_s": round(firing, 1),
               "resolved_after_restart_s": round(resolved, 1),
               "outage_s": round(restarted - stopped, 1)}
    print(f"[alert drill] {ALERT} on {victim['name']}: {figures}")
    for key, value in figures.items():
        record_property(key, value)
    assert hold <= firing <= bound, figures
