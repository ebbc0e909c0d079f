"""The stack's dashboard as a person sees it: Prometheus's console page opened in headless Chromium.

The page (roles/monitoring/files/consoles/visio.html) is rendered by Prometheus on the server, with
no script, so the DOM Chromium has once the page loaded is what the screen shows. Each panel is a
`<section data-panel=ID data-state=data|nodata>`; a panel without series says "no data" instead of
showing an empty frame, which is what `read_panels` tells apart.

Chromium (Debian's `chromium`) runs with a throw-away profile, its background services off and every
host name but the dashboard's resolving to nothing, so it reaches the given URL only: Chromium 156
still tries its update and sign-in services in spite of the switches (seen with --log-net-log), and
those requests end at the resolver, before any DNS query.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CONSOLE_PATH = "/consoles/visio.html"
"""Where Prometheus serves the stack's dashboard (the role installs consoles/visio.html)."""

NO_DATA = "no data"
"""The marker a panel or a cell shows when Prometheus has no series for it."""


class DashboardError(RuntimeError):
    """The dashboard could not be opened (no Prometheus in the inventory, Chromium missing, crashed
    or timed out, or a page without panels)."""


def dashboard_url(prometheus_url: str) -> str:
    """The dashboard of the Prometheus at `prometheus_url` (e.g. http://10.40.0.2:9090)."""
    return prometheus_url.rstrip("/") + CONSOLE_PATH


def prometheus_url(inventory: Mapping[str, Any], port: int = 9090) -> str:
    """The stack's own Prometheus: the first host of the inventory's `monitoring` group, at its
    private address (where roles/monitoring makes it listen)."""
    hosts = (inventory.get("groups") or {}).get("monitoring") or []
    if not hosts:
        raise DashboardError(
            "the stack's inventory has no host in group `monitoring`: the stack has no Prometheus of its own"
        )
    return f"http://{hosts[0]['private_ip']}:{port}"


@dataclasses.dataclass
class Panel:
    """One panel of the page: whether it has data, and what it shows per node."""

    id: str
    title: str = ""
    state: str = ""
    """`data` or `nodata`, as the page marks the panel."""
    values: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    """node -> the texts of its value cells, in page order (a node may have several rows)."""
    sparklines: list[int] = dataclasses.field(default_factory=list)
    """Number of points of each sparkline in the panel."""
    text: str = ""
    """All the panel's visible text, whitespace-collapsed."""

    @property
    def has_data(self) -> bool:
        """The panel shows series, not the "no data" marker."""
        return self.state == "data"

    @property
    def marker_text(self) -> str:
        """The panel's text when it has no data at all ("" when it has)."""
        return self.text if self.state == "nodata" else ""

    def nodes_with_data(self) -> set[str]:
        """Nodes that have at least one value other than the "no data" marker."""
        return {node for node, texts in self.values.items() if any(t != NO_DATA for t in texts)}


class _PanelParser(HTMLParser):
    """Collects the panels of the page from its DOM."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.panels: dict[str, Panel] = {}
        self.title = ""
        self._panel: Panel | None = None
        self._depth = 0  # nesting of <section> inside the current panel
        self._node: str | None = None
        self._cell: list[str] | None = None
        self._heading: list[str] | None = None
        self._in_title = False
        self._texts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {name: value or "" for name, value in attrs}
        if tag == "title":
            self._in_title = True
        if tag == "section":
            if self._panel is not None:
                self._depth += 1
            elif "data-panel" in attr:
                self._panel = Panel(id=attr["data-panel"], state=attr.get("data-state", ""))
                self._texts = []
                self._depth = 0
            return
        if self._panel is None:
            return
        if tag == "tr":
            self._node = attr.get("data-node") or None
        elif tag == "td" and "value" in attr.get("class", "").split():
            self._cell = []
        elif tag == "h2":
            self._heading = []
        elif tag == "polyline":
            self._panel.sparklines.append(len(attr.get("points", "").split()))

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if self._panel is None:
            return
        if tag == "section":
            if self._depth:
                self._depth -= 1
                return
            self._panel.text = " ".join(" ".join(self._texts).split())
            self.panels[self._panel.id] = self._panel
            self._panel = None
        elif tag == "td" and self._cell is not None:
            if self._node is not None:
                text = " ".join(" ".join(self._cell).split())
                self._panel.values.setdefault(self._node, []).append(text)
            self._cell = None
        elif tag == "tr":
            self._node = None
        elif tag == "h2" and self._heading is not None:
            self._panel.title = " ".join(" ".join(self._heading).split())
            self._heading = None

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        if self._panel is None:
            return
        self._texts.append(data)
        if self._cell is not None:
            self._cell.append(data)
        if self._heading is not None:
            self._heading.append(data)


@dataclasses.dataclass
class DashboardView:
    """What the browser showed: the page title and its panels by id."""

    url: str
    title: str
    panels: dict[str, Panel]
    screenshot: Path | None = None


def read_panels(html: str) -> tuple[str, dict[str, Panel]]:
    """The page title and the panels of a dashboard DOM."""
    parser = _PanelParser()
    parser.feed(html)
    parser.close()
    return " ".join(parser.title.split()), parser.panels


def chromium_command(
    url: str, profile: Path, *, binary: str = "chromium", extra: tuple[str, ...] = ()
) -> list[str]:
    """Headless Chromium opening `url` only: a throw-away profile, no background traffic, and every
    host name other than the URL's resolving to nothing."""
    host = urlsplit(url).hostname or ""
    return [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-domain-reliability",
        "--metrics-recording-only",
        "--no-pings",
        "--noerrdialogs",
        "--no-service-autorun",
        "--disable-breakpad",
        "--disable-client-side-phishing-detection",
        f"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE {host}",
        *extra,
        url,
    ]


