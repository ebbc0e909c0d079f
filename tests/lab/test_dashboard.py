"""The stack's dashboard in a real browser against the lab's own Prometheus (needs `scripts/lab.sh up`
with a monitoring node: inventory group `monitoring`, roles/monitoring converged on it).

During a short real meeting (tests/lab/upgrade_traffic.py, as `visio status`'s lab test uses), headless
Chromium opens /consoles/visio.html on the monitoring node's Prometheus until the SFU, TURN,
PostgreSQL, Redis and certificate panels show data and the figures fit a healthy lab with a meeting
on its node (`healthy_stack_problems`, unit-tested in tests/unit/probes/test_dashboard_panels.py).
The page is reached at the monitoring node's private address, as from the lab host; if that host
is not admitted there, through an SSH port forward to the node, as an SRE on a bastion would.
Screenshot: reports/dashboard-lab.png.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.lab.lab_ops import ROOT, STACK, call_traffic, private_dir, ssh_command
from visio_infra.commands.verify import fetch_outputs
from visio_infra.probes.dashboard import (
    dashboard_url,
    healthy_stack_problems,
    open_dashboard,
    prometheus_url,
    wait_for_panels,
)

pytestmark = pytest.mark.labhost

SCREENSHOT = ROOT / "reports" / "dashboard-lab.png"
PORT = int(
    yaml.safe_load((ROOT / "roles" / "monitoring" / "defaults" / "main.yml").read_text(encoding="utf-8"))[
        "monitoring_prometheus_port"
    ]
)
REQUIRED = (
    "sfu-rooms", "sfu-participants", "sfu-cpu", "sfu-packet-loss", "turn", "turn-allocations",
    "db", "db-lag", "redis", "certs", "alerts",
)  # fmt: skip
"""Every panel of the page: on a lab with a meeting, none may say "no data"."""
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _ready(base: str) -> bool:
    try:
        with DIRECT.open(f"{base}/-/ready", timeout=5) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def _prometheus(inventory: dict[str, Any]) -> Iterator[str]:
    """The lab Prometheus's base URL: its private address, else an SSH forward to it."""
    base = prometheus_url(inventory, PORT)
    if _ready(base):
        yield base
        return
    host = inventory["groups"]["monitoring"][0]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        local = sock.getsockname()[1]
    forward = subprocess.Popen(
        [*ssh_command(inventory, host)[:-1], "-N", "-o", "ExitOnForwardFailure=yes",
         "-L", f"127.0.0.1:{local}:{host['private_ip']}:{PORT}", ssh_command(inventory, host)[-1]],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        tunnelled = f"http://127.0.0.1:{local}"
        for _ in range(30):
            if _ready(tunnelled) or forward.poll() is not None:
                break
            time.sleep(1)
        ended = forward.poll() is not None and forward.stderr is not None
        why = forward.stderr.read()[-800:] if ended and forward.stderr else "no answer"
        assert _ready(tunnelled), (
            f"Prometheus answers neither at {base} nor through SSH to {host['name']}: {why}"
        )
        print(f"{base} is not reachable from this host: through an SSH forward to {host['name']}")
        yield tunnelled
    finally:
        forward.terminate()
        forward.wait(timeout=10)


def test_dashboard_shows_the_lab_during_a_meeting() -> None:
    outputs = fetch_outputs(STACK)
    inventory = outputs["inventory"]
    groups = inventory["groups"]
    work = private_dir("visio-dashboard-")
    with _prometheus(inventory) as base, call_traffic(
        work, outputs, meeting_seconds=150, extra=("--end-on-stop",)
    ) as meeting:
        url = dashboard_url(base)
        # Prometheus scrapes every 15 s: the meeting's room shows within a scrape or two.
        view, problems = wait_for_panels(
            url, REQUIRED, seconds=100, interval=10,
            check=lambda panels: healthy_stack_problems(panels, groups, busy_sfu=meeting["node"]),
        )  # fmt: skip
        shot = open_dashboard(url, SCREENSHOT)
    for panel in view.panels.values():
        print(f"DASHBOARD {panel.id:18} {panel.state:7} {panel.values}")
    print(f"DASHBOARD screenshot {shot.screenshot}")
    assert problems == [], problems
    # The screenshot's page too has every panel with data.
    assert [name for name, panel in shot.panels.items() if not panel.has_data] == []
    assert set(REQUIRED) <= set(shot.panels), sorted(shot.panels)
