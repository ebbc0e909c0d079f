"""What the monitoring role's tests share: Prometheus's own tools, and the role's templates rendered
the way Ansible renders them (Jinja2 with Ansible's filters and tests) from the project's inventory.

promtool, amtool, prometheus itself and chromium (the dashboard test) come from Debian (`prometheus`,
`prometheus-alertmanager`, `chromium`, installed by scripts/setup.sh). Without them the tests fail
and say how to install them: never skipped.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from visio_infra.hosts.inventory import ansible_inventory, build_inventory
from visio_infra.model.config.stack import StackConfig
from visio_infra.model.monitoring import alert_thresholds
from visio_infra.model.sizing.plan import plan
from visio_infra.model.topology import plan_nodes

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "monitoring"
RULES = ROLE / "files" / "rules" / "visio-alerts.yml"
MONITORING_HOST = "monitoring-1"


def tool(name: str) -> str:
    """Path of a Prometheus tool; a clear failure (not a skip) when it is missing."""
    import pytest

    path = shutil.which(name)
    if path is None:
        package = {
            "promtool": "prometheus",
            "prometheus": "prometheus",
            "amtool": "prometheus-alertmanager",
            "chromium": "chromium",
        }[name]
        pytest.fail(
            f"{name} is not installed: the monitoring checks need Prometheus's own tools; "
            f"run scripts/setup.sh (or apt-get install --no-install-recommends {package})"
        )
    return path


def run_tool(name: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool(name), *args], capture_output=True, text=True, cwd=cwd, timeout=60, check=False
    )


def role_defaults() -> dict[str, Any]:
    return dict(yaml.safe_load((ROLE / "defaults" / "main.yml").read_text(encoding="utf-8")))


def _template(text: str, variables: dict[str, Any], role: Path = ROLE) -> str:
    """Render `text` with Ansible's own templating engine, as the `template` action does."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template

    templar = Templar(loader=DataLoader(), variables=variables).copy_with_new_env(
        searchpath=[str(role / "templates")], available_variables=variables
    )
    overrides = {"trim_blocks": True, "lstrip_blocks": False}
    return str(templar.template(trust_as_template(text), escape_backslashes=False, overrides=overrides))


def inventory_for(config: StackConfig, counts: dict[str, int] | None = None) -> dict[str, Any]:
    """The Ansible inventory the project builds for this stack (the same path as a converge), plus a
    monitoring host in the stack's monitoring range."""
    counts = counts or plan(config).counts
    nodes = plan_nodes(config, counts)
    public = {node.name: f"203.0.113.{10 + i}" for i, node in enumerate(nodes) if node.public}
    inventory = ansible_inventory(build_inventory(nodes, public, {"user": "debian"}))
    monitoring_net = ipaddress.ip_network(str(config.network.monitoring_cidr))
    address = next(iter(monitoring_net.hosts()), monitoring_net.network_address)
    inventory["all"]["children"]["monitoring"] = {
        "hosts": {MONITORING_HOST: {"private_ip": str(address), "public_ip": None}}
    }
    return inventory


def render(template: str, config: StackConfig, inventory: dict[str, Any], **overrides: Any) -> str:
    """Render one of the role's templates for the monitoring host, as a converge would."""
    children = inventory["all"]["children"]
    groups = {group: list(entry["hosts"]) for group, entry in children.items()}
    hostvars = {name: dict(host) for entry in children.values() for name, host in entry["hosts"].items()}
    context: dict[str, Any] = {
        "ansible_managed": "Ansible managed",
        "inventory_hostname": MONITORING_HOST,
        "groups": groups,
        "hostvars": hostvars,
        **hostvars[MONITORING_HOST],
        "visio_stack_slug": config.ministry.slug,
        "livekit_signalling_domain": config.domains.signalling,
        "coturn_realm": config.domains.turn,
        "visio_ca_certificate": "",
        **alert_thresholds(config),
    }
    # Role defaults as Ansible treats them: trusted templates, resolved lazily on use.
    variables = {**_trusted(role_defaults()), **context, **overrides}
    return _template((ROLE / "templates" / template).read_text(encoding="utf-8"), variables)


def _trusted(value: Any) -> Any:
    """Strings of a role's own files are templates to Ansible (2.19 renders only trusted strings)."""
    from ansible.template import trust_as_template

    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, list):
        return [_trusted(item) for item in value]
    if isinstance(value, dict):
        return {key: _trusted(item) for key, item in value.items()}
    return value


def render_role_template(role: str, template: str, variables: dict[str, Any]) -> str:
    """Another role's template (its defaults, then `variables`), rendered the same way."""
    directory = ROOT / "roles" / role
    defaults = yaml.safe_load((directory / "defaults" / "main.yml").read_text(encoding="utf-8"))
    context = {"ansible_managed": "Ansible managed", **_trusted(defaults), **variables}
    return _template((directory / "templates" / template).read_text(encoding="utf-8"), context, directory)
