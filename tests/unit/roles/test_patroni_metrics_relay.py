"""Patroni's /metrics relay (roles/postgresql): Patroni 3.0.2 writes `None` for a replica's timeline,
which makes Prometheus reject the whole scrape (found on the lab: both replicas' targets down,
`PostgresNoSynchronousStandby` firing on a healthy cluster). The rendered relay runs for real here,
in front of a local stand-in for Patroni's REST API; `promtool check metrics` judges both sides.
"""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from monitoring_support import render_role_template, tool

REPLICA_METRICS = """\
# HELP patroni_postgres_running Value is 1 if Postgres is running, 0 otherwise.
# TYPE patroni_postgres_running gauge
patroni_postgres_running{scope="lab"} 1
# HELP patroni_replica Value is 1 if this node is a replica, 0 otherwise.
# TYPE patroni_replica gauge
patroni_replica{scope="lab"} 1
# HELP patroni_postgres_timeline Postgres timeline of this node (if running), 0 otherwise.
# TYPE patroni_postgres_timeline counter
patroni_postgres_timeline{scope="lab"} None
# HELP patroni_xlog_received_location Received WAL location, 0 if this node is not a replica.
# TYPE patroni_xlog_received_location counter
patroni_xlog_received_location{scope="lab"} 83886080
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PARSE_ERROR = 1
"""`promtool check metrics` exit code for text Prometheus cannot parse (3 is lint advice only, such as
Patroni's counters without `_total`, which Prometheus scrapes fine)."""


def _check_metrics(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("promtool"), "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=30, check=False)


@pytest.fixture
def patroni():
    """A stand-in for a replica's Patroni REST API on 127.0.0.1 (port 0: any free port)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = REPLICA_METRICS.encode()
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def _start_relay(tmp_path: Path, patroni_port: int) -> tuple[subprocess.Popen[str], int]:
    port = _free_port()
    script = tmp_path / "visio-patroni-metrics"
    script.write_text(render_role_template("postgresql", "visio-patroni-metrics.py.j2", {
        "private_ip": "127.0.0.1",
        "postgresql_patroni_metrics_address": "127.0.0.1",
        "postgresql_patroni_metrics_port": port,
        "postgresql_patroni_rest_port": patroni_port,
        "postgresql_tls_cert": "",
    }), encoding="utf-8")
    relay = subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return relay, port
        except OSError:
            time.sleep(0.1)
    relay.kill()
    pytest.fail(f"the relay did not listen: {relay.stderr.read() if relay.stderr else ''}")


def test_patroni_output_is_rejected_and_the_relay_serves_it_parsable(tmp_path, patroni):
    rejected = _check_metrics(REPLICA_METRICS)
    assert rejected.returncode == PARSE_ERROR and "None" in rejected.stderr  # why the relay exists
    relay, port = _start_relay(tmp_path, patroni)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            served = answer.read().decode()
        with pytest.raises(urllib.error.HTTPError) as other:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
        assert other.value.code == 404
    finally:
        relay.kill()
    checked = _check_metrics(served)
    assert checked.returncode != PARSE_ERROR and "parsing error" not in checked.stderr, checked.stderr
    assert "patroni_postgres_timeline{" not in served  # the one sample with no number, dropped
    for kept in ('patroni_replica{scope="lab"} 1', 'patroni_xlog_received_location{scope="lab"} 83886080',
                 'patroni_postgres_running{scope="lab"} 1'):
        assert kept in served.splitlines()


def test_the_relay_answers_502_when_patroni_does_not(tmp_path):
    relay, port = _start_relay(tmp_path, _free_port())  # nothing listens on Patroni's port
    try:
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert failed.value.code == 502  # a scrape error (target down), never an empty success
    finally:
        relay.kill()
