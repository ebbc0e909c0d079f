"""The policy pack through the real CLI and the project's language host (`pulumi preview
--policy-pack policy`), not only its rule functions: it passes on the deployed lab and refuses a
program that names a non-European STUN server.

The refusing program is a throwaway project in a temporary directory with its own file backend: it
declares one dynamic resource (nothing is created by a preview) and never touches the lab.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.lab.lab_ops import STACK, private_dir

ROOT = Path(__file__).resolve().parents[2]
PACK = ROOT / "policy"

pytestmark = pytest.mark.labhost


def _pulumi(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    script = 'source "$1/scripts/pulumi-env.sh" >/dev/null && exec pulumi "${@:2}"'
    done = subprocess.run(
        ["bash", "-c", script, "pulumi", str(ROOT), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    output = done.stdout + done.stderr
    print(output)
    return done.returncode, output


def test_the_pack_passes_on_the_lab_stack() -> None:
    rc, output = _pulumi(["preview", "--stack", STACK, "--policy-pack", str(PACK), "--diff=false"], ROOT)
    assert rc == 0, "pulumi preview --policy-pack failed on the lab (see the output above)"
    assert "visio-security@" in output, "the pack did not run"
    assert "[mandatory]" not in output, "a mandatory policy was violated on the lab"


def test_the_pack_refuses_a_foreign_stun_server() -> None:
    work = private_dir("visio-policy-check-")
    (work / "state").mkdir()
    (work / "Pulumi.yaml").write_text(
        textwrap.dedent(
            f"""\
            name: policy-check
            runtime:
              name: python
              options:
                virtualenv: {ROOT / '.venv'}
            """
        ),
        encoding="utf-8",
    )
    (work / "__main__.py").write_text(
        textwrap.dedent(
            """\
            import pulumi.dynamic

            class Provider(pulumi.dynamic.ResourceProvider):
                def create(self, props):
                    return pulumi.dynamic.CreateResult("x", props)

            class Config(pulumi.dynamic.Resource):
                def __init__(self, name, props):
                    super().__init__(Provider(), name, props)

            Config("livekit-config", {"stun_servers": ["stun.l.google.com:19302"]})
            """
        ),
        encoding="utf-8",
    )
    env = {
        **os.environ,
        "PULUMI_BACKEND_URL": f"file://{work / 'state'}",
        "PULUMI_CONFIG_PASSPHRASE": "policy-check-throwaway",
    }
    env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
    rc, _ = _pulumi(["stack", "init", "check"], work, env)
    assert rc == 0
    rc, output = _pulumi(["preview", "--stack", "check", "--policy-pack", str(PACK)], work, env)
    assert rc != 0, "the pack let a Google STUN server through"
    assert "[mandatory]  sovereign-endpoints" in output and "stun.l.google.com" in output, output[-2000:]
