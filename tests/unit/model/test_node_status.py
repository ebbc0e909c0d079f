"""`visio status`'s pure part: probe output parsed per role, findings across the stack, the table."""

from __future__ import annotations

import json

from visio_infra.model.node_status import (
    NodeStatus,
    cert_days,
    cpu_percent,
    findings,
    metric_sums,
    parse_probe,
    probe_script,
    render_table,
    summary,
    turn_allocations,
)

CPU = (
    "### cpu\ncpu  100 0 100 800 0 0 0 0 0 0\ncpu  130 0 120 840 10 0 0 0 0 0\n"
    "### cores\n2\n### load\n0.42 0.30 0.20 1/200 999\n"
)


CERT = "### cert\nnow=1796169600\nnotAfter=Jan  4 00:00:00 2028 GMT\n"
"""Read on 2026-12-02 00:00 UTC: 398 days left."""


def _probe(role: str, body: str, services: str, cert: str = CERT) -> str:
    return CPU + "### services\n" + services + "\n" + body + ("\n" + cert if role != "redis" else "")


def test_cpu_is_the_busy_share_between_two_samples():
    # 100 jiffies passed, 50 of them idle or iowait: 50 % busy.
    assert cpu_percent("cpu  100 0 100 800 0 0 0 0\ncpu  130 0 120 840 10 0 0 0") == 50.0
    assert cpu_percent("cpu  100 0 100 800 0 0 0 0") is None
    assert cpu_percent("") is None


def test_metric_sums_add_samples_over_labels_and_skip_comments():
    text = (
        "# HELP livekit_room_total rooms\n# TYPE livekit_room_total gauge\n"
        'livekit_room_total{node_id="ND_a",node_type="MEDIA"} 2\n'
        'livekit_participant_total{node_id="ND_a",kind="a b"} 3\n'
        'livekit_participant_total{node_id="ND_b"} 4 1700000000000\n'
        "go_goroutines 57\n"
        "broken_line\n"
    )
    expected = {"livekit_room_total": 2.0, "livekit_participant_total": 7.0, "go_goroutines": 57.0}
    assert metric_sums(text) == expected


SS = """\
udp   UNCONN 0 0 10.77.0.84:3478 0.0.0.0:* users:(("turnserver",pid=90,fd=20))
udp   UNCONN 0 0 10.77.0.84:3478 0.0.0.0:* users:(("turnserver",pid=90,fd=21))
udp   UNCONN 0 0 10.77.0.84:5349 0.0.0.0:* users:(("turnserver",pid=90,fd=22))
udp   ESTAB  0 0 10.77.0.84:50001 10.77.0.74:40000 users:(("turnserver",pid=90,fd=40))
udp   UNCONN 0 0 10.77.0.84:61234 0.0.0.0:* users:(("turnserver",pid=90,fd=41))
tcp   LISTEN 0 5 10.77.0.84:3478 0.0.0.0:* users:(("turnserver",pid=90,fd=30))
tcp   LISTEN 0 5 10.77.0.84:5349 0.0.0.0:* users:(("turnserver",pid=90,fd=31))
tcp   LISTEN 0 5 [::1]:443 [::]:* users:(("turnserver",pid=90,fd=32))
tcp   ESTAB  0 0 10.77.0.84:443 192.0.2.7:51000 users:(("turnserver",pid=90,fd=33))
"""


def test_turn_allocations_are_udp_sockets_outside_the_listening_ports():
    assert turn_allocations(SS) == 2
    assert turn_allocations(SS.replace("50001", "3478").replace("61234", "5349")) == 0


def test_sfu_probe_reads_rooms_and_participants():
    body = "### livekit\nlivekit_room_total{node_id=\"x\"} 1\nlivekit_participant_total{node_id=\"x\"} 2\n"
    node = parse_probe("lab-sfu-1", "sfu", _probe("sfu", body, "livekit active\nnginx active"))
    assert node.reachable and node.cpu_percent == 50.0 and node.cores == 2 and node.load1 == 0.42
    assert node.services == {"livekit": "active", "nginx": "active"}
    assert node.figures == {"rooms": 1, "participants": 2, "cert_days": 398}
    assert "rooms 1, participants 2, cert 398 d" in render_table("lab", [node], "now")


