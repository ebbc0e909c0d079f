"""The stack's dashboard (roles/monitoring consoles) served by a real Prometheus and opened in a real
headless Chromium, no lab needed.

Debian's `prometheus` runs on 127.0.0.1 (a free port, a temporary TSDB) with the role's console
files and alert rules, scraping a small local HTTP server that serves the series the stack's
exporters serve, under the role's job names and with the role's `node`/`role` target labels. The
page must show every panel with the values served, "no data" for a series that is absent (then
data once it appears), and a node without the series as a "no data" row. The screenshot goes to
reports/dashboard-unit.png.
"""

from __future__ import annotations

import http.server
import json
import re
import shlex
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from monitoring_support import ROLE, ROOT, RULES, inventory_for, render, role_defaults, tool

from visio_infra.model.stack_file import load_stack_file
from visio_infra.probes.dashboard import DashboardView, dashboard_url, healthy_stack_problems, open_dashboard

SCREENSHOT = ROOT / "reports" / "dashboard-unit.png"
DAY = 86400.0
HISTORY = 65 * 60
"""Seconds of history backfilled before the fake targets start (`Served.t0`)."""
SCRAPE_SECONDS = 5
"""This test's scrape interval, and so its scrape timeout: long enough for the fake targets to answer
on a loaded machine. A scrape that times out marks every series of its target stale, and the page
shows "no value" (seen with 1 s while the lab was converging on the same cores)."""

SFU = ("lab-sfu-1", "lab-sfu-2")
TURN = "lab-turn-1"
DB = ("lab-db-1", "lab-db-2", "lab-db-3")
REDIS = ("lab-redis-1", "lab-redis-2")
PRIMARY_WAL = 5_000_000_000
LAG_BYTES = 2_000_000

Value = Callable[[float], float]


def gauge(final: float, t0: float) -> Value:
    """A gauge at `final` from t0 on, rising to it over the hour before (a sparkline with a shape)."""
    return lambda t: final if t >= t0 else round(final * (1 - 0.6 * min(1.0, (t0 - t) / 3600)))


def counter(per_second: float, t0: float) -> Value:
    """A counter growing by `per_second` (continuous from the backfilled history to the live scrapes)."""
    return lambda t: 1000.0 + per_second * (t - (t0 - HISTORY))


def constant(value: float) -> Value:
    return lambda _t: value


