"""scripts/pulumi-env.sh puts THIS checkout's tools first, whatever another checkout put on PATH."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from conftest import STACKS_DIR

REPO = STACKS_DIR.parent


def _checkout(root: Path) -> Path:
    """A checkout reduced to what pulumi-env.sh reads: the script and a .venv with a `visio`."""
    (root / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "pulumi-env.sh", root / "scripts" / "pulumi-env.sh")
    venv_bin = root / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "visio").write_text(f"#!/bin/sh\necho {root.name}\n", encoding="utf-8")
    (venv_bin / "visio").chmod(0o755)
    return root


def test_a_second_checkout_runs_its_own_visio(tmp_path: Path) -> None:
    first, second = _checkout(tmp_path / "first"), _checkout(tmp_path / "second")
    script = (
        f"source {first}/scripts/pulumi-env.sh; visio; "
        f"source {second}/scripts/pulumi-env.sh; visio; "
        f"source {second}/scripts/pulumi-env.sh; echo \"$PATH\""
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"), "PULUMI_CONFIG_PASSPHRASE": "x"}
    out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, check=True)
    first_visio, second_visio, path = out.stdout.splitlines()
    assert (first_visio, second_visio) == ("first", "second")
    entries = path.split(":")
    assert entries[0] == f"{second}/.venv/bin"
    assert entries.count(f"{second}/.venv/bin") == 1, "sourcing twice must not grow PATH"