def test_missing_figures_stay_unknown_never_zero():
    node = parse_probe("lab-sfu-1", "sfu", "### services\nlivekit failed\n")
    assert node.figures == {"rooms": None, "participants": None, "cert_days": None}
    assert node.cpu_percent is None and node.load1 is None
    assert "livekit!failed" in render_table("lab", [node], "now")
    assert "rooms ?, participants ?" in render_table("lab", [node], "now")


PATRONI = json.dumps([
    {"Member": "lab-db-1", "Host": "10.77.0.106", "Role": "Leader", "State": "running", "TL": 3},
    {"Member": "lab-db-2", "Host": "10.77.0.107", "Role": "Sync Standby", "State": "streaming",
     "Lag in MB": 0},
    {"Member": "lab-db-3", "Host": "10.77.0.108", "Role": "Replica", "State": "streaming", "Lag in MB": 12},
])


def _db(name: str, listing: str = PATRONI) -> NodeStatus:
    return parse_probe(name, "db", _probe("db", f"### patroni\n{listing}\n", "patroni active\netcd active"))


def _redis(name: str, info: str) -> NodeStatus:
    return parse_probe(name, "redis", _probe("redis", f"### redis\n# Replication\r\n{info}\n",
                                             "redis-server active\nredis-sentinel active"))


MASTER = "role:master\r\nconnected_slaves:2\r\n"
REPLICA = "role:slave\r\nmaster_host:10.77.0.116\r\nmaster_link_status:up\r\n"


def test_db_and_redis_probes_read_their_own_member():
    assert _db("lab-db-3").figures == {"patroni_role": "Replica", "patroni_state": "streaming", "lag_mb": 12,
                                       "cert_days": 398}
    assert _db("lab-db-1").figures["patroni_role"] == "Leader"
    assert _redis("lab-redis-1", MASTER).figures == {"redis_role": "master", "replicas": 2}
    assert _redis("lab-redis-2", REPLICA).figures == {"redis_role": "slave", "master_link": "up",
                                                     "master": "10.77.0.116"}


def test_a_healthy_stack_has_no_findings_and_says_so():
    nodes = [_db("lab-db-1"), _db("lab-db-2"), _db("lab-db-3"), _redis("lab-redis-1", MASTER),
             _redis("lab-redis-2", REPLICA)]
    assert findings(nodes) == []
    table = render_table("lab", nodes, "2026-12-01 00:00:00 UTC")
    assert "ok: every node read" in table
    assert "Sync Standby streaming, lag 0 MB" in table
    assert "replica of 10.77.0.116, link up" in table
    assert summary(nodes)["findings"] == []


def test_findings_name_what_is_wrong():
    no_leader = PATRONI.replace('"Leader"', '"Replica"')
    no_sync = PATRONI.replace('"Sync Standby"', '"Replica"')
    down_link = REPLICA.replace("up", "down")
    cases = {
        "PostgreSQL: 0 Patroni leaders": [_db("lab-db-1", no_leader), _db("lab-db-2", no_leader)],
        "no synchronous standby": [_db("lab-db-1", no_sync), _db("lab-db-2", no_sync)],
        "Redis: 2 masters": [_redis("lab-redis-1", MASTER), _redis("lab-redis-2", MASTER)],
        "lab-redis-2 not linked": [_redis("lab-redis-1", MASTER), _redis("lab-redis-2", down_link)],
        "lab-turn-1: not read (refused)": [NodeStatus("lab-turn-1", "turn", error="refused")],
        "lab-turn-2: coturn not active": [parse_probe("lab-turn-2", "turn", "### services\ncoturn failed\n")],
    }
    for expected, nodes in cases.items():
        found = findings(nodes)
        assert any(expected in item for item in found), (expected, found)
        assert f"! {found[0]}" in render_table("lab", nodes, "now")


def test_cert_days_are_whole_days_left_by_the_node_clock_and_unknown_when_not_read():
    assert cert_days("now=1796169600\nnotAfter=Jan  4 00:00:00 2028 GMT") == 398
    assert cert_days("now=1796169600\nnotAfter=Dec 20 12:00:00 2026 GMT") == 18
    assert cert_days("now=1796169600\nnotAfter=Nov 30 00:00:00 2026 GMT") == -2
    assert cert_days("now=1796169600\n") is None
    assert cert_days("now=1796169600\nnotAfter=garbage") is None


