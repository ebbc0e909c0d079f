"""How "TURN allocations near quota" gets its figures: Debian 12's coturn 4.6.1 has no metrics endpoint,
so roles/coturn's timer counts turnserver's UDP sockets in the relay port range (one per allocation)
and writes them with the quota to the node exporter's textfile directory.

The rendered script runs for real here; only `ss` and `systemctl` are stand-ins on PATH, answering
with sockets as `ss -p` prints them (turnserver's and other processes'). `promtool check metrics`
judges the file it writes.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from monitoring_support import render_role_template, tool

UDP = """\
UNCONN 0 0 10.0.0.5:3478 0.0.0.0:* users:(("turnserver",pid=10,fd=5))
UNCONN 0 0 10.0.0.5:49152 0.0.0.0:* users:(("turnserver",pid=10,fd=6))
UNCONN 0 0 10.0.0.5:60000 0.0.0.0:* users:(("turnserver",pid=10,fd=7))
UNCONN 0 0 [2001:db8::5]:65535 [::]:* users:(("turnserver",pid=10,fd=8))
UNCONN 0 0 10.0.0.5:49151 0.0.0.0:* users:(("turnserver",pid=10,fd=9))
UNCONN 0 0 10.0.0.5:55000 0.0.0.0:* users:(("chronyd",pid=11,fd=3))
"""
# `ss -Htnp` (no state filter: the State column stays first, as in real output).
TCP = """\
ESTAB 0 0 10.0.0.5:443 192.0.2.4:40001 users:(("turnserver",pid=10,fd=20))
ESTAB 0 0 10.0.0.5:3478 192.0.2.4:40002 users:(("turnserver",pid=10,fd=21))
CLOSE-WAIT 1 0 10.0.0.5:3478 192.0.2.4:40004 users:(("turnserver",pid=10,fd=23))
ESTAB 0 0 10.0.0.5:22 192.0.2.4:40003 users:(("sshd",pid=12,fd=4))
ESTAB 0 0 10.0.0.5:50000 192.0.2.9:3478 users:(("turnserver",pid=10,fd=22))
"""


def _run(
    tmp_path: Path, *, coturn_active: bool, quota: int = 4000
) -> tuple[subprocess.CompletedProcess[str], Path]:
    bin_dir, metrics = tmp_path / "bin", tmp_path / "metrics"
    bin_dir.mkdir()
    metrics.mkdir()
    (tmp_path / "udp").write_text(UDP, encoding="utf-8")
    (tmp_path / "tcp").write_text(TCP, encoding="utf-8")
    fakes = {
        # -Hunap: UDP sockets; -Htnp: TCP connections (any other call fails the script).
        "ss": f'case "$*" in -Hunap) cat {tmp_path}/udp ;; -Htnp) cat {tmp_path}/tcp ;; '
        "*) exit 2 ;; esac",
        "systemctl": f"exit {0 if coturn_active else 3}",
    }
    for name, body in fakes.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
        (bin_dir / name).chmod(0o755)
    script = tmp_path / "visio-turn-metrics"
    variables = {
        "coturn_metrics_dir": str(metrics),
        "coturn_relay_min_port": 49152,
        "coturn_relay_max_port": 65535,
        "coturn_total_quota": quota,
        "private_ip": "10.0.0.5",
    }
    text = render_role_template("coturn", "visio-turn-metrics.sh.j2", variables)
    # The script sets its own PATH for systemd; the stand-ins go first.
    script.write_text(text.replace("PATH=/usr/sbin:", f"PATH={bin_dir}:/usr/sbin:"), encoding="utf-8")
    script.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    result = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=30, check=False)
    return result, metrics / "visio_turn.prom"


def _samples(path: Path) -> dict[str, float]:
    lines = path.read_text(encoding="utf-8").splitlines()
    samples = (line.split() for line in lines if not line.startswith("#"))
    return {name: float(value) for name, value in samples}


def test_allocations_are_turnservers_sockets_in_the_relay_range(tmp_path: Path) -> None:
    result, written = _run(tmp_path, coturn_active=True)
    assert result.returncode == 0, result.stderr
    assert _samples(written) == {
        # 49152, 60000 and 65535 (IPv6); not the 3478 listener, not 49151, not chronyd's 55000.
        "visio_turn_allocations": 3,
        "visio_turn_allocation_quota": 4000,
        "visio_turn_relay_ports": 65535 - 49152 + 1,
        # Established clients on 443 and 3478; not a closing one, not sshd, not turnserver's own
        # connection out of a relay port.
        "visio_turn_tcp_clients": 2,
        "visio_turn_server_up": 1,
    }
    check = subprocess.run(
        [tool("promtool"), "check", "metrics"], input=written.read_text(encoding="utf-8"),
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert list(written.parent.iterdir()) == [written]  # written aside, then renamed
    assert oct(written.stat().st_mode & 0o777) == oct(0o644)  # the node exporter reads it as prometheus


def test_a_stopped_coturn_and_an_unlimited_quota_are_reported_as_such(tmp_path: Path) -> None:
    result, written = _run(tmp_path, coturn_active=False, quota=0)
    assert result.returncode == 0, result.stderr
    samples = _samples(written)
    assert samples["visio_turn_server_up"] == 0
    assert samples["visio_turn_allocation_quota"] == 0
