"""Shared fixtures for the unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from visio_infra.model.config.stack import StackConfig
from visio_infra.model.stack_file import load_stack_file

STACKS_DIR = Path(__file__).resolve().parents[2] / "stacks"
"""The stack files shipped in the repository."""

def shipped_stack_files() -> list[Path]:
    """The stack files of the repository, new ones included, but not the git-ignored lab copies that
    `scripts/lab.sh copy` writes for a second lab on one machine (they are not the project's)."""
    import subprocess

    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", "Pulumi.*.yaml"],
        cwd=STACKS_DIR, capture_output=True, text=True, check=False,
    )
    if listed.returncode != 0:  # not a git checkout (an unpacked archive): every file there
        return sorted(STACKS_DIR.glob("Pulumi.*.yaml"))
    return sorted(STACKS_DIR / name for name in listed.stdout.split() if (STACKS_DIR / name).exists())


STACK_NAMES = sorted(
    p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in shipped_stack_files()
)
"""Every shipped stack (the lab and each ministry), discovered so a new stack file is tested at once."""

MINISTRY_STACKS = [name for name in STACK_NAMES if name != "lab"]


@pytest.fixture(params=STACK_NAMES)
def stack_name(request: pytest.FixtureRequest) -> str:
    """Parametrises a test over every stack in stacks/."""
    return str(request.param)


@pytest.fixture
def stack_path(stack_name: str) -> Path:
    return STACKS_DIR / f"Pulumi.{stack_name}.yaml"


@pytest.fixture
def stack_config(stack_path: Path) -> StackConfig:
    """The validated config of each shipped stack (parametrised through `stack_name`)."""
    return load_stack_file(stack_path)