class Served:
    """What the fake targets serve: per target (job, node, index), its series and their values over
    time; the target labels are the role's (`node`, `role`, the probed address as `instance`)."""

    def __init__(self) -> None:
        self.t0 = t0 = time.time()
        """The fake targets serve their final values from now on; the backfilled hour before it
        leads up to them. Set when the targets start (not at import: xdist may run this later)."""
        self.allocations = False
        self.series: dict[tuple[str, str, int], list[tuple[str, Value]]] = {}
        self.labels: dict[tuple[str, str, int], dict[str, str]] = {}
        self._add(
            "livekit",
            SFU[0],
            [
                ("livekit_room_total", gauge(3, t0)),
                ("livekit_participant_total", gauge(12, t0)),
                ('livekit_packet_total{direction="incoming",type="media"}', counter(100, t0)),
                # LiveKit's loss histogram (percent per observation): 2 % on average.
                ('livekit_packet_loss_percent_sum{direction="incoming",type="VIDEO"}', counter(2, t0)),
                ('livekit_packet_loss_percent_count{direction="incoming",type="VIDEO"}', counter(1, t0)),
            ],
        )
        # The second SFU node has no packet counters: its row says "no data".
        self._add(
            "livekit",
            SFU[1],
            [("livekit_room_total", gauge(5, t0)), ("livekit_participant_total", gauge(7, t0))],
        )
        for node, idle in ((SFU[0], 0.25), (SFU[1], 0.60)):  # 75 % and 40 % busy
            self._add(
                "node",
                node,
                [
                    (f'node_cpu_seconds_total{{cpu="{cpu}",mode="{mode}"}}', counter(share, t0))
                    for cpu in ("0", "1")
                    for mode, share in (("idle", idle), ("user", 1 - idle))
                ],
            )
        self._add("node", TURN, [("node_load1", constant(0.1))])  # visio_turn_allocations: see text()
        self._add("node", REDIS[1], [("visio_node_draining", constant(1))])  # NodeDraining fires at once
        for node, role, replayed in (
            (DB[0], "primary", 0),
            (DB[1], "sync", PRIMARY_WAL - LAG_BYTES),
            (DB[2], "replica", PRIMARY_WAL),
        ):
            self._add(
                "patroni",
                node,
                [
                    (f'{name}{{scope="visio",name="{node}"}}', constant(value))
                    for name, value in (
                        ("patroni_postgres_running", 1),
                        ("patroni_primary", int(role == "primary")),
                        ("patroni_replica", int(role != "primary")),
                        ("patroni_sync_standby", int(role == "sync")),
                        ("patroni_xlog_location", PRIMARY_WAL if role == "primary" else 0),
                        ("patroni_xlog_replayed_location", replayed),
                    )
                ],
            )
        for node, role in ((REDIS[0], "master"), (REDIS[1], "slave")):
            self._add(
                "redis",
                node,
                [("redis_up", constant(1)), (f'redis_instance_info{{role="{role}"}}', constant(1))],
            )
        # Probes (blackbox): the probed address is `instance`; TLS ones give the chain's expiry.
        self._add("turn", TURN, [("probe_success", constant(1))], instance="192.0.2.21:3478")
        self._add(
            "turn",
            TURN,
            [
                ("probe_success", constant(1)),
                ("probe_ssl_earliest_cert_expiry", constant(round(t0 + 40.5 * DAY))),
            ],
            instance="192.0.2.21:443",
        )
        self._add(
            "signalling",
            SFU[0],
            [
                ("probe_success", constant(1)),
                ("probe_ssl_earliest_cert_expiry", constant(round(t0 + 10.5 * DAY))),
            ],
            instance="https://192.0.2.11:443/",
        )

    def _add(self, job: str, node: str, series: list[tuple[str, Value]], instance: str = "") -> None:
        key = (job, node, sum(1 for k in self.series if k[:2] == (job, node)))
        self.series[key] = series
        role = node.split("-")[1]
        self.labels[key] = {"node": node, "role": role, "__metrics_path__": "/m/{}/{}/{}".format(*key)}
        if instance:
            self.labels[key]["instance"] = instance

    def text(self, path: str) -> str | None:
        """The exposition text of the target scraped at `path`, now."""
        match = re.fullmatch(r"/m/([a-z]+)/([a-z0-9-]+)/([0-9]+)", path)
        key = (match[1], match[2], int(match[3])) if match else None
        if key not in self.series:
            return None
        now = time.time()
        lines = [f"{name} {value(now):.6f}" for name, value in self.series[key]]
        if key == ("node", TURN, 0) and self.allocations:
            lines.append("visio_turn_allocations 4")
        return "\n".join(lines) + "\n"

    def history_times(self) -> list[int]:
        """When the backfilled samples are: every 15 s, and every SCRAPE_SECONDS (as the live scrapes
        of this test) over the last 6 minutes, so the [2m] and [5m] rates of the page see one
        interval, as on a real Prometheus (rate() extrapolates by the average interval)."""
        start, fine = int(self.t0) - HISTORY, int(self.t0) - 360
        return [*range(start, fine, 15), *range(fine, int(self.t0), SCRAPE_SECONDS)]

    def history(self, address: str) -> str:
        """The hour before t0 as OpenMetrics for `promtool tsdb create-blocks-from openmetrics`,
        with the labels Prometheus gives the scraped series (job, instance and the target's)."""
        samples: dict[str, list[str]] = {}
        for key, series in self.series.items():
            target = {"job": key[0], "instance": address, **self.labels[key]}
            target.pop("__metrics_path__")
            for name, value in series:
                metric, _, own = name.partition("{")
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(target.items()))
                for pair in filter(None, own.rstrip("}").split(",")):
                    # A scraped label a target label shadows is kept as exported_<name> (honor_labels
                    # false), as Prometheus does: redis_instance_info's `role` meets the target's.
                    key = pair.partition("=")[0]
                    labels += f",exported_{pair}" if key in target else f",{pair}"
                lines = samples.setdefault(metric, [])
                for t in self.history_times():
                    lines.append(f"{metric}{{{labels}}} {value(t):.6f} {t}")
        return "".join("\n".join(lines) + "\n" for _, lines in sorted(samples.items())) + "# EOF\n"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Served, str]]:
    state = Served()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = state.text(self.path)
            if body is None:
                self.send_error(404)
                return
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""Straight to the local Prometheus, whatever proxy the environment names."""


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with LOCAL.open(url, timeout=10) as answer:
        return list(json.load(answer)["data"]["result"])


def _wait_for(base: str, expr: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if _query(base, expr):
                return
        except OSError:  # not listening yet
            pass
        time.sleep(0.5)
    pytest.fail(f"Prometheus never had `{expr}` within {seconds:.0f} s")


def _role_flags(web: Path) -> list[str]:
    """Prometheus's command line as the role sets it (/etc/default/prometheus), with this test's
    configuration, address and directories in place of the host's."""
    config = load_stack_file(ROOT / "stacks" / "Pulumi.lab.yaml")
    text = render("prometheus.default.j2", config, inventory_for(config))
    [args] = [
        shlex.split(line.partition("=")[2])[0] for line in text.splitlines() if line.startswith("ARGS=")
    ]
    flags = dict(flag.partition("=")[::2] for flag in shlex.split(args))
    defaults = role_defaults()
    # The dashboard's directories are the ones the role installs the console files in.
    assert flags.pop("--web.console.templates") == defaults["monitoring_console_templates_dir"], flags
    assert flags.pop("--web.console.libraries") == defaults["monitoring_console_libraries_dir"], flags
    for local in ("--config.file", "--web.listen-address"):
        assert flags.pop(local), local
    flags.update(
        {
            "--web.console.templates": str(web / "consoles"),
            "--web.console.libraries": str(web / "console_libraries"),
        }
    )
    return [f"{name}={value}" for name, value in flags.items()]


