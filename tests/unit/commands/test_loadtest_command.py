"""`visio loadtest` refuses before reading any output or touching any host."""

from __future__ import annotations

import pytest

from visio_infra.commands import loadtest


def test_refused_without_naming_the_stack_twice(capsys: pytest.CaptureFixture[str]):
    # No outputs file and no Pulumi here: reaching either would fail differently.
    assert loadtest.main(["lab", "--rooms", "1", "--participants", "2", "--duration", "10"]) == 2
    assert "add --yes-load-this-stack lab" in capsys.readouterr().err


def test_plans_out_of_bounds_are_refused(capsys: pytest.CaptureFixture[str]):
    argv = ["lab", "--rooms", "20", "--participants", "8", "--yes-load-this-stack", "lab"]
    assert loadtest.main(argv) == 2
    assert "at most 60 synthetic participants" in capsys.readouterr().err


def test_unknown_stack_is_refused(capsys: pytest.CaptureFixture[str]):
    assert loadtest.main(["nowhere", "--yes-load-this-stack", "nowhere"]) == 2
    assert "Pulumi.nowhere.yaml" in capsys.readouterr().err
