"""`visio plan <stack>`: what a ministry's deployment will be made of, why, and what it costs.

Reads `stacks/Pulumi.<stack>.yaml` directly (no Pulumi, no cloud access), runs the same validation
and sizing as `pulumi up`, and prints per role the node count, flavor, vCPU and monthly cost with the
reasoning behind each number, then the yearly infrastructure cost next to the commercial licences it
replaces. With `--check-cloud` it then reads the stack's OpenStack cloud (read-only, nothing created)
and names each flavor, image, network, volume type, zone or quota the stack would fail on
(`visio_infra.model.cloud_fit`). Exit status: 0 plan printed (and the cloud can hold it), 1 the stack
file is wrong or the cloud cannot hold the stack (one line per problem), 2 bad usage, 3 the cloud could
not be read (unreachable, credentials refused).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from visio_infra.model.config.base import ROLES, StackConfigError
from visio_infra.model.config.cloud import OpenStackCloud
from visio_infra.model.config.stack import StackConfig
from visio_infra.model.rendering import render
from visio_infra.model.sizing.plan import plan
from visio_infra.model.sizing.results import SizingError, SizingPlan
from visio_infra.model.stack_file import _display, load_stack_file, stack_file
from visio_infra.model.topology import TopologyError, server_group_count

LICENCE_EUR_PER_USER_YEAR = 10.0
"""Commercial videoconferencing licence cost Visio replaces (the seed's figure: about EUR 1M per year
per 100,000 users, i.e. EUR 10 per user per year)."""

TEMPLATE = "plan.txt.j2"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="visio plan",
        description="Node counts, flavors, reasoning and monthly cost for one stack (no cloud access).",
    )
    parser.add_argument("stack", help="stack name (stacks/Pulumi.<stack>.yaml) or a path to a stack file")
    parser.add_argument("--stacks-dir", type=Path, default=None, help="folder holding Pulumi.<stack>.yaml")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument(
        "--check-cloud",
        action="store_true",
        help="also read the stack's OpenStack cloud (clouds.yaml entry `cloud`, or OS_* with `auth_url`) "
        "and name every missing flavor, image, network, volume type, zone or exceeded quota; creates nothing",
    )
    return parser


def _stack_path(stack: str, stacks_dir: Path | None) -> Path:
    if stacks_dir is not None:
        return stacks_dir / f"Pulumi.{stack}.yaml"
    candidate = Path(stack)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return candidate
    return stack_file(stack)


def report_data(stack: str, config: StackConfig, sizing: SizingPlan) -> dict[str, Any]:
    """Plain data behind both formats (pure)."""
    users = config.audience.users
    licences = round(users * LICENCE_EUR_PER_USER_YEAR, 2)
    roles = []
    for role in ROLES:
        rp = sizing.roles[role]
        roles.append(
            {
                "role": role,
                "count": rp.count,
                "serving": rp.serving,
                "flavor": rp.flavor.name,
                "vcpu_per_node": rp.flavor.vcpu,
                "vcpu": rp.count * rp.flavor.vcpu,
                "ram_gib": rp.count * rp.flavor.ram_gib,
                "monthly_eur": rp.monthly_eur,
                "count_pinned": rp.count_pinned,
                "flavor_pinned": rp.flavor_pinned,
                "reasoning": [{"what": r.what, "formula": r.formula, "value": r.value} for r in rp.reasoning],
            }
        )
    return {
        "stack": stack,
        "ministry": config.ministry.name,
        "offer": sizing.offer.name,
        "offer_description": sizing.offer.description,
        "price_source": sizing.offer.source,
        "audience": config.audience.model_dump(),
        "roles": roles,
        "nodes": sum(r["count"] for r in roles),
        "vcpu": sum(r["vcpu"] for r in roles),
        "db_volume_gib": sizing.db_volume_gib,
        "server_groups": _server_groups(config, roles),
        "monthly_eur": sizing.monthly_eur,
        "yearly_eur": sizing.yearly_eur,
        "licence_eur_per_user_year": LICENCE_EUR_PER_USER_YEAR,
        "licences_yearly_eur": licences,
        "savings_yearly_eur": round(licences - sizing.yearly_eur, 2),
        "infra_eur_per_user_year": round(sizing.yearly_eur / users, 2),
    }


def _server_groups(config: StackConfig, roles: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Anti-affinity groups per role (OpenStack only): Nova caps a group's size by quota."""
    limit = getattr(config.cloud, "server_group_max_members", None)
    if limit is None:
        return None
    return {
        "max_members": limit,
        "per_role": {r["role"]: server_group_count(r["count"], limit) for r in roles if r["count"]},
    }


def _eur(value: float) -> str:
    return f"{value:,.0f}".replace(",", " ")


def render_text(data: dict[str, Any]) -> str:
    return render(TEMPLATE, {**data, "eur": _eur})


def main(argv: list[str]) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage and the error
        return int(exc.code or 0)
    path = _stack_path(args.stack, args.stacks_dir)
    try:
        config = load_stack_file(path)
        sizing = plan(config)
    except StackConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except (SizingError, TopologyError) as exc:  # normally caught by load_stack_file already
        print(f"{path}: {exc}", file=sys.stderr)
        return 1
    data = report_data(path.name.removeprefix("Pulumi.").removesuffix(".yaml"), config, sizing)
    if not args.check_cloud:
        if args.format == "json":
            print(json.dumps(data, indent=2, ensure_ascii=False))
        else:
            print(render_text(data), end="")
        return 0
    return _with_cloud_check(args.format, path, config, sizing, data)


def _with_cloud_check(
    fmt: str, path: Path, config: StackConfig, sizing: SizingPlan, data: dict[str, Any]
) -> int:
    """The plan, then what the cloud says of it (`--check-cloud`)."""
    from visio_infra.commands import cloud_check

    if not isinstance(config.cloud, OpenStackCloud):
        print(f"{_display(path)}: --check-cloud reads an OpenStack cloud; the lab has none", file=sys.stderr)
        return 2
    if fmt == "text":
        print(render_text(data), end="", flush=True)
    try:
        result = cloud_check.check(config, sizing, source=_display(path))
    except cloud_check.CloudReadError as exc:
        where = f"cloud '{config.cloud.cloud or config.cloud.auth_url}' (region {config.cloud.region})"
        print(f"{_display(path)}: could not read {where}: {exc}; nothing was created", file=sys.stderr)
        return 3
    check = cloud_check.report(result)
    if fmt == "json":
        print(json.dumps({**data, "cloud_check": check}, indent=2, ensure_ascii=False))
    else:
        print()
        print(cloud_check.render_text(result), end="")
    for line in result.problems:
        print(line, file=sys.stderr)
    return 1 if result.problems else 0