def _install_consoles(web: Path) -> list[str]:
    """Install the console files as tasks/dashboard.yml does, into `web`; the files installed."""
    config = load_stack_file(ROOT / "stacks" / "Pulumi.lab.yaml")
    places = {
        "{{ monitoring_console_templates_dir }}": web / "consoles",
        "{{ monitoring_console_libraries_dir }}": web / "console_libraries",
    }
    for directory in places.values():
        directory.mkdir()
    installed = []
    for task in yaml.safe_load((ROLE / "tasks" / "dashboard.yml").read_text(encoding="utf-8")):
        for module in ("ansible.builtin.copy", "ansible.builtin.template"):
            if module not in task:
                continue
            where, _, name = task[module]["dest"].rpartition("/")
            dest = places[where] / name
            if module.endswith("copy"):
                shutil.copy(ROLE / "files" / task[module]["src"], dest)
            else:
                dest.write_text(render(task[module]["src"], config, inventory_for(config)), encoding="utf-8")
            installed.append(f"{dest.parent.name}/{name}")
    return installed


@pytest.fixture(scope="module")
def prometheus(served: tuple[Served, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    state, address = served
    work = tmp_path_factory.mktemp("prometheus")
    installed = _install_consoles(work)
    assert {"consoles/visio.html", "console_libraries/visio.lib", "console_libraries/visio-stack.lib"} <= set(
        installed
    ), installed
    (work / "history.om").write_text(state.history(address), encoding="utf-8")
    backfill = subprocess.run(
        [
            tool("promtool"),
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            "-q",
            str(work / "history.om"),
            str(work / "data"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert backfill.returncode == 0, backfill.stdout + backfill.stderr
    shutil.copy(RULES, work / "visio-alerts.yml")
    jobs: dict[str, list[dict[str, Any]]] = {}
    for key, labels in state.labels.items():
        jobs.setdefault(key[0], []).append({"targets": [address], "labels": labels})
    port = _free_port()
    config = {
        "global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "evaluation_interval": f"{SCRAPE_SECONDS}s"},
        "rule_files": [str(work / "visio-alerts.yml")],
        "scrape_configs": [
            {
                "job_name": "prometheus",
                "static_configs": [
                    {
                        "targets": [f"127.0.0.1:{port}"],
                        "labels": {"node": "lab-monitoring-1", "role": "monitoring"},
                    }
                ],
            },
            *({"job_name": job, "static_configs": targets} for job, targets in jobs.items()),
        ],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    log = (work / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            tool("prometheus"),
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            *_role_flags(work),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        # A few scrapes of every target, rates over several samples, and the rules evaluated.
        _wait_for(base, f"count(count_over_time(up[1m]) >= 5) >= {len(state.labels) + 1}", 120)
        _wait_for(base, 'ALERTS{alertname="NodeDraining",alertstate="firing"}')
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
        if process.returncode not in (0, -15):
            print((work / "prometheus.log").read_text())


def test_the_dashboard_uses_the_jobs_the_role_scrapes() -> None:
    """The jobs the page reads are the ones the role's prometheus.yml defines (so this test's fake
    targets look like the real ones)."""
    jobs = {job["name"] for job in role_defaults()["monitoring_scrape_jobs"]}
    template = (ROLE / "templates" / "prometheus.yml.j2").read_text(encoding="utf-8")
    probe_jobs = set(re.findall(r"\('[a-z_]+', '([a-z]+)', '[a-z_]+', '[a-z]+'", template))
    page = (ROLE / "files" / "consoles" / "visio.html").read_text(encoding="utf-8")
    used = set(re.findall(r'job=\\"([a-z_]+)\\"', page))
    assert used, "no job found in visio.html"
    assert used <= jobs | probe_jobs, used - jobs - probe_jobs
    assert set(Served().labels) and {k[0] for k in Served().labels} <= jobs | probe_jobs


def _number(text: str) -> float:
    return float(text.split()[0])


def test_every_panel_shows_what_prometheus_scraped(prometheus: str, served: tuple[Served, str]) -> None:
    state, _ = served
    tool("chromium")
    view = open_dashboard(dashboard_url(prometheus), SCREENSHOT)
    _show(view)
    panels = view.panels
    assert "lab" in view.title
    assert set(panels) == {
        "sfu-rooms",
        "sfu-participants",
        "sfu-cpu",
        "sfu-packet-loss",
        "turn",
        "turn-allocations",
        "db",
        "db-lag",
        "redis",
        "certs",
        "alerts",
    }

    # The TURN allocations are not served yet: that panel says "no data", every other one has data.
    assert not panels["turn-allocations"].has_data
    assert "no data" in panels["turn-allocations"].marker_text
    assert [p for p, panel in panels.items() if not panel.has_data] == ["turn-allocations"]

    assert panels["sfu-rooms"].values == {SFU[0]: ["3"], SFU[1]: ["5"]}
    assert panels["sfu-participants"].values == {SFU[0]: ["12"], SFU[1]: ["7"]}
    cpu = panels["sfu-cpu"].values
    assert abs(_number(cpu[SFU[0]][0]) - 75) <= 1 and abs(_number(cpu[SFU[1]][0]) - 40) <= 1, cpu
    assert panels["sfu-packet-loss"].values == {SFU[0]: ["2.0 %"], SFU[1]: ["no data"]}
    assert panels["turn"].values == {TURN: ["up", "up"]}
    assert panels["db"].values == {DB[0]: ["primary"], DB[1]: ["sync standby"], DB[2]: ["replica"]}
    assert panels["db-lag"].values == {DB[1]: [f"{LAG_BYTES / 1024**2:.4g}MiB"], DB[2]: ["0B"]}
    assert panels["redis"].values == {REDIS[0]: ["master"], REDIS[1]: ["replica"]}
    assert panels["certs"].values == {SFU[0]: ["10 d"], TURN: ["40 d"]}
    assert "wss://192.0.2.11:443" in panels["certs"].text and "turns://192.0.2.21:443" in panels["certs"].text
    assert "NodeDraining" in panels["alerts"].values.get(REDIS[1], []), panels["alerts"].text
    # A sparkline per node with data, with at least the current point.
    for panel in ("sfu-rooms", "sfu-participants", "sfu-cpu", "db-lag"):
        assert len(panels[panel].sparklines) == len(panels[panel].nodes_with_data()), panel
        assert all(points >= 1 for points in panels[panel].sparklines), panel
    assert SCREENSHOT.stat().st_size > 10_000

    # The series appears: the panel shows it at the next scrape.
    state.allocations = True
    _wait_for(prometheus, "visio_turn_allocations")
    panels = open_dashboard(dashboard_url(prometheus)).panels
    assert panels["turn-allocations"].has_data
    assert panels["turn-allocations"].values == {TURN: ["4"]}
    cpu = panels["sfu-cpu"].values  # rates stay right as live samples replace the backfilled ones
    assert abs(_number(cpu[SFU[0]][0]) - 75) <= 1 and abs(_number(cpu[SFU[1]][0]) - 40) <= 1, cpu
    # The lab test's judgement of the page, on this one: only the certificates are wrong (one ends
    # in 10 days, the second SFU node's endpoint is not probed).
    groups = {"sfu": SFU, "turn": (TURN,), "db": DB, "redis": REDIS}
    inventory_groups = {group: [{"name": name} for name in nodes] for group, nodes in groups.items()}
    assert healthy_stack_problems(panels, inventory_groups, busy_sfu=SFU[0]) == [
        f"certs: {SFU[0]} shows '10 d' (at least 21 d expected)",
        f"certs: {SFU[1]} shows 'none' (at least 21 d expected)",
    ]


def _show(view: DashboardView) -> None:
    for panel in view.panels.values():
        print(f"{panel.id:18} {panel.state:7} {panel.values} sparklines={panel.sparklines}")
