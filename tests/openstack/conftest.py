"""Acceptance tests against the project's own OpenStack (scripts/openstack-cloud.sh up), run by CI:

    bash scripts/openstack-cloud.sh up
    .venv/bin/python -m pytest tests/openstack -p no:cacheprovider --junitxml=reports/openstack.xml

Everything is read back through openstacksdk with the cloud's clouds.yaml
(`$VISIO_OPENSTACK_DIR/clouds.yaml`, entries `visio-acceptance` and `visio-acceptance-admin`), and
Pulumi is the real pinned CLI on the local file state. Without a running cloud the tests fail (they
never skip): a missing cloud is a broken CI, not a passing one.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from acceptance_ops import (
    ADMIN_CLOUD,
    CLOUD,
    ROOT,
    clouds_file,
    nova_quotas,
    reset_neutron_quotas,
    set_neutron_quotas,
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.openstack)


READY_TIMEOUT = 300
"""A cloud that is running but still starting (status 1) is given this long to become ready."""


@pytest.fixture(scope="session")
def cloud_env() -> dict[str, str]:
    """The environment every client runs with: the cloud's clouds.yaml and no stray OS_* settings."""
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        done = subprocess.run(["bash", "scripts/openstack-cloud.sh", "status"], cwd=ROOT, capture_output=True,
                              text=True, check=False)
        if done.returncode != 1 or time.monotonic() > deadline:
            break
        time.sleep(10)
    if done.returncode != 0 or not clouds_file().is_file():
        pytest.fail(
            "the acceptance cloud is not running or not ready (`bash scripts/openstack-cloud.sh up`):\n"
            + (done.stdout + done.stderr)[-1500:]
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["OS_CLIENT_CONFIG_FILE"] = str(clouds_file())
    return env


def _connect(cloud: str) -> Any:
    import openstack
    from openstack.config import loader

    config = loader.OpenStackConfig(config_files=[str(clouds_file())], load_envvars=False)
    return openstack.connection.Connection(config=config.get_one(cloud=cloud))


@pytest.fixture(scope="session")
def conn(cloud_env: dict[str, str]) -> Iterator[Any]:
    """The project member's connection (what the stack deploys as)."""
    connection = _connect(CLOUD)
    yield connection
    connection.close()


@pytest.fixture(scope="session")
def admin(cloud_env: dict[str, str]) -> Iterator[Any]:
    """The cloud admin (quotas only)."""
    connection = _connect(ADMIN_CLOUD)
    yield connection
    connection.close()


@pytest.fixture(scope="session", autouse=True)
def acceptance_quotas(cloud_env: dict[str, str]) -> Iterator[dict[str, int]]:
    """The project's Nova and Neutron quotas raised to what the acceptance stack needs (`nova_quotas`,
    `neutron_quotas`), as a ministry's cloud team would, for the whole session; the defaults again at
    the end. (Its own connections: test modules may define their own `admin`/`member` fixtures.)"""
    member, admin = _connect(CLOUD), _connect(ADMIN_CLOUD)
    project = member.current_project_id
    admin.compute.revert_quota_set(project)
    quotas = nova_quotas()
    admin.compute.update_quota_set(project, **quotas)
    set_neutron_quotas(admin, project)
    try:
        yield quotas
    finally:
        admin.compute.revert_quota_set(project)
        reset_neutron_quotas(admin, project)
        member.close()
        admin.close()


def new_connection() -> Any:
    """A fresh member connection (after an API restart, so no pooled socket is reused)."""
    return _connect(CLOUD)
