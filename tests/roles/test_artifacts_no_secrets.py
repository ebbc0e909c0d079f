"""A real ansible-runner run through `ansible_run.converge` keeps every secret out of its artifacts.

Runs a probe playbook on this machine (connection local): the secrets demonstrably reach Ansible
(the probe writes them to a file), yet no artifact file (command line, environment, events,
stdout, fact cache) contains any of them, nor a credential from the caller's environment.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from visio_infra.hosts import ansible_vars
from visio_infra.hosts.ansible_run import converge
from visio_infra.hosts.inventory import build_inventory
from visio_infra.model.topology import plan_nodes

HERE = Path(__file__).resolve().parent
PASSPHRASE = "pulumi-passphrase-that-must-not-leak-42"


@pytest.fixture(scope="module")
def sample():
    import sys

    sys.path.insert(0, str(HERE.parent / "unit"))
    from pulumi_mocks import sample_config

    from tests.unit.hosts.test_ansible_vars import CERTS, SECRETS

    return sample_config(), CERTS, SECRETS


@pytest.mark.parametrize("per_node", [False, True], ids=["ministry-files", "stack-ca-per-node"])
def test_secrets_reach_ansible_but_not_the_artifacts(sample, tmp_path, monkeypatch, per_node):
    config, certs, secrets = sample
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", PASSPHRASE)
    nodes = plan_nodes(config, {"redis": 1})
    inventory = build_inventory(nodes, {}, {"user": "root"})
    key_material = "turn-key-material"
    if per_node:
        # The stack CA's shape: the node's own key, reached through visio_node_private_keys.
        key_material = "own-key-material-of-the-redis-node"
        own_key = certs["turn"]["key"].replace("turn-key-material", key_material)
        own = {"cert": certs["turn"]["cert"], "key": own_key}
        certs = {"ca_certificate": certs["ca_certificate"], "nodes": {nodes[0].name: own}}
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    result = converge(
        config, inventory, secrets, certs,
        stack="leaktest",
        playbook=str(HERE / "leak_probe.yml"),
        extra_vars={"ansible_connection": "local", "ansible_python_interpreter": __import__("sys").executable,
                    "probe_dir": str(probe_dir)},
        artifacts_root=tmp_path / "artifacts",
    )
    assert result.succeeded and result.changed == 1
    written = (probe_dir / f"{nodes[0].name}.secret").read_text()
    assert secrets["redis_password"] in written and key_material in written

    needles = [*ansible_vars.secret_values(ansible_vars.secret_vars(secrets, certs)), PASSPHRASE]
    files = [p for p in result.artifact_dir.rglob("*") if p.is_file()]
    assert any(p.name == "command" for p in files) and any(p.parent.name == "job_events" for p in files)
    everything = "\n".join(p.read_text(errors="replace") for p in files)
    assert "probe lab" in everything or f"probe {config.ministry.slug} 6379" in everything
    leaks = sorted({n[:6] + "..." for n in needles if n in everything})
    assert leaks == [], f"secrets found in artifacts: {leaks}"
    assert result.leaked_secrets == 0
