"""Lab lifecycle tests: they create real systemd-nspawn machines on the lab bridge (root needed).

`host_leftovers(stack)` lists whatever a lab stack left on the host (processes, interfaces, nft
tables, mounts, directories); teardown tests assert it is empty.

`pytest tests/lab --after-destroy` runs only the checks meant for after `pulumi destroy --stack lab`
(nothing of the lab is left); without it those are deselected (the lab is expected to be up).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from visio_infra.cloud.lab.plan import BRIDGE_ALIAS_PREFIX, LAB_ROOT, LabPaths, nft_table


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--after-destroy",
        action="store_true",
        help="check that `pulumi destroy --stack lab` left nothing on the host",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "after_destroy: checks run after `pulumi destroy --stack lab`")
    config.addinivalue_line("markers", "labhost: creates real nspawn machines on the lab bridge (root)")
    config.addinivalue_line(
        "markers", "drill: a fault drill that measures recovery times (run on an otherwise quiet machine)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    after = config.getoption("--after-destroy")
    keep, drop = [], []
    for item in items:
        is_after = item.get_closest_marker("after_destroy") is not None
        (keep if is_after == after else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session", autouse=True)
def _root() -> None:
    if os.geteuid() != 0:
        pytest.fail("lab tests create bridges and containers: run them as root")


def _ip_json(*args: str) -> list[dict]:
    return json.loads(subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True).stdout)


def _configured_bridge(stack: str) -> str | None:
    """The bridge name the stack file gives (found even if its alias was lost)."""
    from visio_infra.model.config.cloud import LabCloud
    from visio_infra.model.stack_file import load_stack_file

    path = Path(__file__).resolve().parents[2] / "stacks" / f"Pulumi.{stack}.yaml"
    if not path.exists():
        return None
    cloud = load_stack_file(path).cloud
    return cloud.bridge if isinstance(cloud, LabCloud) else None


def host_leftovers(stack: str, root: Path = LAB_ROOT) -> list[str]:
    """Everything of lab stack `stack` still on the host, as readable lines (empty when clean)."""
    from visio_infra.cloud.lab.bridge import running_machines
    from visio_infra.cloud.lab.host import processes_rooted_in

    paths = LabPaths(stack, root)
    found = [f"process {pid} (machine {name})" for name, pid in running_machines(paths).items()]
    found += [f"process {pid} on {paths.machines}" for pid in processes_rooted_in(paths.machines)]
    bridge = _configured_bridge(stack)
    for link in _ip_json("-d", "link"):
        if link.get("ifalias") == f"{BRIDGE_ALIAS_PREFIX}{stack}" or link.get("ifname") == bridge:
            found.append(f"interface {link['ifname']}")
        elif bridge and link.get("master") == bridge:
            found.append(f"interface {link['ifname']} (on bridge {bridge})")
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout
    if f"table inet {nft_table(stack)}" in tables.splitlines():
        found.append(f"nftables table inet {nft_table(stack)}")
    with open("/proc/mounts", encoding="utf-8") as mounts:
        found += [f"mount {line.split()[1]}" for line in mounts if str(paths.stack_dir) in line.split()[1]]
    if paths.stack_dir.exists():
        found.append(
            f"directory {paths.stack_dir} ({', '.join(sorted(p.name for p in paths.stack_dir.iterdir()))})"
        )
    return found
