"""How "backup older than a day" gets its metric: the backup command of roles/postgresql writes
visio_pg_backup_last_success_timestamp_seconds to the node exporter's textfile directory after a
successful pgBackRest backup, and nothing after a failed one or on a standby.

The rendered script runs for real here; only the commands around it are stand-ins on PATH
(`runuser` runs the command as the current user, `psql` answers the recovery state, `pgbackrest`
succeeds or fails as the case says). `promtool check metrics` judges the file it writes.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from monitoring_support import render_role_template, tool


def _run_backup(tmp_path: Path, *, in_recovery: str, pgbackrest_rc: int) -> Path:
    bin_dir, metrics = tmp_path / "bin", tmp_path / "metrics"
    bin_dir.mkdir()
    metrics.mkdir()
    fakes = {
        "runuser": 'while [ "$1" != -- ]; do shift; done; shift; exec "$@"',
        "psql": f"echo {in_recovery}",
        "pgbackrest": f"exit {pgbackrest_rc}",
    }
    for name, body in fakes.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
        (bin_dir / name).chmod(0o755)
    script = tmp_path / "visio-pg-backup"
    script.write_text(
        render_role_template("postgresql", "visio-pg-backup.sh.j2", {"postgresql_metrics_dir": str(metrics)}),
        encoding="utf-8",
    )
    script.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    subprocess.run([str(script), "incr"], env=env, capture_output=True, text=True, timeout=30, check=False)
    return metrics / "pg_backup.prom"


def test_a_successful_backup_on_the_leader_records_its_time(tmp_path: Path) -> None:
    before = time.time()
    written = _run_backup(tmp_path, in_recovery="f", pgbackrest_rc=0)
    text = written.read_text(encoding="utf-8")
    [sample] = [line for line in text.splitlines() if not line.startswith("#")]
    name_labels, value = sample.rsplit(" ", 1)
    assert name_labels == 'visio_pg_backup_last_success_timestamp_seconds{stanza="visio"}'
    assert before - 1 <= float(value) <= time.time() + 1
    result = subprocess.run(
        [tool("promtool"), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert list(written.parent.iterdir()) == [written]  # the temporary file was renamed


@pytest.mark.parametrize(("in_recovery", "rc"), [("f", 1), ("t", 0)], ids=["failed-backup", "standby"])
def test_no_record_after_a_failed_backup_or_on_a_standby(tmp_path: Path, in_recovery: str, rc: int) -> None:
    assert not _run_backup(tmp_path, in_recovery=in_recovery, pgbackrest_rc=rc).exists()
