"""`visio plan <stack> --check-cloud`: read the OpenStack cloud (the only I/O, a dozen
read-only API calls through openstacksdk, timed), judge the stack against it
(`visio_infra.model.cloud_fit`) and report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from visio_infra.model.cloud_fit import (
    _QUOTAS,
    CloudFacts,
    FlavorFacts,
    ImageFacts,
    Quota,
    QuotaRow,
    _where,
    not_judged,
    problems,
    quota_rows,
    summary,
)
from visio_infra.model.cloud_needs import CloudNeeds, needs
from visio_infra.model.config.cloud import OpenStackCloud
from visio_infra.model.config.stack import StackConfig
from visio_infra.model.sizing.results import SizingPlan

# --- Reading the cloud (the only I/O) ------------------------------------------------------------


class CloudReadError(RuntimeError):
    """The cloud could not be reached or refused the credentials (the message carries no secret)."""


@dataclass
class CheckResult:
    needs: CloudNeeds
    facts: CloudFacts
    problems: list[str]
    seconds: float
    rows: list[QuotaRow] = field(default_factory=list)


def connect(cloud: OpenStackCloud) -> Any:
    """An openstacksdk connection from the operator's clouds.yaml entry (the stack's `cloud`) or, with
    `auth_url`, the OS_* environment. Nothing of the credentials is printed."""
    import openstack

    if cloud.cloud:
        return openstack.connect(cloud=cloud.cloud, region_name=cloud.region, api_timeout=60)
    return openstack.connect(auth_url=cloud.auth_url, region_name=cloud.region, api_timeout=60)


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _nova_quotas(conn: Any) -> dict[str, Quota]:
    absolute = conn.compute.get("/limits").json()["limits"]["absolute"]
    pairs = {
        "instances": ("maxTotalInstances", "totalInstancesUsed"),
        "cores": ("maxTotalCores", "totalCoresUsed"),
        "ram": ("maxTotalRAMSize", "totalRAMUsed"),
        "server_groups": ("maxServerGroups", "totalServerGroupsUsed"),
        "server_group_members": ("maxServerGroupMembers", None),
    }
    return {
        name: Quota(_int(absolute.get(limit), -1), _int(absolute.get(used)) if used else 0)
        for name, (limit, used) in pairs.items()
        if limit in absolute
    }


def _cinder_quotas(conn: Any) -> dict[str, Quota]:
    body = conn.block_storage.get(
        f"/os-quota-sets/{conn.current_project_id}", params={"usage": "True"}
    ).json()["quota_set"]
    return {
        name: Quota(_int(v.get("limit"), -1), _int(v.get("in_use")) + _int(v.get("reserved")))
        for name, v in body.items()
        if isinstance(v, dict) and name.startswith(("volumes", "gigabytes"))
    }


def _neutron_quotas(conn: Any) -> dict[str, Quota]:
    # Listing the project's security groups first makes Neutron create its `default` group if it
    # never did (it would on the first port anyway), so the usage read next counts it.
    list(conn.network.security_groups(project_id=conn.current_project_id))
    body = conn.network.get(f"/quotas/{conn.current_project_id}/details").json()["quota"]
    return {
        name: Quota(_int(v.get("limit"), -1), _int(v.get("used")) + _int(v.get("reserved")))
        for name, v in body.items()
        if isinstance(v, dict) and name in _QUOTAS
    }


def _flavors(conn: Any) -> dict[str, FlavorFacts]:
    return {
        f.name: FlavorFacts(vcpus=_int(f.vcpus), ram_mib=_int(f.ram), disk_gib=_int(f.disk))
        for f in conn.compute.flavors(details=True, is_public=None)
    }


def _images(conn: Any) -> dict[str, ImageFacts]:
    return {
        i.name: ImageFacts(_int(i.min_disk), _int(i.min_ram), i.virtual_size)
        for i in conn.image.images(status="active")
        if i.name
    }


def _volume_types(conn: Any) -> dict[str, bool | None]:
    import openstack

    types: dict[str, bool | None] = {}
    readable = True
    for t in conn.block_storage.types():
        if not readable:  # Cinder's policy refused the first one: it refuses them all
            types[t.name] = None
            continue
        try:
            encryption = conn.block_storage.get_type_encryption(t.id)
            types[t.name] = bool(encryption.encryption_id or encryption.provider)
        except openstack.exceptions.ForbiddenException:
            types[t.name], readable = None, False
        except openstack.exceptions.NotFoundException:
            types[t.name] = False
    return types


def read_cloud(cloud: OpenStackCloud) -> CloudFacts:
    """Read what `problems` judges, in parallel read-only calls. Raises CloudReadError when the cloud
    cannot be reached or the credentials are refused; a part these credentials may not read is
    listed in `unread` instead."""
    import keystoneauth1.exceptions as ks
    import openstack

    try:
        conn = connect(cloud)
        conn.authorize()
    except (openstack.exceptions.SDKException, ks.ClientException) as exc:
        raise CloudReadError(_safe(exc)) from None
    reads: dict[str, Callable[[], Any]] = {
        "flavors": lambda: _flavors(conn),
        "images": lambda: _images(conn),
        "external_networks": lambda: tuple(
            n.name for n in conn.network.networks(is_router_external=True) if n.name
        ),
        "volume_types": lambda: _volume_types(conn),
        "compute_zones": lambda: tuple(
            z.name for z in conn.compute.availability_zones() if (z.state or {}).get("available", True)
        ),
        "volume_zones": lambda: tuple(
            z.name for z in conn.block_storage.availability_zones() if (z.state or {}).get("available", True)
        ),
        "nova_quotas": lambda: _nova_quotas(conn),
        "cinder_quotas": lambda: _cinder_quotas(conn),
        "neutron_quotas": lambda: _neutron_quotas(conn),
        "existing_servers": lambda: frozenset(s.name for s in conn.compute.servers()),
    }
    got: dict[str, Any] = {}
    unread: list[str] = []
    with ThreadPoolExecutor(max_workers=len(reads)) as pool:
        futures = {name: pool.submit(read) for name, read in reads.items()}
        for name, future in futures.items():
            try:
                got[name] = future.result()
            except openstack.exceptions.ForbiddenException as exc:
                unread.append(f"{name}: {_safe(exc)}")
            except (openstack.exceptions.SDKException, ks.ClientException) as exc:
                raise CloudReadError(f"reading {name}: {_safe(exc)}") from None
    return CloudFacts(
        flavors=got.get("flavors"),
        images=got.get("images"),
        external_networks=got.get("external_networks"),
        volume_types=got.get("volume_types"),
        compute_zones=got.get("compute_zones"),
        volume_zones=got.get("volume_zones"),
        quotas={
            **got.get("nova_quotas", {}),
            **got.get("cinder_quotas", {}),
            **got.get("neutron_quotas", {}),
        },
        existing_servers=got.get("existing_servers", frozenset()),
        unread=tuple(unread),
    )


def _safe(exc: BaseException) -> str:
    """The exception's own words, one line (keystoneauth and openstacksdk never put secrets there)."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def check(config: StackConfig, sizing: SizingPlan, *, source: str) -> CheckResult:
    """Read the cloud and judge the stack against it, timed."""
    if not isinstance(config.cloud, OpenStackCloud):
        raise TypeError("the cloud preflight is for `kind: openstack` stacks")
    started = time.perf_counter()
    needs_ = needs(config, sizing, source=source)
    facts = read_cloud(config.cloud)
    found = problems(needs_, facts)
    return CheckResult(needs_, facts, found, time.perf_counter() - started, quota_rows(needs_, facts))


