"""One security group per role, holding exactly the rules of `visio_infra.model.security_rules`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_openstack as openstack

from visio_infra.model import tagging
from visio_infra.model.config.base import ROLES
from visio_infra.model.config.stack import StackConfig
from visio_infra.model.security_rules import Rule, security_rules


@dataclass
class SecurityGroupsArgs:
    config: StackConfig
    counts: Mapping[str, int] = field(default_factory=dict)
    """Nodes per role (adds peer rules only to roles that have peers)."""


class SecurityGroups(pulumi.ComponentResource):
    """Groups are created without OpenStack's default rules, so nothing is open but what is listed."""

    group_ids: dict[str, pulumi.Output[str]]

    def __init__(
        self, name: str, args: SecurityGroupsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("visio:openstack:SecurityGroups", name, None, opts)
        slug = args.config.ministry.slug
        child = pulumi.ResourceOptions(parent=self)
        groups = {
            role: openstack.networking.SecGroup(
                f"{name}-{role}",
                name=f"visio-{slug}-{role}",
                description=f"Visio {role} nodes: only the flows listed in visio_infra.model.security_rules",
                delete_default_rules=True,
                tags=tagging.tags(slug, role),
                opts=child,
            )
            for role in ROLES
        }
        self.group_ids = {role: group.id for role, group in groups.items()}
        self.rules: list[openstack.networking.SecGroupRule] = []
        for role, rules in security_rules(args.config, args.counts).items():
            for rule in rules:
                self.rules.append(self._rule(f"{name}-{role}-{rule.key}", rule, groups, child))
        self.register_outputs({"group_ids": self.group_ids})

    @staticmethod
    def _rule(
        resource_name: str,
        rule: Rule,
        groups: Mapping[str, openstack.networking.SecGroup],
        opts: pulumi.ResourceOptions,
    ) -> openstack.networking.SecGroupRule:
        return openstack.networking.SecGroupRule(
            resource_name,
            security_group_id=groups[rule.role].id,
            direction=rule.direction,
            ethertype=rule.ethertype,
            protocol=rule.protocol,
            port_range_min=rule.port_min,
            port_range_max=rule.port_max,
            remote_ip_prefix=rule.remote_cidr,
            remote_group_id=groups[rule.remote_role].id if rule.remote_role else None,
            description=rule.description,
            opts=opts,
        )
