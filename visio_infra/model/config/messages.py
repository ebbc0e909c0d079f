"""pydantic's validation errors as one readable line each: `visio:<section>.<field>: what is
wrong; what would be valid`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from visio_infra.model.config.base import PROJECT
from visio_infra.model.config.cloud import LabCloud, OpenStackCloud
from visio_infra.model.config.stack import StackConfig

_TYPE_HINTS = {
    "ip_v4_network": "give an IPv4 network in CIDR form, e.g. 10.20.0.0/24",
    "ip_v6_network": "give an IPv6 network in CIDR form, e.g. 2001:db8::/48",
    "ip_any_network": "give a network in CIDR form, e.g. 10.20.0.0/24 or 2001:db8::/48",
    "ip_v4_address": "give an IPv4 address, e.g. 10.0.0.53",
    "int_parsing": "give a whole number",
    "int_from_float": "give a whole number",
    "float_parsing": "give a number",
    "bool_parsing": "give true or false",
    "list_type": "give a list",
    "model_type": "give a mapping of fields",
    "dict_type": "give a mapping",
    "string_type": "give a text value",
}
"""What would be valid, for pydantic's type errors whose own message does not say it."""


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if not (isinstance(p, str) and p in ("openstack", "lab"))]
    # pydantic adds the constraint/type name for unions of constrained types (e.g. "function-after[...]")
    parts = [p for p in parts if not re.match(r"^[a-z-]+\[", p)]
    if not parts:
        return f"{PROJECT}:*"
    head, *rest = parts
    path = f"{PROJECT}:{head}"
    for part in rest:
        path += f"[{part}]" if part.isdigit() else f".{part}"
    return path


def _model_at(loc: tuple[Any, ...]) -> Any:
    """The pydantic model the location points into (None when it is not a model)."""
    model: Any = StackConfig
    for part in loc:
        if isinstance(part, int) or part in ("openstack", "lab"):
            model = {"openstack": OpenStackCloud, "lab": LabCloud}.get(str(part), model)
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return None
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return None
    return model


def _field_doc(loc: tuple[Any, ...]) -> str | None:
    parent = _model_at(loc[:-1])
    field = getattr(parent, "model_fields", {}).get(loc[-1]) if parent is not None and loc else None
    if field is None or not field.description:
        return None
    return " ".join(field.description.split())


def _describe(error: Mapping[str, Any]) -> list[str]:
    """Readable lines for one pydantic error: `visio:<section>.<field>: what is wrong; what is valid`."""
    loc = tuple(error["loc"])
    kind = error["type"]
    field = _field_path(loc)
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        allowed = sorted(getattr(parent, "model_fields", {}))
        hint = f"; valid fields here: {', '.join(allowed)}" if allowed else ""
        return [f"{field}: unknown field; remove it or check the spelling{hint}"]
    if kind == "missing":
        doc = _field_doc(loc)
        return [f"{field}: required field is missing" + (f" ({doc})" if doc else "")]
    message = str(error["msg"]).removeprefix("Value error, ")
    got = error.get("input")
    already_shown = kind == "value_error" and str(got) in message
    shown = "" if isinstance(got, dict | list) or got is None or already_shown else f" (got {got!r})"
    if kind == "union_tag_invalid":
        return [f"{field}.{error.get('ctx', {}).get('discriminator', 'kind').strip(chr(39))}: {message}"]
    if kind in _TYPE_HINTS:
        return [f"{field}: {message}{shown}; {_TYPE_HINTS[kind]}"]
    if kind == "value_error" and isinstance(_model_at(loc), type):
        # Model-level checks write "subfield: message" lines; attach each to its own field.
        lines = []
        for line in message.splitlines():
            sub, sep, text = line.partition(": ")
            if sep and re.fullmatch(r"[a-z_]+(\.[a-z_]+)*", sub):
                lines.append(f"{field}.{sub}: {text}" if loc else f"{PROJECT}:{sub}: {text}")
            else:
                lines.append(f"{field}: {line}")
        return lines
    return [f"{field}: {message}{shown}"]
