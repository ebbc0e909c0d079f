"""The deployment's security invariants as pure functions over (resource type, properties).

Written once, enforced by the policy pack in `policy/` during `pulumi preview/up --policy-pack
policy`, and tested directly. Properties use Pulumi's engine names (camelCase, as policy packs see
them). Each function returns one readable message per violation (empty list: compliant).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from visio_infra.model import tagging
from visio_infra.model.security_rules import Rule, world_open_sensitive
from visio_infra.model.sovereignty import describe_foreign_endpoints

SEC_GROUP_RULE = "openstack:networking/secGroupRule:SecGroupRule"
FLOATING_IP = "openstack:networking/floatingIp:FloatingIp"
FLOATING_IP_ASSOCIATE = "openstack:networking/floatingIpAssociate:FloatingIpAssociate"
PORT = "openstack:networking/port:Port"
VOLUME = "openstack:blockstorage/volume:Volume"
SERVER_GROUP = "openstack:compute/serverGroup:ServerGroup"
INSTANCE = "openstack:compute/instance:Instance"

TAGGED_TYPES = frozenset({
    "openstack:networking/network:Network",
    "openstack:networking/subnet:Subnet",
    "openstack:networking/router:Router",
    "openstack:networking/secGroup:SecGroup",
    PORT,
    FLOATING_IP,
})
"""Neutron resources: `tags` list of `key=value`."""
METADATA_TYPES = frozenset({INSTANCE, VOLUME})
"""Nova servers and Cinder volumes: `metadata` mapping."""

PRIVATE_ROLES = frozenset({"db", "redis"})
"""Roles that must never get a public address."""

SKIPPED_PROPS = frozenset({"__provider"})
"""Serialized dynamic-provider code, not configuration."""


class Unknown:
    """A value the engine does not know yet (during preview): present, but not checkable."""

    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN = Unknown()


def _role(values: Any) -> str | None:
    if isinstance(values, Unknown):
        return None
    return tagging.parse_tags(values).get("role")


def security_rule_violations(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """No SSH, PostgreSQL, Redis, metrics or LiveKit 7880 reachable from the whole Internet."""
    if resource_type != SEC_GROUP_RULE:
        return []
    remote = props.get("remoteIpPrefix")
    rule = Rule(
        role="?",
        purpose=str(props.get("description") or "rule"),
        direction=props.get("direction", "ingress"),
        protocol=props.get("protocol") or None,
        port_min=props.get("portRangeMin") or None,
        port_max=props.get("portRangeMax") or None,
        ethertype=props.get("ethertype", "IPv4"),
        remote_cidr=remote or None,
        remote_role="group" if props.get("remoteGroupId") or props.get("remoteAddressGroupId") else None,
    )
    problems = [
        f"{name} is open to the whole Internet ({remote or 'any source'}); restrict it to a CIDR or a group"
        for name in world_open_sensitive(rule)
    ]
    if rule.direction == "ingress" and rule.world_open and (rule.protocol is None or rule.port_min is None):
        problems.append(
            f"ingress rule opens every {'protocol' if rule.protocol is None else rule.protocol + ' port'} to "
            f"{remote or 'any source'}; list the ports the role needs"
        )
    return problems


def floating_ip_violations(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """A floating IP tagged for a private role (DB, Redis) is refused."""
    if resource_type != FLOATING_IP:
        return []
    role = _role(props.get("tags"))
    if role in PRIVATE_ROLES:
        return [f"floating IP for a {role} node: database and Redis nodes must stay private"]
    return []


def encrypted_volume_violations(
    resource_type: str, props: Mapping[str, Any], encrypted_types: Collection[str] | None
) -> list[str]:
    """Every volume uses the stack's encrypted volume type: data volumes hold the database, boot
    volumes each node's secrets (configuration files with API and TURN secrets, passwords, TLS keys)."""
    if resource_type != VOLUME:
        return []
    raw = props.get("metadata")
    metadata = {} if isinstance(raw, Unknown) else tagging.parse_tags(raw)
    what = f"{metadata.get('role') or 'unlabelled'} {metadata.get('purpose') or 'unlabelled'} volume"
    volume_type = props.get("volumeType")
    if isinstance(volume_type, Unknown):
        return []
    if not volume_type:
        return [f"{what} without a volume type: use the cloud's encrypted volume type"]
    if encrypted_types is None:
        return [f"{what} type '{volume_type}' cannot be checked: the stack's encrypted_volume_type "
                "is unknown (set the policy config `encrypted_volume_types`)"]
    if volume_type not in encrypted_types:
        allowed = ", ".join(sorted(encrypted_types))
        return [f"{what} type '{volume_type}' is not encrypted at rest; use {allowed}"]
    return []


