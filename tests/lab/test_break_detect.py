"""Break the deployed lab on purpose; `visio verify lab` must fail naming the check, and re-applying
configuration (`visio configure lab`) must repair it so the same checks pass again.

A verification suite that never fails proves nothing: each case below is a realistic incident
(a service down, a store opened to everyone, a lost replica, secrets out of sync) and the check
that must catch it. Run against a deployed lab (scripts/test.sh brings it up):

    pytest tests/lab/test_break_detect.py -m lab
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.lab.lab_ops import STACK as LAB_STACK

ROOT = Path(__file__).resolve().parents[2]
STACK = os.environ.get("VISIO_BREAK_STACK", LAB_STACK)

pytestmark = pytest.mark.lab


@dataclass(frozen=True)
class Breakage:
    """One incident: what to do on which role's first node, which checks to run, which must fail."""

    name: str
    role: str
    command: str
    select: str
    """pytest -k expression given to `visio verify` (only the checks that matter, to stay fast)."""
    must_fail: tuple[str, ...]
    """Substrings of failed check names that must appear in the summary."""


def _input_chain_rule(rule: str) -> str:
    """Insert an nftables rule at the top of whatever base chain hooks input (table-name agnostic)."""
    pick = (
        "import json,sys;"
        "c=[x['chain'] for x in json.load(sys.stdin)['nftables']"
        " if x.get('chain',{}).get('hook')=='input'][0];"
        "print(c['family'],c['table'],c['name'])"
    )
    insert = f"{{ read f t n; nft insert rule $f $t $n {rule}; }}"
    return f"nft -j list chains | python3 -c {shlex.quote(pick)} | {insert}"


BREAKAGES = [
    Breakage(
        "coturn stopped",
        "turn",
        "systemctl stop coturn",
        "test_turn or services_enabled",
        ("test_services_enabled_and_running", "test_turn_listener"),
    ),
    Breakage(
        "Redis bound to every address without protected mode",
        "redis",
        "sed -i -e 's/^bind .*/bind 0.0.0.0/' -e 's/^protected-mode yes/protected-mode no/' "
        "/etc/redis/visio-redis.conf && systemctl restart redis-server",
        "test_redis",
        ("test_bound_to_private_address_only",),
    ),
    Breakage(
        "Redis opened to the world in the host firewall",
        "redis",
        _input_chain_rule("tcp dport 6379 accept"),
        "test_redis",
        # From this host (Meet's app range in the lab, allowed with the password) it cannot show:
        # a DB or TURN node reaching Redis does.
        ("test_refused_from_nodes_that_are_not_sfu",),
    ),
    Breakage(
        "replica removed",
        "db",
        "systemctl disable --now patroni",  # Patroni runs PostgreSQL: the member leaves the cluster
        "replicas_stream or appears_on_replicas",
        ("test_replicas_stream_with_bounded_lag",),
    ),
    Breakage(
        "TURN shared secret changed on the coturn side",
        "turn",
        "sed -i 's/^static-auth-secret=.*/static-auth-secret=visio-break-detect-not-the-stack-secret/' "
        "/etc/turnserver.conf && systemctl restart coturn",
        "test_turn or relayed",
        ("allocation with shared-secret credentials",),
    ),
]


def _visio(*args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "visio_infra.commands.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def lab_outputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lab's outputs once, in a 0600 file, so each verify run skips `pulumi stack output`."""
    from visio_infra.commands.verify import VerifyError, fetch_outputs

    try:
        outputs = fetch_outputs(STACK)
    except VerifyError as exc:
        pytest.fail(f"the {STACK} stack is not deployed: {exc}")
    path = tmp_path_factory.mktemp("outputs") / "outputs.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(outputs, handle)
    return path


def _target(outputs_file: Path, role: str) -> tuple[str, list[str]]:
    outputs = json.loads(outputs_file.read_text(encoding="utf-8"))
    inventory = outputs["inventory"]
    hosts = inventory["groups"][role]
    # DB and Redis: the second node, a standby/replica at first (breaking the leader or master would
    # test a failover, which the drills do); every other break hits the role's first node.
    host = hosts[1] if role in ("db", "redis") else hosts[0]
    connection = inventory.get("connection") or {}
    ssh = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
    if connection.get("ssh_key_file"):
        ssh += ["-i", connection["ssh_key_file"], "-o", "IdentitiesOnly=yes"]
    if connection.get("known_hosts_file"):
        ssh += [
            "-o",
            f"UserKnownHostsFile={connection['known_hosts_file']}",
            "-o",
            "StrictHostKeyChecking=yes",
        ]
    address = host.get("public_ip") or host["private_ip"]
    return host["name"], [*ssh, f"{connection.get('user', 'root')}@{address}"]


def _verify(outputs_file: Path, select: str) -> subprocess.CompletedProcess[str]:
    return _visio("verify", STACK, "--outputs-file", str(outputs_file), "-k", select, "-n", "4")


def _cases() -> list:
    return [pytest.param(b, id=b.name.replace(" ", "-")) for b in BREAKAGES]


@pytest.mark.parametrize("breakage", _cases())
def test_break_is_detected_then_repaired(breakage: Breakage, lab_outputs: Path, record_property: Callable):
    before = _verify(lab_outputs, breakage.select)
    assert before.returncode == 0, (
        f"the lab fails {breakage.select!r} before breaking it:\n{before.stdout[-3000:]}"
    )

    host, ssh = _target(lab_outputs, breakage.role)
    broken = subprocess.run(
        [*ssh, breakage.command], capture_output=True, text=True, timeout=120, check=False
    )
    assert broken.returncode == 0, f"could not break {host}: {broken.stderr[-500:]}"
    try:
        detected = _verify(lab_outputs, breakage.select)
        assert detected.returncode != 0, (
            f"{breakage.name} on {host} went unnoticed:\n{detected.stdout[-3000:]}"
        )
        summary = detected.stdout.split("Verification summary", 1)[-1]
        for check in breakage.must_fail:
            assert check in summary and host in summary, (
                f"{breakage.name}: the summary does not name {check!r} on {host}:\n{summary[-3000:]}"
            )
    finally:
        repaired = _visio("configure", STACK, "--limit", host)
    assert repaired.returncode == 0, f"`visio configure {STACK}` failed:\n{repaired.stdout[-3000:]}"
    after = _verify(lab_outputs, breakage.select)
    record_property("break", breakage.name)
    assert after.returncode == 0, f"{breakage.name}: still failing after configure:\n{after.stdout[-3000:]}"