def _chromium(url: str, extra: tuple[str, ...], binary: str, timeout: float) -> str:
    path = shutil.which(binary)
    if path is None:
        raise DashboardError(
            f"{binary} is not installed: run scripts/setup.sh"
            " (or apt-get install --no-install-recommends chromium)"
        )
    with tempfile.TemporaryDirectory(prefix="visio-chromium-") as profile:
        try:
            done = subprocess.run(
                chromium_command(url, Path(profile), binary=path, extra=extra),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                env={"HOME": profile, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            )
        except subprocess.TimeoutExpired as exc:
            raise DashboardError(f"chromium did not finish opening {url} within {timeout:.0f} s") from exc
    if done.returncode != 0:
        raise DashboardError(f"chromium failed on {url} ({done.returncode}): {done.stderr[-1500:]}")
    return done.stdout


def open_dashboard(
    url: str,
    screenshot: Path | None = None,
    *,
    width: int = 1400,
    height: int | None = None,
    binary: str = "chromium",
    timeout: float = 90,
) -> DashboardView:
    """Open the dashboard at `url` in headless Chromium: its panels, and a PNG of the page in
    `screenshot` when given (the window is as tall as the page needs unless `height` is given)."""
    html = _chromium(url, ("--dump-dom",), binary, timeout)
    title, panels = read_panels(html)
    if not panels:
        raise DashboardError(f"{url} shows no dashboard panel; the page starts: {html[:800]!r}")
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.unlink(missing_ok=True)
        tall = height or page_height(panels, width)
        _chromium(url, (f"--screenshot={screenshot}", f"--window-size={width},{tall}"), binary, timeout)
        if not screenshot.is_file() or screenshot.stat().st_size == 0:
            raise DashboardError(f"chromium wrote no screenshot of {url} to {screenshot}")
    return DashboardView(url=url, title=title, panels=panels, screenshot=screenshot)


def page_height(panels: dict[str, Panel], width: int) -> int:
    """A window height that holds the whole page: the panels flow in columns of at least 560 px
    (visio.lib's grid) in page order, each about 110 px plus a row's height per row (56 px with
    a sparkline, 26 px without)."""
    columns = max(1, (width - 48) // 576)
    heights = [
        110 + (56 if panel.sparklines else 26) * max(1, sum(len(texts) for texts in panel.values.values()))
        for panel in panels.values()
    ]
    rows = [heights[i : i + columns] for i in range(0, len(heights), columns)]
    return min(16000, 220 + sum(max(row) + 16 for row in rows))


def missing_panels(panels: Mapping[str, Panel], required: Iterable[str]) -> list[str]:
    """Why each of the `required` panels does not show data (empty when all do)."""
    problems = []
    for name in required:
        panel = panels.get(name)
        if panel is None:
            problems.append(f"{name}: no such panel on the page")
        elif not panel.has_data:
            problems.append(f"{name}: {panel.marker_text or 'no data'}")
    return problems


def wait_for_panels(
    url: str,
    required: Iterable[str],
    *,
    seconds: float,
    interval: float = 10,
    check: Callable[[Mapping[str, Panel]], list[str]] | None = None,
    opener: Callable[[str], DashboardView] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[DashboardView, list[str]]:
    """Open the dashboard every `interval` s until the `required` panels all show data (and `check`,
    when given, finds nothing wrong in them) or `seconds` have passed (Prometheus scrapes every 15 s
    and rates need two samples): the last view, and what was still missing in it (empty on success)."""
    required = list(required)
    open_view = opener or open_dashboard
    deadline = clock() + seconds
    while True:
        view = open_view(url)
        missing = missing_panels(view.panels, required)
        if not missing and check is not None:
            missing = check(view.panels)
        if not missing or clock() + interval > deadline:
            return view, missing
        sleep(interval)


CERT_DAYS_ALERT = 21
"""Days left under which the certificate alert fires (visio-alerts.yml, CertificateExpiresSoon)."""


def _number(text: str) -> float | None:
    try:
        return float(text.split()[0])
    except (IndexError, ValueError):
        return None


def healthy_stack_problems(
    panels: Mapping[str, Panel], groups: Mapping[str, list[Mapping[str, Any]]], *, busy_sfu: str | None = None
) -> list[str]:
    """What the dashboard shows wrong for a healthy stack whose inventory groups are `groups`: every
    node of the inventory in its panels with a value, TURN reachable, one PostgreSQL leader with a
    synchronous standby, one Redis master, certificates not about to expire; and, when a meeting runs
    on `busy_sfu`, a room and two participants counted there. Empty when all is as expected."""
    names = {group: [str(host["name"]) for host in hosts or []] for group, hosts in groups.items()}
    problems = missing_panels(
        panels,
        ("sfu-rooms", "sfu-participants", "sfu-cpu", "turn", "turn-allocations", "db", "redis", "certs"),
    )
    if problems:
        return problems

    def values(panel: str, group: str) -> dict[str, list[str]]:
        shown = panels[panel].values
        for node in names.get(group, []):
            if not any(text != NO_DATA for text in shown.get(node, [])):
                problems.append(f"{panel}: no value for {node}")
        return shown

    rooms, participants = values("sfu-rooms", "sfu"), values("sfu-participants", "sfu")
    for node, texts in values("sfu-cpu", "sfu").items():
        cpu = _number(texts[0])
        if texts[0] != NO_DATA and (cpu is None or not 0 <= cpu <= 100):
            problems.append(f"sfu-cpu: {node} shows {texts[0]!r}")
    if busy_sfu is not None:
        if (_number(rooms.get(busy_sfu, ["-"])[0]) or 0) < 1:
            problems.append(f"sfu-rooms: no room counted on {busy_sfu}, where the meeting is: {rooms}")
        if (_number(participants.get(busy_sfu, ["-"])[0]) or 0) < 2:
            problems.append(f"sfu-participants: under 2 on {busy_sfu}, where the meeting is: {participants}")
        loss = panels.get("sfu-packet-loss")
        if loss is None or _number((loss.values.get(busy_sfu) or ["-"])[0]) is None:
            problems.append(f"sfu-packet-loss: no value for {busy_sfu}, where the meeting is")
    for node, texts in values("turn", "turn").items():
        if any(text != "up" for text in texts):
            problems.append(f"turn: {node} shows {texts}")
    for node, texts in values("turn-allocations", "turn").items():
        if texts[0] != NO_DATA and _number(texts[0]) is None:
            problems.append(f"turn-allocations: {node} shows {texts[0]!r}")
    db_roles = [texts[0] for texts in values("db", "db").values()]
    if db_roles.count("primary") != 1:
        problems.append(f"db: {db_roles.count('primary')} primaries ({db_roles})")
    if len(names.get("db", [])) > 1:
        if "sync standby" not in db_roles:
            problems.append(f"db: no synchronous standby ({db_roles})")
        lag = panels.get("db-lag")
        if lag is None or not lag.nodes_with_data():
            problems.append("db-lag: no replica shown")
    redis_roles = [texts[0] for texts in values("redis", "redis").values()]
    if redis_roles.count("master") != 1:
        problems.append(f"redis: {redis_roles.count('master')} masters ({redis_roles})")
    certs = panels["certs"].values
    for node in names.get("sfu", []) + names.get("turn", []):
        for text in certs.get(node, []) or ["none"]:
            days = _number(text)
            if days is None or days < CERT_DAYS_ALERT:
                problems.append(f"certs: {node} shows {text!r} (at least {CERT_DAYS_ALERT} d expected)")
    return problems