def local_disk_violations(
    resource_type: str, props: Mapping[str, Any], local_disk_encrypted: bool
) -> list[str]:
    """A server booting from an image keeps its secrets on the hypervisor's local disk, outside
    Cinder's encryption: only on a cloud whose local disks are encrypted (`cloud.local_disk_encrypted`)."""
    if resource_type != INSTANCE or local_disk_encrypted:
        return []
    image = props.get("imageId") or props.get("imageName")
    if not image:
        return []
    raw = props.get("metadata")
    metadata = {} if isinstance(raw, Unknown) else tagging.parse_tags(raw)
    return [f"{metadata.get('node') or 'a server'} boots from the hypervisor's local disk, not known to be "
            "encrypted: boot from an encrypted volume (visio:cloud.boot_from: volume) or set "
            "visio:cloud.local_disk_encrypted: true if the cloud encrypts local disks"]


def anti_affinity_violations(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Server groups are strict anti-affinity; every server is placed in one."""
    if resource_type == SERVER_GROUP:
        policies = props.get("policies")
        if isinstance(policies, Unknown):
            return []
        names = [policies] if isinstance(policies, str) else list(policies or [])
        if names != ["anti-affinity"]:
            return [f"server group policy {names or 'none'}: use 'anti-affinity' so one host failure takes "
                    "at most one node of a role"]
    if resource_type == INSTANCE:
        hints = props.get("schedulerHints") or []
        if isinstance(hints, Unknown):
            return []
        if not any(isinstance(h, Unknown) or (isinstance(h, Mapping) and h.get("group")) for h in hints):
            return ["server outside any server group: add scheduler_hints group=<its role's anti-affinity "
                    "group>"]
    return []


def tag_violations(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """ministry, role and managed-by on everything that can carry them."""
    if resource_type in TAGGED_TYPES:
        values, where = props.get("tags"), "tags"
    elif resource_type in METADATA_TYPES:
        values, where = props.get("metadata"), "metadata"
    else:
        return []
    if isinstance(values, Unknown):
        return []
    missing = tagging.missing_keys(values)
    return [f"{where} missing {', '.join(missing)}"] if missing else []


def _strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if key not in SKIPPED_PROPS:
                yield from _strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")


def foreign_endpoint_violations(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """No non-European endpoint in any rendered config, user data or setting of any resource."""
    problems = []
    for path, text in _strings(props):
        for finding in describe_foreign_endpoints(text):
            problems.append(f"{path} mentions the non-European endpoint {finding}")
    return problems


RESOURCE_CHECKS = {
    "no-world-open-admin-ports": security_rule_violations,
    "no-public-ip-on-private-roles": floating_ip_violations,
    "anti-affinity": anti_affinity_violations,
    "tags-present": tag_violations,
    "sovereign-endpoints": foreign_endpoint_violations,
}
"""Checks that need only one resource's type and properties (policy name -> function)."""


@dataclass(frozen=True)
class ResourceView:
    """What a stack-level check needs of one resource (built from the policy engine's view)."""

    urn: str
    type: str
    props: Mapping[str, Any]
    property_dependencies: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """Property name -> URNs of the resources its value came from."""


def private_node_public_ip_violations(resources: Sequence[ResourceView]) -> list[str]:
    """No floating IP (direct or associated) may point at a DB or Redis node's port."""
    by_urn = {r.urn: r for r in resources}
    problems = []
    for resource in resources:
        if resource.type not in (FLOATING_IP, FLOATING_IP_ASSOCIATE):
            continue
        for urn in resource.property_dependencies.get("portId", ()):
            port = by_urn.get(urn)
            if port is not None and port.type == PORT and _role(port.props.get("tags")) in PRIVATE_ROLES:
                role = _role(port.props.get("tags"))
                problems.append(f"{resource.urn} gives a public address to the {role} port {port.urn}; "
                                "database and Redis nodes must stay private")
    return problems
