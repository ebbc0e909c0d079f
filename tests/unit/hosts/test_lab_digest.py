"""The configuration digest: what re-runs Ansible on `pulumi up`, and what never leaks into it."""

from __future__ import annotations

import json

from visio_infra.hosts.ansible_run import HostStats
from visio_infra.hosts.configuration import configuration_digest, content_digest, failed_hosts, secrets_digest

SECRETS = {"livekit_api_secret": "s" * 48, "db_password": "p" * 32}
INVENTORY = {
    "groups": {"sfu": [{"name": "lab-sfu-1", "private_ip": "10.77.0.74", "public_ip": "10.77.0.74"}]},
    "connection": {"user": "root", "host_keys": {"lab-sfu-1": "ssh-ed25519 AAAA"}},
}


def _digest(**overrides):
    args = {
        "inventory": INVENTORY,
        "config": {"ministry": {"slug": "lab"}},
        "content": "c" * 64,
        "secrets": secrets_digest(SECRETS),
        "certificates": "0" * 64,
    }
    args.update(overrides)
    return configuration_digest(**args)


def test_same_inputs_same_digest_whatever_the_key_order():
    reordered = json.loads(json.dumps(INVENTORY))
    reordered = {"connection": reordered["connection"], "groups": reordered["groups"]}
    assert _digest() == _digest(inventory=reordered)


def test_each_input_changes_the_digest():
    base = _digest()
    changed_inventory = json.loads(json.dumps(INVENTORY))
    changed_inventory["connection"]["host_keys"]["lab-sfu-1"] = "ssh-ed25519 BBBB"  # machine recreated
    assert _digest(inventory=changed_inventory) != base
    assert _digest(config={"ministry": {"slug": "other"}}) != base
    assert _digest(content="d" * 64) != base
    assert _digest(secrets=secrets_digest({**SECRETS, "db_password": "q" * 32})) != base
    assert _digest(certificates="1" * 64) != base


def test_secrets_digest_reveals_no_secret():
    digest = secrets_digest(SECRETS)
    assert len(digest) == 64 and all(value not in digest for value in SECRETS.values())
    assert secrets_digest(dict(reversed(list(SECRETS.items())))) == digest


def test_content_digest_follows_roles_playbooks_templates(tmp_path):
    (tmp_path / "roles/common/tasks").mkdir(parents=True)
    (tmp_path / "playbooks").mkdir()
    task = tmp_path / "roles/common/tasks/main.yml"
    task.write_text("- name: a\n")
    (tmp_path / "playbooks/site.yml").write_text("- hosts: all\n")
    first = content_digest(tmp_path)
    assert content_digest(tmp_path) == first
    # Byte caches and editor files do not count.
    (tmp_path / "roles/common/__pycache__").mkdir()
    (tmp_path / "roles/common/__pycache__/x.pyc").write_bytes(b"\0")
    (tmp_path / "roles/common/tasks/main.yml.swp").write_text("junk")
    assert content_digest(tmp_path) == first
    # Outside the content directories does not count either.
    (tmp_path / "README.md").write_text("docs")
    assert content_digest(tmp_path) == first
    task.write_text("- name: b\n")
    second = content_digest(tmp_path)
    assert second != first
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates/x.j2").write_text("{{ x }}")
    assert content_digest(tmp_path) != second
    task.chmod(0o755)
    assert content_digest(tmp_path) != second
    third = content_digest(tmp_path)
    # The code that renders the roles' variables counts too.
    (tmp_path / "visio_infra/hosts").mkdir(parents=True)
    (tmp_path / "visio_infra/hosts/ansible_vars.py").write_text("X = 1\n")
    assert content_digest(tmp_path) != third


def test_failed_hosts_from_run_recap():
    hosts = {"a": HostStats(ok=3, changed=1), "b": HostStats(ok=2, failed=1), "c": HostStats(unreachable=1)}
    assert failed_hosts(hosts) == ["b", "c"]
    assert failed_hosts({"a": HostStats(ok=1)}) == []


def test_converge_runs_in_a_child_process_and_reports_its_error():
    """The child gets its payload through a pipe and its failure becomes the `up`'s error message."""
    import pytest

    from visio_infra.hosts.configuration import run_in_child

    with pytest.raises(RuntimeError, match="validation error"):
        run_in_child("converge", {"props": {"config": {"ministry": {"slug": "x"}}, "secret": "s" * 40}})
