"""The `inventory` stack output and the Ansible inventory derived from it.

The output is a contract read by Ansible, testinfra and operators:
`{"groups": {"sfu": [...], "turn": [...], "db": [...], "redis": [...], "bastion": [...],
"monitoring": [...]},
"connection": {"user", "bastion", "ssh_key_file"}}`, each host `{"name", "private_ip", "public_ip"}`.
`ansible_inventory` is pure so it is tested without Pulumi.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from visio_infra.model.topology import TIER_OF_ROLE, NodeSpec

GROUPS = tuple(TIER_OF_ROLE)


def build_inventory(
    nodes: list[NodeSpec], public_ips: Mapping[str, str | None], connection: Mapping[str, Any]
) -> dict[str, Any]:
    """Plain-data inventory from resolved values."""
    groups: dict[str, list[dict[str, Any]]] = {group: [] for group in GROUPS}
    for node in nodes:
        groups[node.role].append(
            {
                "name": node.name,
                "private_ip": str(node.private_ip),
                "public_ip": public_ips.get(node.name),
            }
        )
    return {"groups": groups, "connection": dict(connection)}


def inventory_output(nodes: list[NodeSpec], public_ips: Mapping[str, Any], connection: Any) -> Any:
    """The same as `build_inventory`, as a Pulumi Output (addresses may be unknown until created)."""
    import pulumi

    names = [node.name for node in nodes]
    return pulumi.Output.all(connection, *[public_ips[name] for name in names]).apply(
        lambda values: build_inventory(nodes, dict(zip(names, values[1:], strict=True)), values[0])
    )


def ansible_inventory(inventory: Mapping[str, Any]) -> dict[str, Any]:
    """Ansible YAML inventory: one group per role, hosts addressed by private IP.

    In production the private addresses are reached through the bastion (ProxyJump); in the lab
    directly. Host variables carry the addresses the roles need (`private_ip`, `public_ip`).
    """
    connection = inventory.get("connection", {})
    common: dict[str, Any] = {
        "ansible_user": connection.get("user", "root"),
        "ansible_python_interpreter": "/usr/bin/python3",
    }
    if connection.get("ssh_key_file"):
        common["ansible_ssh_private_key_file"] = connection["ssh_key_file"]
    ssh_args = ["-o StrictHostKeyChecking=accept-new", "-o UserKnownHostsFile=" + connection.get(
        "known_hosts_file", "~/.ssh/known_hosts"
    )]
    bastion = connection.get("bastion")
    if bastion:
        ssh_args.append(f"-o ProxyJump={bastion.get('user', 'debian')}@{bastion['host']}")
    common["ansible_ssh_common_args"] = " ".join(ssh_args)

    children: dict[str, Any] = {}
    for group, hosts in inventory["groups"].items():
        if not hosts:
            continue
        children[group] = {
            "hosts": {
                host["name"]: {
                    "ansible_host": host["private_ip"] if bastion or not host.get("public_ip")
                    else host["public_ip"],
                    "private_ip": host["private_ip"],
                    "public_ip": host.get("public_ip"),
                }
                for host in hosts
            }
        }
    return {"all": {"vars": common, "children": children}}
