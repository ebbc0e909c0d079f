"""`visio status` refuses bad input before touching any host."""

from __future__ import annotations

from pathlib import Path

import pytest

from visio_infra.commands import status


def test_interval_below_a_second_is_refused(capsys: pytest.CaptureFixture[str]):
    assert status.main(["lab", "--once", "--interval", "0.1"]) == 2
    assert "--interval must be at least 1 second" in capsys.readouterr().err


def test_unreadable_outputs_are_a_plain_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    missing = tmp_path / "outputs.json"
    assert status.main(["lab", "--once", "--outputs-file", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "cannot read the outputs of stack lab" in err and "outputs.json" in err


def test_a_stack_without_nodes_reads_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    outputs = tmp_path / "outputs.json"
    outputs.write_text('{"inventory": {"groups": {}, "connection": {}}}')
    assert status.main(["lab", "--json", "--outputs-file", str(outputs)]) == 0
    assert '"nodes": []' in capsys.readouterr().out
