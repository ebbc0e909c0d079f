"""Node names and fixed addresses: stable, inside their tier, never shared, never renumbered."""

from __future__ import annotations

import pytest

from visio_infra.model.stack_file import load_stack_file, stack_file
from visio_infra.model.topology import PUBLIC_ROLES, TopologyError, plan_nodes, role_block


@pytest.fixture(scope="module")
def lab():
    return load_stack_file(stack_file("lab"))


def test_lab_topology(lab):
    nodes = plan_nodes(lab, lab.sizing.nodes)
    roles = [n.role for n in nodes]
    assert roles.count("sfu") == 2 and roles.count("turn") == 2
    assert roles.count("db") == 3 and roles.count("redis") == 3 and "bastion" not in roles
    assert [n.name for n in nodes if n.role == "sfu"] == ["lab-sfu-1", "lab-sfu-2"]


def test_addresses_unique_and_inside_tier(lab):
    nodes = plan_nodes(lab, {"sfu": 5, "turn": 3, "db": 2, "redis": 2, "bastion": 1})
    ips = [n.private_ip for n in nodes]
    assert len(set(ips)) == len(ips)
    tier = {"sfu": lab.network.edge_cidr, "turn": lab.network.edge_cidr, "db": lab.network.data_cidr,
            "redis": lab.network.data_cidr, "bastion": lab.network.admin_cidr}
    for node in nodes:
        assert node.private_ip in tier[node.role]
        assert node.public == (node.role in PUBLIC_ROLES)


def test_adding_sfu_nodes_never_renumbers_turn(lab):
    small = {n.name: n.private_ip for n in plan_nodes(lab, {"sfu": 2, "turn": 2})}
    big = {n.name: n.private_ip for n in plan_nodes(lab, {"sfu": 7, "turn": 2})}
    assert all(big[name] == ip for name, ip in small.items())


def test_too_many_nodes_for_the_tier_is_a_clear_error(lab):
    too_many = len(role_block(lab, "sfu")) + 1
    with pytest.raises(TopologyError, match=r"widen network\.edge_cidr"):
        plan_nodes(lab, {"sfu": too_many})
