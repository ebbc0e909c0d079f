"""Policies of the Visio pack, built from the pure checks in `visio_infra.model.policy_rules`.

Kept apart from `__main__.py` (which starts the analyzer) so the wiring can be tested.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from visio_infra.model import policy_rules  # noqa: E402
from visio_infra.model.config.base import StackConfigError  # noqa: E402
from visio_infra.model.stack_file import load_stack_file, stack_file  # noqa: E402

MANDATORY = EnforcementLevel.MANDATORY


def plain(value: Any) -> Any:
    """The engine's property proxy as plain data; values unknown during preview become UNKNOWN."""
    try:
        if isinstance(value, Mapping):
            return {str(k): plain(_get(value, k)) for k in list(value.keys())}
        if isinstance(value, Sequence) and not isinstance(value, str | bytes):
            return [plain(_item(value, i)) for i in range(len(value))]
    except UnknownValueError:
        return policy_rules.UNKNOWN
    return value


def _get(mapping: Mapping[str, Any], key: Any) -> Any:
    try:
        return mapping[key]
    except UnknownValueError:
        return policy_rules.UNKNOWN


def _item(seq: Any, index: int) -> Any:
    try:
        return seq[index]
    except UnknownValueError:
        return policy_rules.UNKNOWN


def stack_of(urn: str) -> str:
    """`urn:pulumi:<stack>::<project>::...` -> stack name."""
    return urn.split("::", 1)[0].removeprefix("urn:pulumi:")


@cache
def stack_cloud_setting(stack: str, name: str) -> Any:
    """A `visio:cloud` setting of the stack file, when the file is readable and valid (else None)."""
    try:
        config = load_stack_file(stack_file(stack, PROJECT_ROOT))
    except (StackConfigError, OSError):
        return None
    return getattr(config.cloud, name, None)


def stack_encrypted_volume_type(stack: str) -> str | None:
    """The stack file's `visio:cloud.encrypted_volume_type`."""
    found = stack_cloud_setting(stack, "encrypted_volume_type")
    return str(found) if found else None


def local_disk_encrypted(args: ResourceValidationArgs) -> bool:
    """The policy config `local_disk_encrypted`, else the stack file's `visio:cloud.local_disk_encrypted`."""
    configured = args.get_config().get("local_disk_encrypted")
    if configured is not None:
        return bool(configured)
    return bool(stack_cloud_setting(stack_of(args.urn), "local_disk_encrypted"))


def encrypted_types(args: ResourceValidationArgs) -> set[str] | None:
    configured = args.get_config().get("encrypted_volume_types")
    if configured:
        return set(configured)
    found = stack_encrypted_volume_type(stack_of(args.urn))
    return {found} if found else None


def _resource_policy(name: str, description: str, check: Callable[[ResourceValidationArgs], list[str]],
                     schema: PolicyConfigSchema | None = None) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for message in check(args):
            report_violation(message, args.urn)

    return ResourceValidationPolicy(
        name, description, validate, enforcement_level=MANDATORY, config_schema=schema
    )


def _private_public_ip(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    views = [
        policy_rules.ResourceView(
            urn=r.urn,
            type=r.resource_type,
            props=plain(r.props),
            property_dependencies={k: [d.urn for d in deps] for k, deps in r.property_dependencies.items()},
        )
        for r in args.resources
    ]
    for message in policy_rules.private_node_public_ip_violations(views):
        report_violation(message, None)


DESCRIPTIONS = {
    "no-world-open-admin-ports": "No SSH, PostgreSQL, Redis, metrics or LiveKit 7880 open to the Internet.",
    "no-public-ip-on-private-roles": "Database and Redis nodes never get a floating IP.",
    "anti-affinity": "Server groups are strict anti-affinity and every server is in one.",
    "tags-present": "ministry, role and managed-by=visio-infra on every taggable resource.",
    "sovereign-endpoints": "No non-European endpoint (Google/Twilio STUN, Pulumi Cloud, US SaaS) in any "
                           "rendered config or user data.",
}


def policies() -> list[Any]:
    result: list[Any] = [
        _resource_policy(
            name,
            DESCRIPTIONS[name],
            lambda args, fn=fn: fn(args.resource_type, plain(args.props)),
        )
        for name, fn in policy_rules.RESOURCE_CHECKS.items()
    ]
    result.append(
        _resource_policy(
            "encrypted-volumes",
            "Every volume (boot and data) uses the stack's encrypted volume type (from "
            "stacks/Pulumi.<stack>.yaml, or the policy config `encrypted_volume_types`).",
            lambda args: policy_rules.encrypted_volume_violations(
                args.resource_type, plain(args.props), encrypted_types(args)
            ),
            schema=PolicyConfigSchema(
                properties={"encrypted_volume_types": {"type": "array", "items": {"type": "string"}}}
            ),
        )
    )
    result.append(
        _resource_policy(
            "encrypted-local-disks",
            "A server booting from an image (the hypervisor's local disk) only on a cloud that encrypts "
            "local disks: stacks/Pulumi.<stack>.yaml `visio:cloud.local_disk_encrypted`, or the policy "
            "config `local_disk_encrypted`.",
            lambda args: policy_rules.local_disk_violations(
                args.resource_type, plain(args.props), local_disk_encrypted(args)
            ),
            schema=PolicyConfigSchema(properties={"local_disk_encrypted": {"type": "boolean"}}),
        )
    )
    result.append(
        StackValidationPolicy(
            "no-public-ip-on-private-ports",
            "No floating IP points at a database or Redis node's port.",
            _private_public_ip,
            enforcement_level=MANDATORY,
        )
    )
    return result
