"""The ssh_config `visio verify` and `visio status` use to reach a stack's nodes."""

from __future__ import annotations

import stat
from pathlib import Path

from visio_infra.hosts.ssh import node_address, ssh_config_text, write_ssh_config


def test_lab_config_pins_the_stack_key_and_its_known_hosts(tmp_path: Path):
    connection = {"user": "root", "ssh_key_file": "/k/id", "known_hosts_file": "/k/known"}
    text = ssh_config_text(connection, tmp_path)
    assert "IdentityFile /k/id\n  IdentitiesOnly yes" in text
    assert "UserKnownHostsFile /k/known\n  StrictHostKeyChecking yes" in text
    assert f"ControlPath {tmp_path}/cm-%C" in text and "BatchMode yes" in text
    assert "ProxyJump" not in text and "accept-new" not in text
    assert "LogLevel ERROR" in text, "the nodes' Banner would land on every command's stderr"


def test_production_goes_through_the_bastion_to_private_addresses(tmp_path: Path):
    connection = {"user": "debian", "bastion": {"host": "bastion.interieur.example", "user": "ops"}}
    text = ssh_config_text(connection, tmp_path)
    assert "ProxyJump ops@bastion.interieur.example" in text and "User debian" in text
    host = {"name": "sfu-1", "private_ip": "10.0.1.5", "public_ip": "192.0.2.5"}
    assert node_address(host, connection) == "10.0.1.5"
    assert node_address(host, {}) == "192.0.2.5"
    assert node_address({**host, "public_ip": None}, {}) == "10.0.1.5"


def test_written_config_is_private(tmp_path: Path):
    path = write_ssh_config({}, tmp_path, "ssh_config")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "StrictHostKeyChecking accept-new" in path.read_text()


def test_each_process_can_have_its_own_control_sockets(tmp_path: Path):
    """verify's workers each multiplex on their own connection: a node's MaxSessions is never hit."""
    path = write_ssh_config({}, tmp_path, "ssh_config.41", control_name="cm41")
    assert f"ControlPath {tmp_path}/cm41-%C" in path.read_text()
    assert ssh_config_text({}, tmp_path, "cm42") != ssh_config_text({}, tmp_path, "cm41")
