"""The inventory output contract and the Ansible inventory derived from it."""

from __future__ import annotations

from visio_infra.hosts.inventory import GROUPS, ansible_inventory, build_inventory
from visio_infra.model.stack_file import load_stack_file, stack_file
from visio_infra.model.topology import plan_nodes


def _lab_inventory(bastion=None):
    lab = load_stack_file(stack_file("lab"))
    nodes = plan_nodes(lab, lab.sizing.nodes)
    public = {n.name: (str(n.private_ip) if n.public else None) for n in nodes}
    return build_inventory(nodes, public, {"user": "root", "bastion": bastion, "ssh_key_file": "/k"})


def test_contract_shape():
    inv = _lab_inventory()
    assert set(inv["groups"]) == set(GROUPS) == {"sfu", "turn", "db", "redis", "bastion", "monitoring"}
    for hosts in inv["groups"].values():
        for host in hosts:
            assert set(host) == {"name", "private_ip", "public_ip"}
    assert all(h["public_ip"] is None for h in inv["groups"]["db"] + inv["groups"]["redis"])
    assert all(h["public_ip"] for h in inv["groups"]["sfu"] + inv["groups"]["turn"])
    assert inv["connection"] == {"user": "root", "bastion": None, "ssh_key_file": "/k"}


def test_ansible_inventory_direct():
    ans = ansible_inventory(_lab_inventory())
    assert ans["all"]["vars"]["ansible_ssh_private_key_file"] == "/k"
    assert "ProxyJump" not in ans["all"]["vars"]["ansible_ssh_common_args"]
    assert "bastion" not in ans["all"]["children"]  # empty groups are left out
    sfu1 = ans["all"]["children"]["sfu"]["hosts"]["lab-sfu-1"]
    assert sfu1["ansible_host"] == sfu1["public_ip"] == sfu1["private_ip"]


def test_ansible_inventory_through_bastion_uses_private_addresses():
    inv = _lab_inventory(bastion={"host": "203.0.113.9", "user": "debian"})
    ans = ansible_inventory(inv)
    assert "-o ProxyJump=debian@203.0.113.9" in ans["all"]["vars"]["ansible_ssh_common_args"]
    for group in ans["all"]["children"].values():
        for host in group["hosts"].values():
            assert host["ansible_host"] == host["private_ip"]
