"""Sovereign state: no path leads a Visio stack's state to Pulumi Cloud."""

from __future__ import annotations

import pytest
import yaml
from conftest import STACKS_DIR

from visio_infra.commands.stack_outputs import StackOutputsError, backend_problem, pulumi_env

REPO = STACKS_DIR.parent


def test_the_project_file_pins_a_local_backend() -> None:
    """A bare `pulumi up` (no PULUMI_BACKEND_URL, whatever `pulumi login` said) uses local files."""
    project = yaml.safe_load((REPO / "Pulumi.yaml").read_text(encoding="utf-8"))
    assert project["backend"]["url"] == "file://.pulumi-state"
    assert ".pulumi-state/" in (REPO / ".gitignore").read_text(encoding="utf-8").split()


@pytest.mark.parametrize(
    "url",
    ["https://api.pulumi.com", "https://app.pulumi.com/visio", "HTTPS://API.PULUMI.COM/"],
)
def test_pulumi_cloud_is_refused(url: str) -> None:
    problem = backend_problem(url)
    assert problem is not None and "Pulumi Cloud" in problem and "s3://" in problem
    with pytest.raises(StackOutputsError, match="ministry's own storage"):
        pulumi_env({"PULUMI_BACKEND_URL": url})


@pytest.mark.parametrize(
    "url",
    [
        "file:///srv/visio-state",
        "s3://visio-state-interieur?endpoint=s3.example.gouv.fr&s3ForcePathStyle=true",
    ],
)
def test_sovereign_backends_pass_through(url: str) -> None:
    assert backend_problem(url) is None
    assert pulumi_env({"PULUMI_BACKEND_URL": url})["PULUMI_BACKEND_URL"] == url


def test_default_is_the_repository_file_backend_and_nothing_is_fetched() -> None:
    env = pulumi_env({})
    assert env["PULUMI_BACKEND_URL"] == f"file://{REPO / '.pulumi-state'}"
    assert env["PULUMI_SKIP_UPDATE_CHECK"] == "true"
    assert env["PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"] == "true"