# --- Reporting -----------------------------------------------------------------------------------


def report(result: CheckResult) -> dict[str, Any]:
    """Plain data of a check (the JSON of `visio plan --check-cloud --format json`)."""
    return {
        "cloud": result.needs.cloud,
        "region": result.needs.region,
        "seconds": round(result.seconds, 3),
        "fits": not result.problems,
        "problems": result.problems,
        "not_checked": not_judged(result.needs, result.facts),
        "summary": summary(result.needs, result.facts),
        "quotas": [
            {
                "name": row.name,
                "service": row.service,
                "need": row.need,
                "used": row.quota.used if row.quota else None,
                "limit": row.quota.limit if row.quota else None,
                "free": row.quota.free if row.quota else None,
            }
            for row in result.rows
        ],
    }


def render_text(result: CheckResult) -> str:
    """The check as `visio plan --check-cloud` prints it (problem lines go to stderr separately)."""
    needs_ = result.needs
    lines = [
        f"Cloud check against {_where(needs_)}: {result.seconds:.2f} s, read-only (nothing was created)",
        f"  {'quota':<28} {'service':<8} {'needs':>6} {'used':>6} {'limit':>7} {'free':>7}",
    ]
    for row in result.rows:
        q = row.quota
        if q is None:
            used, limit, free = "-", "-", "-"
        elif q.free is None:
            used, limit, free = str(q.used), "none", "any"
        else:
            used, limit, free = str(q.used), str(q.limit), str(q.free)
        mark = "  <- exceeded" if row.exceeded else ""
        lines.append(f"  {row.name:<28} {row.service:<8} {row.need:>6} {used:>6} {limit:>7} {free:>7}{mark}")
    for note in not_judged(needs_, result.facts):
        lines.append(f"  not checked: {note}")
    if result.problems:
        lines.append(f"{len(result.problems)} problem(s), one line each on stderr; fix them before pulumi up")
    else:
        lines.append(f"The cloud can hold the stack: {summary(needs_, result.facts)}.")
    return "\n".join(lines) + "\n"
