"""scripts/pulumi-env.sh puts THIS checkout's tools first and uses its own state, whatever another checkout
set before."""

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


def _backend(tmp_path: Path, script: str, **extra: str) -> list[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"), "PULUMI_CONFIG_PASSPHRASE": "x", **extra}
    out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def test_a_second_checkout_uses_its_own_state(tmp_path: Path) -> None:
    """Tried: a CI clone started from a shell that had sourced the script in a removed checkout ran
    `pulumi up` against that checkout's state directory (gone: "unable to open state directory")."""
    first, second = _checkout(tmp_path / "first"), _checkout(tmp_path / "second")
    lines = _backend(tmp_path, (
        f"source {first}/scripts/pulumi-env.sh; echo $PULUMI_BACKEND_URL; rm -rf {first}; "
        f"source {second}/scripts/pulumi-env.sh; echo $PULUMI_BACKEND_URL"
    ))
    assert lines == [f"file://{first}/.pulumi-state", f"file://{second}/.pulumi-state"]
    assert (second / ".pulumi-state").is_dir()


def test_a_backend_the_operator_set_is_kept(tmp_path: Path) -> None:
    first = _checkout(tmp_path / "first")
    bucket = "s3://visio-state?endpoint=s3.example.org&region=fr-par"
    assert _backend(tmp_path, f"source {first}/scripts/pulumi-env.sh; echo $PULUMI_BACKEND_URL",
                    PULUMI_BACKEND_URL=bucket) == [bucket]
    assert not (first / ".pulumi-state").exists()
