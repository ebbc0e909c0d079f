"""How the dashboard probe reads a page, finds the stack's Prometheus and waits for data (the page
itself, rendered by a real Prometheus in a real Chromium: tests/unit/roles/test_monitoring_dashboard.py)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from visio_infra.probes.dashboard import (
    DashboardError,
    DashboardView,
    Panel,
    chromium_command,
    dashboard_url,
    healthy_stack_problems,
    missing_panels,
    page_height,
    prometheus_url,
    read_panels,
    wait_for_panels,
)

PAGE = """<!doctype html><html><head><title>Visio lab
dashboard</title></head><body>
<div class="summary"><div class="tile">Rooms 8</div></div>
<main>
<section class="panel" data-panel="sfu-rooms" data-state="data">
<h2><a href="/graph">SFU: rooms</a></h2>
<table><tr><th>Node</th><th>Now</th></tr>
<tr data-node="lab-sfu-1"><td>lab-sfu-1</td><td class="value">3</td>
<td><svg><g><polyline points="-4,1 -2,2 -0,3"/></g></svg></td></tr>
<tr data-node="lab-sfu-2"><td>lab-sfu-2</td><td class="value nodata">no data</td><td></td></tr>
</table></section>
<section class="panel" data-panel="turn" data-state="data">
<h2>TURN</h2><table>
<tr data-node="lab-turn-1"><td>lab-turn-1</td><td class="value"><span class="ok">up</span></td></tr>
<tr data-node="lab-turn-1"><td>lab-turn-1</td><td class="value"><span class="bad">DOWN</span></td></tr>
</table></section>
<section class="panel" data-panel="turn-allocations" data-state="nodata">
<h2>TURN: allocations</h2><p class="nodata">no data: Prometheus has no series for <code>x</code></p>
</section>
</main></body></html>"""


def test_read_panels_finds_each_panel_its_state_values_and_sparklines() -> None:
    title, panels = read_panels(PAGE)
    assert title == "Visio lab dashboard"
    assert list(panels) == ["sfu-rooms", "turn", "turn-allocations"]
    rooms = panels["sfu-rooms"]
    assert (rooms.title, rooms.state, rooms.has_data) == ("SFU: rooms", "data", True)
    assert rooms.values == {"lab-sfu-1": ["3"], "lab-sfu-2": ["no data"]}
    assert rooms.nodes_with_data() == {"lab-sfu-1"}
    assert rooms.sparklines == [3]
    assert panels["turn"].values == {"lab-turn-1": ["up", "DOWN"]}
    empty = panels["turn-allocations"]
    assert not empty.has_data and empty.values == {} and empty.sparklines == []
    assert empty.marker_text.startswith("TURN: allocations no data: Prometheus has no series for x")
    assert rooms.marker_text == ""


def test_a_page_without_panels_reads_as_none() -> None:
    assert read_panels("<html><body><p>Error executing template</p></body></html>") == ("", {})


def test_missing_panels_names_absent_and_empty_ones() -> None:
    _, panels = read_panels(PAGE)
    assert missing_panels(panels, ["sfu-rooms", "turn"]) == []
    problems = missing_panels(panels, ["sfu-rooms", "turn-allocations", "certs"])
    assert problems[0].startswith("turn-allocations: TURN: allocations no data")
    assert problems[1] == "certs: no such panel on the page"


def test_wait_for_panels_opens_again_until_the_data_is_there() -> None:
    _, panels = read_panels(PAGE)
    _, filled = read_panels(PAGE.replace('data-state="nodata"', 'data-state="data"'))
    pages = [panels, panels, filled]
    opened, slept, now = [], [], [0.0]

    def opener(url: str) -> DashboardView:
        opened.append(url)
        return DashboardView(url=url, title="", panels=pages[len(opened) - 1])

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    view, missing = wait_for_panels(
        "http://x/consoles/visio.html", ["turn-allocations"], seconds=60, interval=10,
        opener=opener, sleep=sleep, clock=lambda: now[0],
    )  # fmt: skip
    assert missing == [] and view.panels is filled
    assert len(opened) == 3 and slept == [10, 10]


def test_wait_for_panels_gives_up_with_what_is_missing() -> None:
    _, panels = read_panels(PAGE)
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    _view, missing = wait_for_panels(
        "http://x/", ["sfu-rooms", "turn-allocations"], seconds=25, interval=10,
        opener=lambda url: DashboardView(url=url, title="", panels=panels), sleep=sleep, clock=lambda: now[0],
    )  # fmt: skip
    assert [m.split(":")[0] for m in missing] == ["turn-allocations"]
    assert now[0] == 20  # opened at 0, 10 and 20 s, not after the deadline


def test_prometheus_url_is_the_monitoring_hosts_private_address() -> None:
    inventory = {
        "groups": {
            "sfu": [{"name": "lab-sfu-1", "private_ip": "10.77.0.11", "public_ip": "192.0.2.11"}],
            "monitoring": [{"name": "lab-monitoring-1", "private_ip": "10.77.0.40", "public_ip": None}],
        }
    }
    assert prometheus_url(inventory) == "http://10.77.0.40:9090"
    assert dashboard_url(prometheus_url(inventory, 9191)) == "http://10.77.0.40:9191/consoles/visio.html"
    with pytest.raises(DashboardError, match="no host in group `monitoring`"):
        prometheus_url({"groups": {"sfu": inventory["groups"]["sfu"]}})


def test_chromium_reaches_only_the_dashboards_host() -> None:
    url = "http://10.77.0.40:9090/consoles/visio.html"
    command = chromium_command(url, Path("/tmp/p"), extra=("--dump-dom",))
    assert command[0] == "chromium" and command[-1] == url
    assert {"--headless", "--no-sandbox", "--dump-dom", "--user-data-dir=/tmp/p"} <= set(command)
    assert "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 10.77.0.40" in command
    assert "--disable-background-networking" in command


def test_the_screenshot_window_grows_with_the_rows_and_stays_bounded() -> None:
    _, panels = read_panels(PAGE)
    small = page_height(panels, 1400)
    rows = '<tr data-node="lab-sfu-3"><td class="value">1</td></tr>' * 20
    _, more = read_panels(PAGE.replace('<tr data-node="lab-sfu-2">', rows + '<tr data-node="lab-sfu-2">'))
    assert 300 < small < page_height(more, 1400) <= 16000
    assert page_height(more, 600) > page_height(more, 1400)  # one column: the panels stack


def test_wait_for_panels_also_waits_for_what_the_caller_checks() -> None:
    _, panels = read_panels(PAGE)
    now, calls = [0.0], []

    def sleep(seconds: float) -> None:
        now[0] += seconds

    def rooms_on_sfu_2(found: Mapping[str, Panel]) -> list[str]:
        calls.append(now[0])
        return [] if len(calls) > 1 else [f"no room on lab-sfu-2 yet: {found['sfu-rooms'].values}"]

    _view, missing = wait_for_panels(
        "http://x/", ["sfu-rooms"], seconds=60, interval=5, check=rooms_on_sfu_2,
        opener=lambda url: DashboardView(url=url, title="", panels=panels), sleep=sleep, clock=lambda: now[0],
    )  # fmt: skip
    assert missing == [] and calls == [0.0, 5.0]
    _view, missing = wait_for_panels(
        "http://x/", ["turn-allocations"], seconds=60, interval=5, check=rooms_on_sfu_2,
        opener=lambda url: DashboardView(url=url, title="", panels=panels), sleep=sleep, clock=lambda: now[0],
    )  # fmt: skip
    assert missing and missing[0].startswith("turn-allocations") and len(calls) == 2  # not checked then


GROUPS = {
    "sfu": [{"name": "lab-sfu-1"}, {"name": "lab-sfu-2"}],
    "turn": [{"name": "lab-turn-1"}],
    "db": [{"name": "lab-db-1"}, {"name": "lab-db-2"}],
    "redis": [{"name": "lab-redis-1"}, {"name": "lab-redis-2"}],
    "bastion": [],
}


def _healthy() -> dict[str, Panel]:
    shown = {
        "sfu-rooms": {"lab-sfu-1": ["1"], "lab-sfu-2": ["0"]},
        "sfu-participants": {"lab-sfu-1": ["2"], "lab-sfu-2": ["0"]},
        "sfu-cpu": {"lab-sfu-1": ["12.5 %"], "lab-sfu-2": ["3.0 %"]},
        "sfu-packet-loss": {"lab-sfu-1": ["0.0 %"], "lab-sfu-2": ["no data"]},
        "turn": {"lab-turn-1": ["up", "up"]},
        "turn-allocations": {"lab-turn-1": ["2"]},
        "db": {"lab-db-1": ["primary"], "lab-db-2": ["sync standby"]},
        "db-lag": {"lab-db-2": ["0B"]},
        "redis": {"lab-redis-1": ["master"], "lab-redis-2": ["replica"]},
        "certs": {"lab-sfu-1": ["396 d"], "lab-sfu-2": ["396 d"], "lab-turn-1": ["396 d"]},
        "alerts": {},
    }
    return {name: Panel(id=name, state="data", values=values) for name, values in shown.items()}


def test_a_healthy_stack_during_a_meeting_has_no_problem() -> None:
    assert healthy_stack_problems(_healthy(), GROUPS, busy_sfu="lab-sfu-1") == []


@pytest.mark.parametrize(
    ("panel", "values", "problem"),
    [
        ("sfu-rooms", {"lab-sfu-1": ["0"], "lab-sfu-2": ["0"]}, "sfu-rooms: no room counted on lab-sfu-1"),
        ("sfu-participants", {"lab-sfu-1": ["1"], "lab-sfu-2": ["0"]}, "sfu-participants: under 2"),
        ("sfu-cpu", {"lab-sfu-1": ["12.5 %"]}, "sfu-cpu: no value for lab-sfu-2"),
        ("sfu-cpu", {"lab-sfu-1": ["NaN %"], "lab-sfu-2": ["1 %"]}, "sfu-cpu: lab-sfu-1 shows 'NaN %'"),
        ("sfu-packet-loss", {"lab-sfu-1": ["no data"]}, "sfu-packet-loss: no value for lab-sfu-1"),
        ("turn", {"lab-turn-1": ["up", "DOWN"]}, "turn: lab-turn-1 shows ['up', 'DOWN']"),
        ("turn-allocations", {"lab-turn-1": ["no data"]}, "turn-allocations: no value for lab-turn-1"),
        ("db", {"lab-db-1": ["replica"], "lab-db-2": ["sync standby"]}, "db: 0 primaries"),
        ("db", {"lab-db-1": ["primary"], "lab-db-2": ["replica"]}, "db: no synchronous standby"),
        ("db-lag", {}, "db-lag: no replica shown"),
        ("redis", {"lab-redis-1": ["master"], "lab-redis-2": ["master"]}, "redis: 2 masters"),
        ("certs", {"lab-sfu-1": ["20 d"], "lab-sfu-2": ["99 d"], "lab-turn-1": ["99 d"]}, "certs: lab-sfu-1"),
        ("certs", {"lab-sfu-1": ["396 d"], "lab-turn-1": ["396 d"]}, "certs: lab-sfu-2 shows 'none'"),
    ],
)  # fmt: skip
def test_each_unhealthy_sign_is_named(panel: str, values: dict[str, list[str]], problem: str) -> None:
    panels = _healthy()
    panels[panel] = Panel(id=panel, state="data", values=values)
    problems = healthy_stack_problems(panels, GROUPS, busy_sfu="lab-sfu-1")
    assert len(problems) == 1 and problems[0].startswith(problem), problems


def test_a_panel_without_data_is_the_problem_reported() -> None:
    panels = _healthy()
    panels["redis"] = Panel(
        id="redis", state="nodata", text="Redis no data: Prometheus has no series for redis_up"
    )
    del panels["certs"]
    assert healthy_stack_problems(panels, GROUPS) == [
        "redis: Redis no data: Prometheus has no series for redis_up",
        "certs: no such panel on the page",
    ]
