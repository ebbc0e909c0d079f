"""Every writer of textfile metrics uses the one directory the node exporter reads (roles/common's
common_metrics_dir), and the roles agree on who may write there: the PostgreSQL backup, the TURN
allocation counter and the rolling upgrade's drain marker each write to it, and roles/common
passes the same directory to the exporter's textfile collector."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]


def _defaults(role: str) -> dict:
    return dict(yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text(encoding="utf-8")))


def test_the_writers_use_the_node_exporters_textfile_directory() -> None:
    common = _defaults("common")
    directory = common["common_metrics_dir"]
    assert _defaults("postgresql")["postgresql_metrics_dir"] == directory
    assert _defaults("coturn")["coturn_metrics_dir"] == directory
    marker = (ROOT / "roles" / "monitoring" / "tasks" / "drain_marker.yml").read_text(encoding="utf-8")
    assert f"default('{directory}')" in marker
    arguments = (ROOT / "roles" / "common" / "templates" / "prometheus-node-exporter.default.j2").read_text(
        encoding="utf-8"
    )
    assert "--collector.textfile.directory={{ common_metrics_dir }}" in arguments
    assert "textfile" in common["common_node_exporter_collectors"]


def test_one_owner_for_the_directory() -> None:
    """Only roles/common creates the directory; the PostgreSQL role joins its group (postgres writes as
    Patroni's callback), so two roles never fight over its owner or mode from one converge to the next."""
    assert _defaults("postgresql")["postgresql_metrics_group"] == _defaults("common")["common_metrics_group"]
    creators = []
    for path in (ROOT / "roles").glob("*/tasks/*.yml"):
        for task in yaml.safe_load(path.read_text(encoding="utf-8")) or []:
            module = task.get("ansible.builtin.file") or {}
            if "metrics_dir" in str(module.get("path", "")) and module.get("state") == "directory":
                creators.append(str(path.relative_to(ROOT)))
    assert creators == ["roles/common/tasks/metrics.yml"]
