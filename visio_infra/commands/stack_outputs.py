"""Read a stack's outputs through the Pulumi CLI (state stays where the operator keeps it).

Used by `visio summary`, `visio configure`, `visio verify` and `visio upgrade`. Secrets are only
fetched when asked for, and never printed or logged by this module.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent


class StackOutputsError(RuntimeError):
    """The stack's outputs could not be read (no such stack, no state, no pulumi)."""


SAAS_BACKEND_MARKER = "pulumi.com"
"""State on Pulumi Cloud (a US service) is refused: Visio state stays on the ministry's storage."""


def backend_problem(url: str) -> str | None:
    """Why `url` may not hold a Visio stack's state, or None."""
    if SAAS_BACKEND_MARKER in url.lower():
        return (
            f"PULUMI_BACKEND_URL points at Pulumi Cloud ({url}): Visio state must stay on the ministry's "
            "own storage; use file://DIR or s3://BUCKET?endpoint=HOST&s3ForcePathStyle=true&region=R "
            "on the sovereign cloud, or unset it for the local file backend"
        )
    return None


def pulumi_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the Pulumi CLI: nothing fetched at run time, local state by default,
    never Pulumi Cloud."""
    env = dict(os.environ if environ is None else environ)
    env.setdefault("PULUMI_SKIP_UPDATE_CHECK", "true")
    env.setdefault("PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION", "true")
    env.setdefault("PULUMI_BACKEND_URL", f"file://{ROOT / '.pulumi-state'}")
    problem = backend_problem(env["PULUMI_BACKEND_URL"])
    if problem:
        raise StackOutputsError(problem)
    toolchain = Path(env.get("VISIO_TOOLCHAIN_DIR", Path.home() / ".cache" / "visio-toolchain")) / "bin"
    env["PATH"] = f"{toolchain}:{env.get('PATH', '')}"
    return env


def read_outputs(stack: str, *, show_secrets: bool = False) -> dict[str, Any]:
    """All outputs of `stack` as plain data (secrets as '[secret]' unless `show_secrets`)."""
    env = pulumi_env()
    pulumi = shutil.which("pulumi", path=env["PATH"])
    if pulumi is None:
        raise StackOutputsError("pulumi is not installed; run `bash scripts/setup.sh`")
    cmd = [pulumi, "stack", "output", "--json", "--stack", stack]
    if show_secrets:
        cmd.append("--show-secrets")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise StackOutputsError(
            f"cannot read the outputs of stack '{stack}': {proc.stderr.strip() or proc.stdout.strip()}"
        )
    data = json.loads(proc.stdout or "{}")
    if not isinstance(data, dict):
        raise StackOutputsError(f"unexpected output of `pulumi stack output` for '{stack}'")
    return data
