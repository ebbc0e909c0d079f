"""Tags and metadata every cloud resource carries (pure).

`ministry`, `role` and `managed-by` let an operator (or the policy pack) tell at a glance whose
resource it is, what it does and that only this tool may change it. Neutron resources take a list
of strings (`key=value`); Nova servers and Cinder volumes take a metadata mapping.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

MANAGED_BY = "visio-infra"
REQUIRED_KEYS = ("ministry", "role", "managed-by")


def metadata(ministry: str, role: str, **extra: str) -> dict[str, str]:
    """Metadata mapping for servers and volumes."""
    return {"ministry": ministry, "role": role, "managed-by": MANAGED_BY, **extra}


def tags(ministry: str, role: str, **extra: str) -> list[str]:
    """Neutron tag list (`key=value` strings, sorted for stable diffs)."""
    return sorted(f"{key}={value}" for key, value in metadata(ministry, role, **extra).items())


def parse_tags(values: Iterable[str] | Mapping[str, str] | None) -> dict[str, str]:
    """Tags back to a mapping, whether given as Neutron strings or as a metadata mapping."""
    if values is None:
        return {}
    if isinstance(values, Mapping):
        return {str(k): str(v) for k, v in values.items()}
    parsed: dict[str, str] = {}
    for item in values:
        key, sep, value = str(item).partition("=")
        if sep:
            parsed[key] = value
    return parsed


def missing_keys(values: Iterable[str] | Mapping[str, str] | None) -> list[str]:
    """Required keys absent (or empty) in the given tags, plus `managed-by` when it is not ours."""
    parsed = parse_tags(values)
    missing = [key for key in REQUIRED_KEYS if not parsed.get(key)]
    if "managed-by" not in missing and parsed["managed-by"] != MANAGED_BY:
        missing.append(f"managed-by={MANAGED_BY}")
    return missing
