"""How the dashboard probe reads a page, finds the stack's Prometheus and waits for data (the page
itself, rendered by a real Prometheus in a real Chromium: tests/unit/roles/test_monitoring_dashboard.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from visio_infra.probes.dashboard import (
    DashboardError,
    DashboardView,
    chromium_command,
    dashboard_url,
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
