"""prometheus.yml and alertmanager.yml as the role renders them from the project's own inventory (the
lab's and a ministry's), accepted by promtool and amtool; targets follow the inventory groups; the
drain inhibition covers the alerts a rolling upgrade would otherwise raise."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml
from monitoring_support import (
    MONITORING_HOST,
    RULES,
    inventory_for,
    render,
    role_defaults,
    run_tool,
)

from visio_infra.model.monitoring import alert_thresholds
from visio_infra.model.stack_file import load_stack_file

STACKS = Path(__file__).resolve().parents[3] / "stacks"
RENDERED_STACKS = ["lab", "interieur"]
"""The lab and a large ministry (bastion, 16 SFU nodes)."""


def _config(stack: str) -> Any:
    return load_stack_file(STACKS / f"Pulumi.{stack}.yaml")


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real CA certificate: promtool loads the CA files the scrape configs name."""
    from visio_infra.cloud.pki import issue_ca

    cert, _key = issue_ca("Visio test CA", "Visio", dt.datetime.now(dt.UTC))
    path = tmp_path_factory.mktemp("ca") / "ca.crt"
    path.write_text(cert, encoding="utf-8")
    return path


def _render_prometheus(tmp_path: Path, stack: str, ca_file: Path, **overrides: Any) -> dict[str, Any]:
    """Render prometheus.yml and the rule files into tmp_path; return the parsed config."""
    config = _config(stack)
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir(exist_ok=True)
    (rules_dir / "visio-alerts.yml").write_text(RULES.read_text(encoding="utf-8"), encoding="utf-8")
    inventory = overrides.pop("inventory", None) or inventory_for(config)
    variables = {"monitoring_rules_dir": str(rules_dir), "monitoring_ca_file": str(ca_file), **overrides}
    (rules_dir / "visio-thresholds.yml").write_text(
        render("visio-thresholds.yml.j2", config, inventory, **variables), encoding="utf-8"
    )
    text = render("prometheus.yml.j2", config, inventory, **variables)
    (tmp_path / "prometheus.yml").write_text(text, encoding="utf-8")
    return dict(yaml.safe_load(text))


def _targets(prometheus: dict[str, Any], job: str) -> dict[str, tuple[str, str]]:
    """node -> (address, role) of one scrape job."""
    [scrape] = [s for s in prometheus["scrape_configs"] if s["job_name"] == job]
    return {
        entry["labels"]["node"]: (entry["targets"][0], entry["labels"]["role"])
        for entry in scrape["static_configs"]
    }


