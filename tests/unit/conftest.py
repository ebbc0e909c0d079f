"""Shared fixtures for the unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from visio_infra.model.config.stack import StackConfig
from visio_infra.model.stack_file import load_stack_file

STACKS_DIR = Path(__file__).resolve().parents[2] / "stacks"
"""The stack files shipped in the repository."""

STACK_NAMES = sorted(
    p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in STACKS_DIR.glob("Pulumi.*.yaml")
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
