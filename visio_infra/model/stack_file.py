"""A stack file, read and judged whole: every field, the cross-section rules, then whether
sizing and the address plan can serve the audience, one line per problem naming the file,
the field and the fix; nothing is touched before it passes.

Above `config`, `sizing` and `topology` (it needs all three), so none of them imports it
back. The only I/O of the model besides the templates and this host's apt sources: reading
the YAML file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from visio_infra.model.config.base import PROJECT, StackConfigError
from visio_infra.model.config.messages import _describe
from visio_infra.model.config.stack import SECTIONS, StackConfig, cross_problems
from visio_infra.model.sizing.plan import plan
from visio_infra.model.sizing.results import SizingError
from visio_infra.model.topology import TopologyError, plan_nodes


def parse_stack_config(raw: Mapping[str, Any], source: str) -> StackConfig:
    """Validate the `visio:*` keys of one stack (values as YAML/JSON data or JSON strings).

    Checks fields, then cross-section rules, then that sizing and the address plan can serve the
    audience. `source` names the stack file in every message. Raises StackConfigError listing every
    problem, one line each.
    """
    problems: list[str] = []
    data: dict[str, Any] = {}
    for key, value in raw.items():
        project, _, section = key.partition(":")
        if project != PROJECT:
            continue  # other namespaces (openstack:*, pulumi:*) are not ours to judge
        if section not in SECTIONS:
            problems.append(
                f"{key}: unknown section; valid sections: {', '.join(PROJECT + ':' + s for s in SECTIONS)}"
            )
            continue
        if isinstance(value, str) and value[:1] in "{[":
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                problems.append(f"{key}: not valid structured data ({exc.msg})")
                continue
        data[section] = value
    config: StackConfig | None = None
    try:
        config = StackConfig.model_validate(data, context={"deferred_cross_checks": True})
    except ValidationError as exc:
        for error in exc.errors():
            problems.extend(_describe(error))
    if config is not None:
        problems.extend(f"{PROJECT}:{field}: {message}" for field, message in cross_problems(config))
        if not problems:
            problems.extend(_capacity_problems(config))
    if problems or config is None:
        raise StackConfigError(source, problems)
    return config


def _capacity_problems(config: StackConfig) -> list[str]:
    """Whether sizing can serve the audience and the nodes fit their tiers (both pure)."""
    try:
        counts = plan(config).counts
    except SizingError as exc:
        return [str(exc)]
    try:
        plan_nodes(config, counts)
    except TopologyError as exc:
        tier = re.search(r"network\.(\w+_cidr)", str(exc))
        return [f"{PROJECT}:network.{tier.group(1) if tier else '*'}: {exc}"]
    return []


def stack_file(stack: str, root: Path | None = None) -> Path:
    """Path of a stack's config file."""
    base = root or Path(__file__).resolve().parent.parent.parent
    return base / "stacks" / f"Pulumi.{stack}.yaml"


def load_stack_file(path: Path) -> StackConfig:
    """Read and validate a stack file without Pulumi (used by `visio plan` and tests)."""
    import yaml

    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        known = sorted(
            p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in path.parent.glob("Pulumi.*.yaml")
        )
        hint = f"; stacks in {path.parent}: {', '.join(known)}" if known else ""
        raise StackConfigError(
            str(path), [f"file not found; stacks live in stacks/Pulumi.<stack>.yaml{hint}"]
        ) from None
    except yaml.YAMLError as exc:
        raise StackConfigError(str(path), [f"not valid YAML: {exc}"]) from None
    raw = document.get("config") if isinstance(document, dict) else None
    if not isinstance(raw, dict):
        raise StackConfigError(str(path), ["no `config:` mapping with visio:* keys"])
    return parse_stack_config(raw, source=_display(path))


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
