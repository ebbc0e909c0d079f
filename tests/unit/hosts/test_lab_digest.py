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


CONFIG = {
    "ministry": {"slug": "lab"},
    "versions": {"livekit": "1.13.5", "coturn": "4.6.1-1", "postgresql": 15},
}


def _state(inventory, config=CONFIG, **overrides):
    """What `hosts_to_converge` compares: the outputs of the last converge and the new inputs (both
    shapes at once: `versions` as the outputs keep them, `config` and `inventory` as the inputs)."""
    from visio_infra.hosts.configuration import host_identities, without_identities, without_versions

    return {
        "shared_digest": _digest(
            inventory=without_identities(inventory), config=without_versions(config), **overrides
        ),
        "identities": host_identities(inventory),
        "versions": config["versions"],
        "config": config,
        "inventory": inventory,
    }


def _with_versions(**versions):
    return {**CONFIG, "versions": {**CONFIG["versions"], **versions}}


TWO = {
    "groups": {
        "sfu": [
            {"name": "lab-sfu-1", "private_ip": "10.77.0.74", "public_ip": "10.77.0.74"},
            {"name": "lab-sfu-2", "private_ip": "10.77.0.75", "public_ip": "10.77.0.75"},
        ]
    },
    "connection": {
        "user": "root",
        "host_keys": {"lab-sfu-1": "ssh-ed25519 AAAA", "lab-sfu-2": "ssh-ed25519 CCCC"},
    },
}


def _recreated(*names):
    inventory = json.loads(json.dumps(TWO))
    for name in names:
        inventory["connection"]["host_keys"][name] = f"ssh-ed25519 new-{name}"
    return inventory


def test_a_recreated_machine_alone_is_converged_alone():
    from visio_infra.hosts.configuration import hosts_to_converge

    assert hosts_to_converge(_state(TWO), _state(_recreated("lab-sfu-2"))) == ["lab-sfu-2"]
    assert hosts_to_converge(_state(TWO), _state(_recreated("lab-sfu-2", "lab-sfu-1"))) == [
        "lab-sfu-1",
        "lab-sfu-2",
    ]


def test_any_other_change_converges_every_host():
    from visio_infra.hosts.configuration import hosts_to_converge

    new = _recreated("lab-sfu-2")
    # The same recreated machine, plus a change every host may read: every host.
    assert hosts_to_converge(_state(TWO), _state(new, content="d" * 64)) is None
    assert hosts_to_converge(_state(TWO), _state(new, secrets=secrets_digest({"db_password": "q"}))) is None
    moved = json.loads(json.dumps(new))
    moved["groups"]["sfu"][1]["public_ip"] = "10.77.0.76"
    assert hosts_to_converge(_state(TWO), _state(moved)) is None
    # A host added or removed changes what the others are configured with (firewalls, scrape targets).
    assert hosts_to_converge(_state(INVENTORY), _state(TWO)) is None
    # Nothing changed in the identities (the digest differed for another reason): every host.
    assert hosts_to_converge(_state(TWO), _state(TWO, config={**CONFIG, "ministry": {"slug": "x"}})) is None
    assert hosts_to_converge(_state(TWO), _state(TWO)) is None


def test_state_from_before_the_shared_digest_converges_every_host():
    from visio_infra.hosts.configuration import hosts_to_converge

    assert hosts_to_converge({"digest": "0" * 64}, _state(_recreated("lab-sfu-2"))) is None


def test_identities_are_hashes_and_a_cloud_without_them_has_none():
    from visio_infra.hosts.configuration import host_identities, without_identities

    identities = host_identities(TWO)
    assert set(identities) == {"lab-sfu-1", "lab-sfu-2"}
    assert all(len(v) == 64 and "AAAA" not in v for v in identities.values())
    assert host_identities({"groups": {}, "connection": {"user": "debian", "bastion": None}}) == {}
    assert "host_keys" not in without_identities(TWO)["connection"]
    assert without_identities(TWO)["groups"] == TWO["groups"]


def test_a_version_rolled_out_converges_that_roles_hosts_only():
    from visio_infra.hosts.configuration import hosts_to_converge

    with_turn = json.loads(json.dumps(TWO))
    turn = {"name": "lab-turn-1", "private_ip": "10.77.0.84", "public_ip": "10.77.0.84"}
    with_turn["groups"]["turn"] = [turn]
    with_turn["connection"]["host_keys"]["lab-turn-1"] = "ssh-ed25519 TTTT"
    old = _state(with_turn)
    sfu = ["lab-sfu-1", "lab-sfu-2"]
    assert hosts_to_converge(old, _state(with_turn, _with_versions(livekit="1.13.4"))) == sfu
    assert hosts_to_converge(old, _state(with_turn, _with_versions(coturn="4.6.2-1"))) == ["lab-turn-1"]
    # A version and a recreated machine of another role: both.
    recreated = json.loads(json.dumps(with_turn))
    recreated["connection"]["host_keys"]["lab-turn-1"] = "ssh-ed25519 new"
    assert hosts_to_converge(old, _state(recreated, _with_versions(livekit="1.13.4"))) == [
        "lab-sfu-1",
        "lab-sfu-2",
        "lab-turn-1",
    ]
    # A version together with any other config change: every host.
    other = {**_with_versions(livekit="1.13.4"), "ministry": {"slug": "x"}}
    assert hosts_to_converge(old, _state(with_turn, other)) is None