@pytest.mark.parametrize("stack", RENDERED_STACKS)
def test_promtool_accepts_prometheus_yml_of_the_stack(tmp_path: Path, stack: str, ca_file: Path) -> None:
    _render_prometheus(tmp_path, stack, ca_file)
    result = run_tool("promtool", "check", "config", "prometheus.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 2 rule files found" in result.stdout, result.stdout


@pytest.mark.parametrize("stack", RENDERED_STACKS)
def test_every_inventory_node_is_scraped_at_its_private_address(tmp_path: Path, stack: str, ca_file: Path):
    config = _config(stack)
    inventory = inventory_for(config)
    prometheus = _render_prometheus(tmp_path, stack, ca_file, inventory=inventory)
    children = inventory["all"]["children"]
    every = {
        n: (host["private_ip"], group) for group, e in children.items() for n, host in e["hosts"].items()
    }
    assert _targets(prometheus, "node") == {
        name: (f"{ip}:9100", group) for name, (ip, group) in every.items()
    }
    sfu = children["sfu"]["hosts"]
    assert _targets(prometheus, "livekit") == {n: (f"{h['private_ip']}:6789", "sfu") for n, h in sfu.items()}
    for job, port in (("postgres", 9187), ("patroni", 9547), ("etcd", 2381)):
        db = children["db"]["hosts"]
        assert _targets(prometheus, job) == {n: (f"{h['private_ip']}:{port}", "db") for n, h in db.items()}
    redis = children["redis"]["hosts"]
    assert _targets(prometheus, "redis") == {
        n: (f"{h['private_ip']}:9121", "redis") for n, h in redis.items()
    }
    # TURN and signalling are probed where clients reach them: the public addresses.
    turn = children["turn"]["hosts"]
    assert _targets(prometheus, "turn_tcp") == {
        n: (f"{h['public_ip']}:3478", "turn") for n, h in turn.items()
    }
    assert _targets(prometheus, "signalling_tls") == {
        n: (f"https://{h['public_ip']}:443/", "sfu") for n, h in sfu.items()
    }
    assert prometheus["global"]["external_labels"] == {"stack": config.ministry.slug}
    assert "remote_write" not in prometheus


def test_a_grown_role_is_scraped_after_the_next_converge(tmp_path: Path, ca_file: Path) -> None:
    config = _config("lab")
    counts = {"sfu": 2, "turn": 2, "db": 3, "redis": 3, "bastion": 0}
    before = _render_prometheus(tmp_path, "lab", ca_file, inventory=inventory_for(config, counts))
    grown_inventory = inventory_for(config, {**counts, "sfu": 3})
    after = _render_prometheus(tmp_path, "lab", ca_file, inventory=grown_inventory)
    grown = set(_targets(after, "livekit")) - set(_targets(before, "livekit"))
    assert len(grown) == 1 and len(_targets(after, "livekit")) == 3
    [new] = grown
    assert new in _targets(after, "node") and new in _targets(after, "signalling_tls")


def test_probes_go_through_the_local_blackbox_exporter(tmp_path: Path, ca_file: Path) -> None:
    prometheus = _render_prometheus(tmp_path, "interieur", ca_file)
    probes = {s["job_name"]: s for s in prometheus["scrape_configs"] if s.get("metrics_path") == "/probe"}
    assert set(probes) == {"turn_tcp", "turn_tls", "signalling_tls"}
    for scrape in probes.values():
        relabel = scrape["relabel_configs"]
        assert {"target_label": "__address__", "replacement": "127.0.0.1:9115"} in relabel
    config = _config("interieur")
    blackbox = yaml.safe_load(render("blackbox.yml.j2", config, inventory_for(config)))
    tls = blackbox["modules"]["turn_tls"]["tcp"]["tls_config"]
    assert tls["server_name"] == "turn.visio.interieur.gouv.fr"
    web = blackbox["modules"]["signalling_https"]["http"]
    assert web["tls_config"]["server_name"] == "sfu.visio.interieur.gouv.fr"
    assert web["fail_if_not_ssl"] is True


def test_the_ministrys_own_prometheus_gets_every_sample_by_remote_write(tmp_path: Path, ca_file: Path):
    url = "https://prometheus.interieur.gouv.fr/api/v1/write"
    prometheus = _render_prometheus(
        tmp_path,
        "interieur",
        ca_file,
        monitoring_remote_write_url=url,
        monitoring_remote_write_bearer_token_file=str(ca_file),
    )
    assert prometheus["remote_write"] == [{"url": url, "authorization": {"credentials_file": str(ca_file)}}]
    result = run_tool("promtool", "check", "config", "prometheus.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_thresholds_are_the_stacks_sizing(tmp_path: Path, ca_file: Path) -> None:
    config = _config("interieur")
    _render_prometheus(tmp_path, "interieur", ca_file)
    rules = yaml.safe_load((tmp_path / "rules" / "visio-thresholds.yml").read_text(encoding="utf-8"))
    recorded = {r["record"]: r["expr"] for group in rules["groups"] for r in group["rules"]}
    expected = alert_thresholds(config)
    assert recorded == {
        "visio:sfu_cpu_target": f"vector({float(expected['monitoring_sfu_cpu_target'])})",
        "visio:sfu_participants_per_node": f"vector({expected['monitoring_sfu_participants_per_node']})",
        "visio:disk_filling_free_fraction": (
            f"vector({float(expected['monitoring_disk_filling_free_fraction'])})"
        ),
    }


def _alertmanager(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    config = _config("lab")
    text = render("alertmanager.yml.j2", config, inventory_for(config), **overrides)
    (tmp_path / "alertmanager.yml").write_text(text, encoding="utf-8")
    return dict(yaml.safe_load(text))


@pytest.mark.parametrize("webhook", ["", "https://alertes.interieur.gouv.fr/visio"])
def test_amtool_accepts_alertmanager_yml(tmp_path: Path, webhook: str) -> None:
    alertmanager = _alertmanager(tmp_path, monitoring_alert_webhook_url=webhook)
    result = run_tool("amtool", "check-config", "alertmanager.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    receivers = {r["name"]: r for r in alertmanager["receivers"]}
    if webhook:
        assert alertmanager["route"]["receiver"] == "webhook"
        assert receivers["webhook"]["webhook_configs"] == [{"url": webhook, "send_resolved": True}]
    else:
        # No default receiver anywhere: alerts stay in Alertmanager until the ministry names one.
        assert alertmanager["route"]["receiver"] == "none" and receivers == {"none": {"name": "none"}}


def test_amtool_routes_info_alerts_nowhere_and_pages_to_the_webhook(tmp_path: Path) -> None:
    _alertmanager(tmp_path, monitoring_alert_webhook_url="https://alertes.interieur.gouv.fr/visio")

    def route(*labels: str) -> str:
        result = run_tool(
            "amtool", "config", "routes", "test", "--config.file=alertmanager.yml", *labels, cwd=tmp_path
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout.strip()

    assert route("alertname=NodeDraining", "severity=info") == "none"
    assert route("alertname=SFUNodeDown", "severity=page") == "webhook"


def test_a_drain_inhibits_every_page_of_its_node(tmp_path: Path) -> None:
    """The rolling upgrade's drain marker raises NodeDraining (info) on the drained node; Alertmanager
    inhibits that node's `page` alerts. Every SFU and TURN page alert carries `node`, so it is covered."""
    alertmanager = _alertmanager(tmp_path)
    rules = alertmanager["inhibit_rules"]
    [drain] = [r for r in rules if r["source_matchers"] == ['alertname="NodeDraining"']]
    assert drain["target_matchers"] == ['severity="page"'] and drain["equal"] == ["node"]
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    by_group = {g["name"]: g["rules"] for g in document["groups"]}
    [draining] = [r for r in by_group["visio-maintenance"] if r.get("alert") == "NodeDraining"]
    assert draining["labels"]["severity"] == "info" and "by (node, role)" in draining["expr"]
    from test_monitoring_rules import CASES

    fired = {c["alert"]: c["fire"][0] for c in CASES if c["fire"]}
    for group in ("visio-sfu", "visio-turn", "visio-nodes"):
        for rule in by_group[group]:
            if rule["labels"]["severity"] == "page":
                assert "node" in fired[rule["alert"]], f"{rule['alert']} has no node label to inhibit on"


def test_defaults_listen_on_the_private_side_and_send_nowhere() -> None:
    defaults = role_defaults()
    assert defaults["monitoring_listen_address"] == "{{ private_ip }}"
    assert defaults["monitoring_alertmanager_address"].startswith("127.0.0.1:")
    assert defaults["monitoring_blackbox_address"].startswith("127.0.0.1:")
    assert defaults["monitoring_alert_webhook_url"] == "" and defaults["monitoring_remote_write_url"] == ""
    args = render("alertmanager.default.j2", _config("lab"), inventory_for(_config("lab")))
    assert "--cluster.listen-address= " in args or args.rstrip().endswith('--cluster.listen-address="')
    assert MONITORING_HOST