def test_a_certificate_near_its_end_or_not_read_is_a_finding():
    near = "### cert\nnow=1796169600\nnotAfter=Dec 20 12:00:00 2026 GMT\n"
    sfu = parse_probe("lab-sfu-1", "sfu", _probe("sfu", "", "livekit active\nnginx active", cert=near))
    (found,) = findings([sfu])
    assert found.startswith("lab-sfu-1: its TLS certificate ends in 18 days (renewal margin 30)")
    assert "`pulumi up`" in found
    unread = parse_probe("lab-turn-1", "turn", _probe("turn", "", "coturn active", cert="### cert\nnow=1\n"))
    assert findings([unread]) == ["lab-turn-1: the certificate of its TLS listener was not read"]
    stopped = parse_probe("lab-turn-1", "turn", _probe("turn", "", "coturn failed", cert=""))
    assert findings([stopped]) == ["lab-turn-1: coturn not active"]  # the cause, not its echo


def test_probe_scripts_read_only_what_their_role_has_and_never_carry_a_secret():
    redis = probe_script("redis", "10.77.0.116")
    assert "REDISCLI_AUTH=$(sed" in redis and "-h 10.77.0.116" in redis and "-a " not in redis
    assert "patronictl" in probe_script("db", "10.77.0.106") and "patronictl" not in redis
    assert "127.0.0.1:6789/metrics" in probe_script("sfu", "10.77.0.74")
    assert "turnserver" in probe_script("turn", "10.77.0.84")
    assert "systemctl is-active coturn.service" in probe_script("turn", "10.77.0.84")
    assert "openssl s_client -connect 10.77.0.84:443 2>" in probe_script("turn", "10.77.0.84")
    assert "-connect 10.77.0.106:5432 -starttls postgres" in probe_script("db", "10.77.0.106")
    assert "-connect 10.77.0.74:443 2>" in probe_script("sfu", "10.77.0.74")
    assert "openssl" not in redis


def _serve_alerts(alerts: list[dict]):
    """A local stand-in for Prometheus' /api/v1/alerts on 127.0.0.1 (port 0: any free port)."""
    import http.server
    import threading

    body = json.dumps({"status": "success", "data": {"alerts": alerts}}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            assert self.path == "/api/v1/alerts"
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _run_monitoring_probe(port: int) -> NodeStatus:
    """The monitoring node's probe script, really run (bash, python3) against the local stand-in."""
    import subprocess
    from dataclasses import replace

    from visio_infra.model.node_status import Ports

    script = probe_script("monitoring", "127.0.0.1", replace(Ports(), prometheus=port))
    script = script.replace("systemctl is-active prometheus.service", "echo active")
    script = script.replace("systemctl is-active prometheus-alertmanager.service", "echo active")
    out = subprocess.run(["bash", "-s"], input=script, capture_output=True, text=True, timeout=30,
                         check=False)
    return parse_probe("lab-monitoring-1", "monitoring", out.stdout)


def test_monitoring_probe_lists_firing_alerts_and_a_silent_prometheus_is_a_finding():
    firing = {"labels": {"alertname": "TURNNodeDown", "node": "lab-turn-1"}, "state": "firing"}
    pending = {"labels": {"alertname": "SFUNodeDown", "node": "lab-sfu-2"}, "state": "pending"}
    server = _serve_alerts([firing, pending])
    try:
        node = _run_monitoring_probe(server.server_address[1])
    finally:
        server.shutdown()
    assert node.services == {"prometheus": "active", "prometheus-alertmanager": "active"}
    assert node.figures == {"alerts_firing": ["TURNNodeDown lab-turn-1"]}
    assert findings([node]) == [
        "lab-monitoring-1: alerts firing: TURNNodeDown (lab-turn-1) (details: its /alerts page)"
    ]
    assert "alerts firing 1" in render_table("lab", [node], "now")

    quiet = _serve_alerts([pending])
    try:
        assert findings([_run_monitoring_probe(quiet.server_address[1])]) == []
    finally:
        quiet.shutdown()

    gone = _serve_alerts([])
    port = gone.server_address[1]
    gone.shutdown()
    gone.server_close()
    silent = _run_monitoring_probe(port)  # nothing listens any more: unknown, not "no alert"
    assert silent.figures == {"alerts_firing": None}
    assert findings([silent]) == ["lab-monitoring-1: Prometheus did not answer for its alerts"]
