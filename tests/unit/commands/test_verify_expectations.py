"""Pure parts of the verification suite: /proc/net parsing, expected listeners from the security
rules, sshd and nftables parsing, file-mode rules, and the runner's masking and per-host summary."""

from __future__ import annotations

import json
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from xml.sax.saxutils import quoteattr

import pytest

from tests.verify import expectations as ex
from visio_infra.commands.verify import (
    call_lines,
    encoded_forms,
    find_host,
    lynis_lines,
    mask,
    mask_file,
    mask_reports,
    read_call_reports,
    read_lynis_reports,
    render_summary,
    run_report_files,
    secret_values,
    summarise,
)
from visio_infra.model.security_rules import LIVEKIT_HTTP_PORT, REDIS_PORT, SENTINEL_PORT, TURN_PORT
from visio_infra.model.stack_file import load_stack_file, stack_file

ANY = "0.0.0.0"  # noqa: S104 (a wildcard listener as /proc/net reports it; nothing binds here)

PROC_TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   1: 0100007F:1EC8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1
   2: 4A004D0A:0016 0100000A:D431 01 00000000:00000000 00:00000000 00000000     0        0 3 1
"""
PROC_UDP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout
  10: 4A004D0A:0D96 00000000:0000 07 00000000:00000000 00:00000000 00000000   110        0 4 2
  11: 4A004D0A:C001 0100000A:0035 01 00000000:00000000 00:00000000 00000000   110        0 5 2
"""
PROC_TCP6 = """  sl  local_address remote_address st ...
   0: 00000000000000000000000000000000:01BB 00000000000000000000000000000000:0000 0A 0 0 0 0 0 1 1
"""


def _lab():
    config = load_stack_file(stack_file("lab"))
    inventory = {
        "groups": {
            "sfu": [{"name": "lab-sfu-1", "private_ip": "10.77.0.74", "public_ip": "10.77.0.74"}],
            "turn": [{"name": "lab-turn-1", "private_ip": "10.77.0.82", "public_ip": "10.77.0.82"}],
            "db": [{"name": "lab-db-1", "private_ip": "10.77.0.105", "public_ip": None}],
            "redis": [{"name": "lab-redis-1", "private_ip": "10.77.0.113", "public_ip": None}],
            "bastion": [],
        }
    }
    return config, inventory


def test_proc_net_listeners():
    tcp = ex.parse_proc_net(PROC_TCP, "tcp")
    assert [str(x) for x in tcp] == [f"tcp/{ANY}:22", "tcp/127.0.0.1:7880"]  # established one ignored
    udp = ex.parse_proc_net(PROC_UDP, "udp")
    assert [str(x) for x in udp] == ["udp/10.77.0.74:3478"]  # the connected DNS client socket is not
    assert [str(x) for x in ex.parse_proc_net(PROC_TCP6, "tcp6")] == ["tcp/[::]:443"]


def test_listener_plan_follows_security_rules():
    config, inventory = _lab()
    turn = ex.listener_plan(config, inventory, "turn")
    assert {("udp", TURN_PORT), ("tcp", TURN_PORT), ("tcp", 443), ("tcp", 5349), ("tcp", 22)} <= turn.required
    relay = config.ports.turn_relay_range
    assert ("udp", relay.start, relay.end) in turn.ranges
    redis = ex.listener_plan(config, inventory, "redis")
    assert redis.required == {
        ("tcp", 22), ("tcp", REDIS_PORT), ("tcp", SENTINEL_PORT), ("tcp", 9100), ("tcp", 9121)
    }
    # The exporters the roles install answer on the private address only.
    assert {("tcp", 9100), ("tcp", 9121)} <= redis.private_only
    db = ex.listener_plan(config, inventory, "db")
    assert {("tcp", 9100), ("tcp", 9187), ("tcp", 2381), ("tcp", 9547)} <= db.required & db.private_only
    assert ("tcp", 8008) in db.required  # Patroni's REST API, for the DB peers and the operators


def test_compare_listeners_names_missing_and_extra():
    config, inventory = _lab()
    plan = ex.listener_plan(config, inventory, "sfu")
    listeners = [
        ex.Listener("tcp", ANY, 22),
        ex.Listener("tcp", ANY, 443),
        ex.Listener("tcp", "10.77.0.74", config.ports.sfu_ice_tcp_port),
        ex.Listener("tcp", "10.77.0.74", LIVEKIT_HTTP_PORT),  # private only: allowed
        ex.Listener("tcp", "127.0.0.1", 6379),  # loopback: the node's business
        ex.Listener("udp", ANY, 50010),  # media range
        ex.Listener("tcp", "10.77.0.74", 9100),  # node exporter, private address
        ex.Listener("tcp", ANY, 8080),  # nobody asked for this
    ]
    missing, unexpected = ex.compare_listeners(listeners, plan, "10.77.0.74")
    assert missing == ["tcp/6789"]  # metrics not listening
    assert unexpected == [f"tcp/{ANY}:8080"]
    wildcard_api = [*listeners[:-1], ex.Listener("tcp", ANY, LIVEKIT_HTTP_PORT)]
    assert ex.compare_listeners(wildcard_api, plan, "10.77.0.74")[1] == [f"tcp/{ANY}:{LIVEKIT_HTTP_PORT}"]
    # A node exporter on a wildcard address is a fault, even behind the firewall.
    wildcard_exporter = [*listeners[:-2], ex.Listener("tcp", ANY, 9100)]
    assert ex.compare_listeners(wildcard_exporter, plan, "10.77.0.74") == (["tcp/6789"], [f"tcp/{ANY}:9100"])


def test_ssh_hardening_problems():
    good = ex.parse_sshd_t(
        "passwordauthentication no\nkbdinteractiveauthentication no\npermitemptypasswords no\n"
        "pubkeyauthentication yes\npermitrootlogin without-password\nx11forwarding no\nmaxauthtries 3\n"
    )
    assert ex.ssh_hardening_problems(good, 3) == []
    weak = dict(good, passwordauthentication="yes", maxauthtries="6")
    problems = ex.ssh_hardening_problems(weak, 3)
    assert any("passwordauthentication" in p for p in problems) and any("maxauthtries" in p for p in problems)

    facts = ex.role_facts()
    algorithms = ex.sshd_algorithms(facts)
    effective = dict(good, **{key: ",".join(want) for key, want in algorithms.items()})
    assert ex.ssh_hardening_problems(effective, 3, algorithms) == []
    with_ecdsa = dict(effective, hostkeyalgorithms="ecdsa-sha2-nistp256," + effective["hostkeyalgorithms"])
    problems = ex.ssh_hardening_problems(with_ecdsa, 3, algorithms)
    assert [p for p in problems if p.startswith("hostkeyalgorithms")], problems


SSH_AUDIT_SAMPLE = """\
# general
(gen) banner: SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3
(gen) compression: enabled (zlib@openssh.com)

# key exchange algorithms
(kex) sntrup761x25519-sha512@openssh.com -- [warn] using experimental algorithm
                                         `- [info] available since OpenSSH 8.5
(kex) ecdh-sha2-nistp256                 -- [fail] using weak elliptic curves
                                         `- [info] available since OpenSSH 5.7, Dropbear SSH 2013.62
(kex) diffie-hellman-group-exchange-sha256 (2048-bit) -- [info] available since OpenSSH 4.4
                                         `- [warn] 2048-bit modulus only
(kex) kex-strict-s-v00@openssh.com          -- [warn] unknown algorithm

# host-key algorithms
(key) ecdsa-sha2-nistp256                -- [fail] using weak elliptic curves
                                         `- [warn] using weak random number generator could reveal the key
(key) ssh-ed25519                        -- [info] available since OpenSSH 6.5

# message authentication code algorithms
(mac) umac-64-etm@openssh.com            -- [warn] using small 64-bit tag size
"""


def test_ssh_audit_findings_and_problems():
    findings = ex.ssh_audit_findings(SSH_AUDIT_SAMPLE)
    assert [(f.level, f.kind, f.name) for f in findings] == [
        ("warn", "kex", "sntrup761x25519-sha512@openssh.com"),
        ("fail", "kex", "ecdh-sha2-nistp256"),
        ("warn", "kex", "diffie-hellman-group-exchange-sha256"),
        ("warn", "kex", "kex-strict-s-v00@openssh.com"),
        ("fail", "key", "ecdsa-sha2-nistp256"),
        ("warn", "key", "ecdsa-sha2-nistp256"),
        ("warn", "mac", "umac-64-etm@openssh.com"),
    ]
    problems = ex.ssh_audit_problems(findings)
    # The explained warnings are dropped; failures and unexplained warnings stay.
    assert len(problems) == 5, problems
    assert not any("sntrup761" in p or "kex-strict" in p for p in problems)


def test_role_ssh_algorithms_pass_ssh_audit():
    """Every algorithm roles/common gives sshd, rated offline by Debian's ssh-audit (--lookup): no
    failure, and no warning but the explained ones."""
    facts = ex.role_facts()
    names = [name for want in ex.sshd_algorithms(facts).values() for name in want]
    done = subprocess.run(
        ["ssh-audit", "-n", f"--lookup={','.join(names)}"], capture_output=True, text=True, check=False
    )
    rated = {m.group(1) for m in re.finditer(r"^\((?:kex|key|enc|mac)\) (\S+)", done.stdout, re.MULTILINE)}
    assert set(names) <= rated, f"ssh-audit does not know {sorted(set(names) - rated)}: {done.stdout[-500:]}"
    assert ex.ssh_audit_problems(ex.ssh_audit_findings(done.stdout)) == []


def test_input_policy():
    ruleset = "table inet f {\n chain input {\n  type filter hook input priority filter; policy drop;\n"
    assert ex.input_policy(ruleset) == "drop"
    assert ex.input_policy(ruleset.replace("drop", "accept")) == "accept"
    assert ex.input_policy("table inet x { }") is None


def test_file_mode_rules():
    config, _ = _lab()
    rules = {r.path: r for r in ex.file_rules("sfu", {"livekit_user": "livekit"}, config)}
    keys = rules["/etc/livekit/keys.yaml"]
    assert ex.mode_problem(keys, "livekit", 0o600) is None
    assert "others" in ex.mode_problem(keys, "livekit", 0o604)
    assert "owned by root" in ex.mode_problem(keys, "root", 0o600)


def test_role_facts_resolve_simple_references(tmp_path: Path):
    (tmp_path / "roles" / "x" / "defaults").mkdir(parents=True)
    (tmp_path / "roles" / "x" / "vars").mkdir(parents=True)
    (tmp_path / "roles" / "x" / "defaults" / "main.yml").write_text("x_user: svc\nx_port: 5\n")
    (tmp_path / "roles" / "x" / "vars" / "main.yml").write_text(
        'x_dir: "/etc/{{ x_user }}"\nx_cond: "{{ a if b else c }}"\n'
    )
    facts = ex.role_facts(tmp_path)
    assert facts["x_dir"] == "/etc/svc" and facts["x_port"] == 5 and "x_cond" not in facts


def test_secret_values_and_mask():
    outputs = {
        "livekit_api_secret": "s" * 40,
        "redis_password": "r" * 40,
        "database_url": "postgresql://meet:pw-123456@10.0.0.1:5432/meet",
        "livekit_url": "wss://x",
    }
    values = secret_values(outputs)
    assert "pw-123456" in values and "wss://x" not in values
    assert mask(f"auth {'r' * 40} and pw-123456", values) == "auth ******** and ********"


def test_summary_groups_results_by_host(tmp_path: Path):
    junit = tmp_path / "j.xml"
    junit.write_text(
        "<testsuites><testsuite>"
        '<testcase classname="tests.verify.test_all" name="test_ssh_hardening[lab-sfu-1]"/>'
        '<testcase classname="tests.verify.test_turn" name="test_turn_listener[lab-turn-1-udp-3478]">'
        '<failure message="AssertionError: lab-turn-1 udp/3478: allocation refused">x</failure></testcase>'
        '<testcase classname="tests.verify.test_db" name="test_wrong_password_refused"/>'
        "</testsuite></testsuites>"
    )
    _, inventory = _lab()
    results = summarise(junit, inventory)
    assert results[("sfu", "lab-sfu-1")].passed == ["test_all::test_ssh_hardening"]
    assert results[("turn", "lab-turn-1")].failed[0][0] == "test_turn::test_turn_listener[udp-3478]"
    assert results[("db", "(all)")].passed == ["test_db::test_wrong_password_refused"]
    text = render_summary(results, 1.0)
    assert "1 check(s) FAILED" in text and "allocation refused" in text
    assert find_host("lab-sfu-10-x", {"lab-sfu-1": "sfu", "lab-sfu-10": "sfu"}) == "lab-sfu-10"


def test_summary_files_db_checks_under_the_db_role(tmp_path: Path):
    # test_db.py takes `primary`/`replicas` fixtures, so its testcases carry no host parameter.
    junit = tmp_path / "j.xml"
    junit.write_text(
        "<testsuites><testsuite>"
        '<testcase classname="tests.verify.test_db" name="test_replicas_stream_with_bounded_lag">'
        '<failure message="AssertionError: lab-db-2 not replicating">x</failure></testcase>'
        '<testcase classname="tests.verify.test_db" name="test_a_backup_exists"/>'
        '<testcase classname="tests.verify.test_db" name="test_some_db_check[lab-db-1]"/>'
        '<testcase classname="tests.verify.test_all" name="test_ssh_hardening[lab-db-1]"/>'
        '<testcase classname="tests.verify.test_all" name="test_stack_wide_thing"/>'
        "</testsuite></testsuites>"
    )
    _, inventory = _lab()
    results = summarise(junit, inventory)
    assert set(results) == {("db", "(all)"), ("db", "lab-db-1"), ("stack", "-")}
    assert results[("db", "(all)")].passed == ["test_db::test_a_backup_exists"]
    assert results[("db", "(all)")].failed == [
        ("test_db::test_replicas_stream_with_bounded_lag", "AssertionError: lab-db-2 not replicating")
    ]
    assert sorted(results[("db", "lab-db-1")].passed) == [
        "test_all::test_ssh_hardening",
        "test_db::test_some_db_check",
    ]
    assert results[("stack", "-")].passed == ["test_all::test_stack_wide_thing"]
    text = render_summary(results, 2.0)
    assert any(line.split()[:3] == ["db", "(all)", "FAILED"] for line in text.splitlines())
    # "(all)" is not a host: one host (lab-db-1) was checked.
    assert "5 checks on 1 hosts" in text


def test_summary_without_the_role_in_the_inventory_keeps_the_stack_heading(tmp_path: Path):
    junit = tmp_path / "j.xml"
    junit.write_text(
        '<testsuites><testcase classname="tests.verify.test_db" name="test_a_backup_exists"/></testsuites>'
    )
    results = summarise(junit, {"groups": {"sfu": [{"name": "lab-sfu-1"}]}})
    assert list(results) == [("stack", "-")]


DIRECT_CALL = {
    "mode": "direct",
    "url": "wss://10.77.0.74:443",
    "passed": True,
    "error": "",
    "first_video_ms": 1500.4,
    "video_frames": 10,
    "audio_frames": 38,
    "subscriber_pair": {
        "local": {
            "type": "host",
            "protocol": "udp",
            "address": "192.0.2.2",
            "port": 35629,
            "relay_protocol": "",
            "url": "",
        },
        "remote": {
            "type": "host",
            "protocol": "udp",
            "address": "10.77.0.74",
            "port": 50044,
            "relay_protocol": "",
            "url": "",
        },
    },
    "publisher_pair": {},
}
RELAY_CALL = {
    "mode": "relay",
    "passed": True,
    "error": "",
    "first_video_ms": 1615.5,
    "video_frames": 12,
    "subscriber_pair": {
        "local": {
            "type": "relay",
            "protocol": "udp",
            "address": "10.77.0.84",
            "port": 49629,
            "relay_protocol": "tcp",
            "url": "turn:10.77.0.84:3478?transport=tcp",
        },
        "remote": {"type": "srflx", "protocol": "udp", "address": "10.77.0.74", "port": 50098},
    },
}
FAILED_CALL = {
    "mode": "relay-tls",
    "passed": False,
    "error": "no relay candidate",
    "first_video_ms": None,
    "video_frames": 0,
    "subscriber_pair": {},
}


def test_call_lines_give_node_mode_pair_first_video_and_frames():
    lines = call_lines([("lab-sfu-2", FAILED_CALL), ("lab-sfu-1", RELAY_CALL), ("lab-sfu-1", DIRECT_CALL)])
    assert len(lines) == 3
    direct, relay, failed = lines
    assert direct.split()[:3] == ["lab-sfu-1", "direct", "ok"]
    assert "host/udp 192.0.2.2:35629 -> host/udp 10.77.0.74:50044" in direct
    assert "first video 1500 ms" in direct and "10 video frames" in direct
    assert relay.split()[:3] == ["lab-sfu-1", "relay", "ok"]
    assert "relay/udp 10.77.0.84:49629 (TURN tcp) -> srflx/udp 10.77.0.74:50098" in relay
    assert "first video 1616 ms" in relay and "12 video frames" in relay
    assert failed.split()[:3] == ["lab-sfu-2", "relay-tls", "FAILED"]
    assert "no candidate pair" in failed and "no video" in failed and "0 video frames" in failed
    assert all("\n" not in line for line in lines)
    text = render_summary({}, 1.0, lines)
    assert text.index("Calls") < text.index(direct) < text.index(relay) < text.index("0 checks")
    assert "Calls" not in render_summary({}, 1.0)


def test_read_call_reports_takes_the_node_from_the_file_name(tmp_path: Path):
    (tmp_path / "call-lab-sfu-1-direct.json").write_text(json.dumps(DIRECT_CALL), encoding="utf-8")
    (tmp_path / "call-ministry-sfu-a-3-relay-tls.json").write_text(json.dumps(FAILED_CALL), encoding="utf-8")
    (tmp_path / "call-lab-sfu-2-relay.json").write_text("{truncated", encoding="utf-8")
    (tmp_path / "summary.json").write_text("{}", encoding="utf-8")
    calls = dict(read_call_reports(tmp_path))
    assert set(calls) == {"lab-sfu-1", "ministry-sfu-a-3", "lab-sfu-2"}
    assert calls["lab-sfu-1"] == DIRECT_CALL
    assert calls["ministry-sfu-a-3"]["mode"] == "relay-tls"
    broken = calls["lab-sfu-2"]
    assert (
        broken["mode"] == "relay" and not broken["passed"] and "call-lab-sfu-2-relay.json" in broken["error"]
    )
    assert [line.split()[0] for line in call_lines(read_call_reports(tmp_path))] == [
        "lab-sfu-1",
        "lab-sfu-2",
        "ministry-sfu-a-3",
    ]


SECRET = 'pw&<"x\\y>42'
"""A secret with characters that XML, JSON and repr escape."""


def test_encoded_forms_cover_xml_json_and_repr_escaping():
    forms = encoded_forms([SECRET])
    assert SECRET in forms
    assert "pw&amp;&lt;&quot;x\\y&gt;42" in forms  # XML attribute
    assert 'pw&amp;&lt;"x\\y&gt;42' in forms  # XML text
    assert json.dumps(SECRET)[1:-1] in forms
    assert repr(SECRET)[1:-1] in forms
    assert [len(form) for form in forms] == sorted((len(form) for form in forms), reverse=True)
    assert encoded_forms([]) == []


def test_mask_file_rewrites_junit_xml_atomically_keeping_its_mode(tmp_path: Path):
    junit = tmp_path / "verify-lab.xml"
    message = f"AssertionError: redis answered with password {SECRET}"
    junit.write_text(
        "<testsuites><testsuite>"
        '<testcase classname="tests.verify.test_redis" name="test_password_required[lab-redis-1]">'
        f"<failure message={quoteattr(message)}>assert {SECRET!r} == ''</failure></testcase>"
        "</testsuite></testsuites>",
        encoding="utf-8",
    )
    junit.chmod(0o640)
    assert mask_file(junit, [SECRET]) is True
    text = junit.read_text(encoding="utf-8")
    assert "pw&amp;" not in text and "42" not in text and "x\\" not in text
    assert text.count("********") == 2
    assert oct(junit.stat().st_mode & 0o777) == oct(0o640)
    assert [p.name for p in tmp_path.iterdir()] == ["verify-lab.xml"]  # no temporary file left
    failure = ET.parse(junit).getroot().find(".//failure")  # noqa: S314 (our own fixture)
    assert failure is not None
    assert failure.get("message") == "AssertionError: redis answered with password ********"
    results = summarise(junit, _lab()[1])
    assert results[("redis", "lab-redis-1")].failed[0][1].endswith("password ********")


def test_mask_reports_masks_call_json_and_leaves_clean_files_alone(tmp_path: Path):
    report_dir = tmp_path / "verify-lab-20261128-000000"
    report_dir.mkdir()
    leaked = dict(FAILED_CALL, error=f"signalling refused key {SECRET}")
    call = report_dir / "call-lab-sfu-1-relay-tls.json"
    call.write_text(json.dumps(leaked, indent=2), encoding="utf-8")
    call.chmod(0o600)
    clean = report_dir / "call-lab-sfu-1-direct.json"
    clean.write_text(json.dumps(DIRECT_CALL, indent=2), encoding="utf-8")
    clean_inode = clean.stat().st_ino
    summary = report_dir / "summary.json"
    summary.write_text(json.dumps({"secret": SECRET}), encoding="utf-8")
    junit = tmp_path / "absent.xml"

    files = run_report_files(junit, report_dir)
    assert files == [junit, clean, call]
    assert mask_reports(files, [SECRET]) == [call]
    masked = json.loads(call.read_text(encoding="utf-8"))
    assert masked["error"] == "signalling refused key ********"
    assert masked["mode"] == "relay-tls" and masked["subscriber_pair"] == {}
    assert call.stat().st_mode & 0o777 == 0o600
    assert clean.stat().st_ino == clean_inode  # nothing to mask: not rewritten
    assert not junit.exists()
    assert json.loads(summary.read_text(encoding="utf-8")) == {"secret": SECRET}  # not the suite's
    assert mask_reports(files, [SECRET]) == []  # idempotent


def test_listener_plan_follows_the_role_design_for_redirects_and_exporters():
    config, inventory = _lab()
    variables = {"common_port_redirects": [{"comment": "t", "proto": "tcp", "port": 5349, "to_port": 443}]}
    plan = ex.listener_plan(config, inventory, "turn", variables, {"coturn-metrics": False})
    assert ("tcp", 5349) not in plan.required and ("tcp", 443) in plan.required
    assert ("tcp", 9641) not in plan.required
    served = [
        ex.Listener("tcp", ANY, 22),
        ex.Listener("tcp", ANY, 443),
        ex.Listener("tcp", ANY, TURN_PORT),
        ex.Listener("udp", ANY, TURN_PORT),
        ex.Listener("tcp", "10.77.0.82", 9100),
    ]
    assert ex.compare_listeners(served, plan, "10.77.0.82") == ([], [])
    # A process on the redirected port, or a metrics listener the role did not enable, is reported.
    extra = [*served, ex.Listener("tcp", ANY, 5349), ex.Listener("tcp", ANY, 9641)]
    missing, unexpected = ex.compare_listeners(extra, plan, "10.77.0.82")
    assert missing == []
    assert unexpected == [
        f"tcp/{ANY}:5349 (redirected to 443 by the host firewall)",
        f"tcp/{ANY}:9641 (coturn-metrics exporter is not enabled)",
    ]
    # With the exporter running its port is required again.
    enabled = ex.listener_plan(config, inventory, "turn", variables, {"coturn-metrics": True})
    assert ex.compare_listeners(served, enabled, "10.77.0.82")[0] == ["tcp/9641"]


def test_coturn_exporter_rule_matches_the_role():
    with_exporter = "  --prometheus  Enable prometheus metrics"
    assert ex.coturn_exporter_enabled("auto", with_exporter)
    assert not ex.coturn_exporter_enabled("auto", "  --no-cli")
    assert ex.coturn_exporter_enabled(True, "")
    assert not ex.coturn_exporter_enabled(False, with_exporter)


def test_role_defaults_drive_the_turn_plan():
    facts = ex.role_facts()
    assert str(facts["coturn_prometheus"]) == "auto"
    merged = ex.node_variables(facts, {"all": {"a": 1}, "turn": {"coturn_prometheus": "false"}}, "turn")
    assert merged["coturn_prometheus"] == "false" and merged["a"] == 1
    assert merged["common_ntp_pools"] == facts["common_ntp_pools"]


def test_time_service_only_where_the_node_owns_its_clock():
    assert ex.TIME_SERVICE not in ex.common_services(in_container=True)
    assert ex.TIME_SERVICE in ex.common_services(in_container=False)


def test_chrony_sources_and_their_sovereignty():
    from visio_infra.model.sovereignty import find_foreign_endpoints

    conf = "# managed\npool 0.fr.pool.ntp.org iburst\nserver ntp.example.gouv.fr iburst # RIE\nmakestep 1 3\n"
    assert ex.chrony_sources(conf) == ["0.fr.pool.ntp.org", "ntp.example.gouv.fr"]
    facts = ex.role_facts()
    defaults = "\n".join(f"pool {name} iburst" for name in facts["common_ntp_pools"])
    assert ex.chrony_sources(defaults) == facts["common_ntp_pools"]
    assert find_foreign_endpoints(defaults) == []
    assert find_foreign_endpoints("server time.google.com iburst") != []


def _testssl(**changes: tuple[str, str]) -> list[dict[str, str]]:
    """A testssl.sh `-p -s` JSON report of a hardened listener (the shape testssl 3.0.8 writes), with
    `changes` as id=(severity, finding)."""
    entries = {
        "engine_problem": ("WARN", "No engine or GOST support via engine with your /usr/bin/openssl"),
        "SSLv2": ("OK", "not offered"), "SSLv3": ("OK", "not offered"),
        "TLS1": ("INFO", "not offered"), "TLS1_1": ("INFO", "not offered"),
        "TLS1_2": ("OK", "offered"), "TLS1_3": ("OK", "offered with final"),
        "cipherlist_NULL": ("OK", "not offered"), "cipherlist_aNULL": ("OK", "not offered"),
        "cipherlist_EXPORT": ("OK", "not offered"), "cipherlist_LOW": ("OK", "not offered"),
        "cipherlist_3DES_IDEA": ("INFO", "not offered"), "cipherlist_AVERAGE": ("OK", "not offered"),
        "cipherlist_STRONG": ("OK", "offered"), "scanTime": ("INFO", "16"),
    }
    entries.update(changes)
    return [{"id": k, "ip": "10.77.0.74/10.77.0.74", "port": "443", "severity": s, "finding": f}
            for k, (s, f) in entries.items()]


def test_testssl_problems():
    assert ex.testssl_problems(_testssl()) == []
    # What the lab's listeners showed before the AEAD-only cipher lists: CBC suites offered.
    cbc = ex.testssl_problems(_testssl(cipherlist_AVERAGE=("LOW", "offered")))
    assert cbc == ["cipherlist_AVERAGE: offered"]
    tls10 = ex.testssl_problems(_testssl(TLS1=("LOW", "offered (deprecated)")))
    assert tls10 == ["TLS1: offered (deprecated)"]
    no_tls = ex.testssl_problems(_testssl(TLS1_2=("INFO", "not offered"), TLS1_3=("INFO", "not offered")))
    assert no_tls == ["neither TLS 1.2 nor TLS 1.3 offered"]
    medium = ex.testssl_problems(_testssl(BREACH=("MEDIUM", "potentially VULNERABLE")))
    assert medium == ["BREACH: potentially VULNERABLE (MEDIUM)"]
    failed = ex.testssl_problems([{"id": "scanProblem", "severity": "FATAL", "finding": "Can't connect"}])
    assert "the scan did not finish: Can't connect" in failed and len(failed) > 5


def test_tls_listeners():
    inventory = {"groups": {
        "sfu": [{"name": "s1", "private_ip": "10.0.0.1", "public_ip": "192.0.2.1"}],
        "turn": [{"name": "t1", "private_ip": "10.0.0.2", "public_ip": None}],
        "db": [{"name": "d1", "private_ip": "10.0.0.3"}],
        "redis": [{"name": "r1", "private_ip": "10.0.0.4"}],
    }}
    assert ex.tls_listeners(inventory) == [
        ("s1", "192.0.2.1", 443, None), ("t1", "10.0.0.2", 443, None), ("t1", "10.0.0.2", 5349, None),
        ("d1", "10.0.0.3", 5432, "postgres"),
    ]
    behind = dict(inventory, connection={"bastion": "192.0.2.9"})
    assert [port for *_, port, _ in ex.tls_listeners(behind)] == [443, 443, 5349]


def _monitored_inventory() -> dict:
    return {"groups": {
        "sfu": [{"name": "s1"}], "turn": [{"name": "t1"}], "db": [], "redis": [{"name": "r1"}],
        "bastion": [], "monitoring": [{"name": "m1"}],
    }}


def test_expected_targets_follow_the_role_jobs_and_the_inventory():
    expected = ex.expected_targets(ex.scrape_jobs(), _monitored_inventory())
    nodes = {node for (job, node) in expected if job == "node"}
    assert nodes == {"s1", "t1", "r1", "m1"}  # the node exporter everywhere, the monitoring node too
    assert ("livekit", "s1") in expected and ("redis", "r1") in expected
    assert not any(job in ("postgres", "patroni", "etcd") for job, _ in expected)  # no DB node
    assert expected[("turn", "t1")] == 2 and expected[("signalling", "s1")] == 1
    assert expected[("prometheus", "m1")] == 1


def test_target_problems_name_down_missing_and_unknown_targets():
    expected = {("node", "s1"): 1, ("turn", "t1"): 2, ("livekit", "s1"): 1}
    up = [
        {"labels": {"job": "node", "node": "s1"}, "health": "up"},
        {"labels": {"job": "turn", "node": "t1"}, "health": "up"},
        {"labels": {"job": "turn", "node": "t1"}, "health": "up"},
        {"labels": {"job": "livekit", "node": "s1"}, "health": "up"},
    ]
    assert ex.target_problems(up, expected) == []
    down = [*up[:3], {"labels": {"job": "livekit", "node": "s1"}, "health": "down",
                      "scrapeUrl": "http://10.0.0.1:6789/metrics", "lastError": "connection refused"}]
    assert ex.target_problems(down, expected) == [
        "livekit on s1 (http://10.0.0.1:6789/metrics): down connection refused"
    ]
    assert ex.target_problems(up[:2] + up[3:], expected) == ["turn on t1: 1 targets, expected 2"]
    stray = [*up, {"labels": {"job": "node", "node": "old-1"}, "health": "up"}]
    assert ex.target_problems(stray, expected) == ["node on old-1: not in the inventory"]


def test_prometheus_durations_single_and_compound():
    assert ex.duration_seconds("15s") == 15
    assert ex.duration_seconds("3h10m") == 3 * 3600 + 600
    assert ex.duration_seconds("26h15m") == 26 * 3600 + 900
    assert ex.duration_seconds("1d") == 86400
    for wrong in ("", "15", "2x", "1.5h"):
        with pytest.raises(ValueError, match="Prometheus duration"):
            ex.duration_seconds(wrong)


def test_prometheus_timestamps_with_nanoseconds_offsets_and_never():
    assert ex.prometheus_time("2026-12-02T13:23:39.123456789Z") == 1796217819.123456789
    assert ex.prometheus_time("2026-12-02T14:23:39+01:00") == 1796217819.0
    assert ex.prometheus_time("0001-01-01T00:00:00Z") < 0
    with pytest.raises(ValueError, match="RFC 3339"):
        ex.prometheus_time("yesterday")


def _target(url: str, scraped: str) -> dict:
    return {"scrapeUrl": url, "lastScrape": scraped, "labels": {"job": url[:4], "node": "n1"}}


def test_alerts_are_read_only_once_every_target_was_scraped_anew_and_every_group_evaluated_after():
    since = ex.prometheus_time("2026-12-02T13:00:00Z")
    before = [_target("http://a", "2026-12-02T12:59:55Z"), _target("http://b", "2026-12-02T13:00:03Z")]
    first = ex.first_scrapes_since(before, since, {})
    assert set(first) == {"http://b"}
    groups = [{"name": "visio-sfu", "lastEvaluation": "2026-12-02T13:00:10Z"}]
    assert ex.stale_for_alerts(before, groups, first) == ["target http on n1 not scraped yet"]

    later = [_target("http://a", "2026-12-02T13:00:12Z"), _target("http://b", "2026-12-02T13:00:18Z")]
    first = ex.first_scrapes_since(later, since, first)
    assert first["http://b"] == ex.prometheus_time("2026-12-02T13:00:03Z")  # the first one is kept
    # A group evaluated before a's first fresh scrape still holds a's old sample.
    assert ex.stale_for_alerts(later, groups, first) == ["rule group visio-sfu not evaluated since"]
    # Evaluated after a's first fresh scrape: b scraped again since does not matter.
    groups = [{"name": "visio-sfu", "lastEvaluation": "2026-12-02T13:00:15Z"}]
    assert ex.stale_for_alerts(later, groups, first) == []
    assert ex.stale_for_alerts([], groups, {}) == ["no target scraped yet"]


def test_firing_alerts_ignore_pending_ones():
    alerts = [
        {"labels": {"alertname": "TURNNodeDown", "node": "t1"}, "state": "firing",
         "annotations": {"summary": "TURN on t1 does not accept connections"}},
        {"labels": {"alertname": "SFUNodeDown", "node": "s1"}, "state": "pending"},
    ]
    assert ex.firing_alerts(alerts) == ["TURNNodeDown on t1: TURN on t1 does not accept connections"]
    assert ex.firing_alerts(alerts[1:]) == []


def test_exporter_checks_cover_every_role_with_ports_the_firewall_opens():
    from visio_infra.model.security_rules import METRICS_PORTS

    for role in ("sfu", "turn", "db", "redis", "bastion", "monitoring"):
        checks = ex.exporter_checks(role)
        assert checks[0].purpose == "node-metrics" and checks[0].unit == "prometheus-node-exporter"
        assert all(check.purpose in METRICS_PORTS[role] for check in checks)
    db = {c.purpose: c for c in ex.exporter_checks("db", {"postgresql_tls_cert": "PEM"})}
    assert set(db) == {"node-metrics", "postgres-metrics", "etcd-metrics", "patroni-metrics"}
    # Patroni's own /metrics is unparsable on replicas (3.0.2): the relay serves it, plain HTTP.
    assert db["patroni-metrics"].unit == "visio-patroni-metrics" and db["patroni-metrics"].ca_file is None
    assert ("visio_turn_allocations", None) in ex.exporter_checks("turn")[0].series


def test_metrics_problems_reads_values_with_and_without_labels():
    served = (
        "# HELP pg_up up\n# TYPE pg_up gauge\npg_up 1\n"
        'node_cpu_seconds_total{cpu="0",mode="idle"} 12.5\n'
        "redis_up 0\n"
    )
    assert ex.metric_values(served, "node_cpu_seconds_total") == [12.5]
    assert ex.metric_values(served, "pg") == []  # a name, not a prefix
    assert ex.metrics_problems(served, [("pg_up", 1.0), ("node_cpu_seconds_total", None)]) == []
    assert ex.metrics_problems(served, [("redis_up", 1.0), ("visio_turn_allocations", None)]) == [
        "redis_up is [0.0], want 1",
        "no visio_turn_allocations",
    ]


# --------------------------------------------------------------------------- Lynis and sysctl

ROOT = Path(__file__).resolve().parents[3]

LYNIS_REPORT = "\n".join((
    # Lines of a real report (lynis 3.0.8 on a Debian 12 node), long ones split where they are.
    '# Lynis Report',
    'report_version_major=1',
    'report_version_minor=0',
    'report_datetime_start=2026-12-03 06:16:13',
    'lynis_version=3.0.8',
    'os=Linux',
    'hostname=lab-redis-1',
    'suggestion[]=LYNIS|This release is more than 4 months old. Check the website or GitHub to see'
    ' if there is an update available.|-|-|',
    'suggestion[]=DEB-0810|Install apt-listbugs to display a list of critical bugs prior to each'
    ' APT installation.|-|-|',
    "suggestion[]=BOOT-5264|Consider hardening system services|Run '/usr/bin/systemd-analyze"
    " security SERVICE' for each service|-|",
    'warning[]=PKGS-7392|Found one or more vulnerable packages.|-|-|',
    'suggestion[]=PKGS-7392|Update your system with apt-get update, apt-get upgrade, apt-get'
    ' dist-upgrade and/or unattended-upgrades|-|-|',
    'vulnerable_package[]=libssl3',
    'vulnerable_package[]=openssl',
    'suggestion[]=SSH-7408|Consider hardening SSH configuration|MaxSessions (set 4 to 2)|-|',
    'details[]=SSH-7408|sshd|desc:sshd option MaxSessions;field:MaxSessions;prefval:2;value:4;|',
    'suggestion[]=KRNL-6000|One or more sysctl values differ from the scan profile and could be'
    ' tweaked||Change sysctl value or disable test (skip-test=KRNL-6000:<sysctl-key>)|',
    'hardening_index=80',
    'tests_executed=HRDN-7231|HRDN-7230|',
    '',
)) + "\n"


def test_lynis_report_reads_index_warnings_suggestions_and_pending_packages():
    report = ex.lynis_report(LYNIS_REPORT)
    assert report.hardening_index == 80 and report.version == "3.0.8"
    assert [str(w) for w in report.warnings] == ["PKGS-7392: Found one or more vulnerable packages."]
    assert [s.test for s in report.suggestions] == [
        "LYNIS", "DEB-0810", "BOOT-5264", "PKGS-7392", "SSH-7408", "KRNL-6000"
    ]
    assert report.suggestions[4].details == "MaxSessions (set 4 to 2)"
    assert report.suggestions[1].details == ""  # "-" is Lynis' "nothing"
    assert report.vulnerable_packages == ["libssl3", "openssl"]
    assert ex.lynis_report("").hardening_index is None
    assert ex.lynis_report("hardening_index=\n").hardening_index is None


def test_lynis_problems_index_below_minimum_and_unexplained_warnings_fail():
    report = ex.lynis_report(LYNIS_REPORT)
    assert ex.lynis_problems(report) == []  # 80 >= 80, PKGS-7392 explained
    assert ex.lynis_problems(report, minimum=81) == ["hardening index 80, want at least 81"]
    assert ex.lynis_problems(report, explained={}) == [
        "unexplained warning PKGS-7392: Found one or more vulnerable packages."
    ]
    other = LYNIS_REPORT + "warning[]=SSH-7412|sshd runs with an unknown option|-|-|\n"
    assert ex.lynis_problems(ex.lynis_report(other)) == [
        "unexplained warning SSH-7412: sshd runs with an unknown option"
    ]
    assert ex.lynis_problems(ex.lynis_report("warning[]=X|y|-|-|")) == [
        "Lynis gave no hardening index (the audit did not finish)", "unexplained warning X: y"
    ]


def test_every_explained_lynis_warning_is_explained_in_the_docs():
    docs = (ROOT / "docs" / "hardening.md").read_text(encoding="utf-8")
    assert ex.LYNIS_EXPLAINED_WARNINGS
    for test in ex.LYNIS_EXPLAINED_WARNINGS:
        assert test in docs, f"{test} is accepted by tests/verify/expectations.py, not explained in the docs"
    assert str(ex.LYNIS_MIN_HARDENING_INDEX) in docs


def test_lynis_skips_only_the_tests_explained_for_the_role_in_a_profile_of_its_own():
    redis = ex.lynis_command("redis")
    assert '--profile "$p"' in redis and 'rm -f "$f" "$p"' in redis
    for test in ex.LYNIS_SKIPPED_TESTS["redis"]:
        assert f"skip-test={test}\\n" in redis
    sfu = ex.lynis_command("sfu")
    assert "skip-test" not in sfu and '--report-file "$f"' in sfu
    figures = ex.lynis_figures("lab-redis-1", "redis", ex.lynis_report(LYNIS_REPORT), 1.0)
    assert set(figures["skipped_tests"]) == {"DBS-1884", "DBS-1886", "DBS-1888"}


def test_every_skipped_lynis_test_is_explained_in_the_docs():
    docs = (ROOT / "docs" / "hardening.md").read_text(encoding="utf-8")
    for role, tests in ex.LYNIS_SKIPPED_TESTS.items():
        for test, why in tests.items():
            assert test in docs, f"Lynis' {test} is skipped on {role} nodes, not explained in the docs"
            assert "test_" in why, f"{test}: say which verify check covers it instead"


def test_lynis_figures_lines_and_summary(tmp_path: Path):
    report = ex.lynis_report(LYNIS_REPORT)
    figures = ex.lynis_figures("lab-redis-1", "redis", report, 41.04)
    assert figures["hardening_index"] == 80 and figures["minimum"] == ex.LYNIS_MIN_HARDENING_INDEX
    assert figures["warnings"] == [
        {"test": "PKGS-7392", "text": "Found one or more vulnerable packages.", "explained": True}
    ]
    (tmp_path / "lynis-lab-redis-1.json").write_text(json.dumps(figures), encoding="utf-8")
    low = {**figures, "node": "lab-sfu-1", "role": "sfu", "hardening_index": 74, "vulnerable_packages": [],
           "warnings": [{"test": "FIRE-4512", "text": "x", "explained": False}]}
    (tmp_path / "lynis-lab-sfu-1.json").write_text(json.dumps(low), encoding="utf-8")
    (tmp_path / "lynis-lab-db-1.json").write_text("[1]", encoding="utf-8")
    lines = lynis_lines(read_lynis_reports(tmp_path))
    assert [line.split()[0] for line in lines] == ["lab-db-1", "lab-redis-1", "lab-sfu-1"]
    assert "no index" in lines[0] and "not a JSON object" in lines[0]
    assert lines[1] == (
        "lab-redis-1      redis      index 80 (>= 80: met); warnings: PKGS-7392 (2 packages with a pending "
        "security update), explained; 6 suggestions; 41.0 s"
    )
    assert "index 74 (>= 80: MISSED)" in lines[2] and "FIRE-4512, UNEXPLAINED" in lines[2]
    text = render_summary({}, 1.0, [], lines)
    assert text.index("Lynis") < text.index(lines[1]) < text.index("0 checks")
    assert "Lynis" not in render_summary({}, 1.0)
    junit = tmp_path / "j.xml"
    assert tmp_path / "lynis-lab-sfu-1.json" in run_report_files(junit, tmp_path)


SYSCTL_FILE = """# Ansible managed
# Network hardening, per network namespace (every node, containers included).
net.ipv4.conf.all.forwarding = 0
net.ipv4.conf.*.accept_redirects = 0
; old style comment
-net.ipv4.tcp_syncookies=1
net.ipv4.tcp_rmem = 4096\t131072   6291456
"""

SYSCTL_A = """net.ipv4.conf.all.accept_redirects = 0
net.ipv4.conf.all.forwarding = 0
net.ipv4.conf.default.accept_redirects = 0
net.ipv4.conf.host0.accept_redirects = 1
net.ipv4.conf.eth0/100.accept_redirects = 0
net.ipv4.conf.lo.accept_redirects = 0
net.ipv4.tcp_rmem = 4096\t131072\t6291456
net.ipv4.tcp_syncookies = 1
"""


def test_sysctl_file_settings_and_values():
    assert ex.sysctl_file_settings(SYSCTL_FILE) == {
        "net.ipv4.conf.all.forwarding": "0",
        "net.ipv4.conf.*.accept_redirects": "0",
        "net.ipv4.tcp_syncookies": "1",
        "net.ipv4.tcp_rmem": "4096 131072 6291456",
    }
    assert next(iter(ex.sysctl_file_settings(SYSCTL_FILE))) == "net.ipv4.conf.all.forwarding"
    assert ex.sysctl_values(SYSCTL_A)["net.ipv4.tcp_rmem"] == "4096 131072 6291456"


def test_sysctl_drift_names_each_interface_and_missing_settings():
    expected = ex.sysctl_file_settings(SYSCTL_FILE)
    actual = ex.sysctl_values(SYSCTL_A)
    assert ex.sysctl_drift(expected, actual) == ["net.ipv4.conf.host0.accept_redirects is 1, want 0"]
    actual["net.ipv4.conf.host0.accept_redirects"] = "0"
    assert ex.sysctl_drift(expected, actual) == []
    assert ex.sysctl_drift({"kernel.kptr_restrict": 2, "net.ipv6.conf.*.accept_redirects": 0}, actual) == [
        "kernel.kptr_restrict: no such setting", "net.ipv6.conf.*.accept_redirects: no such setting"
    ]
    assert ex.sysctl_drift({"net.ipv4.tcp_syncookies": 2}, actual) == ["net.ipv4.tcp_syncookies is 1, want 2"]


def test_sysctl_hardening_splits_the_network_namespace_from_the_kernel():
    """A container (the lab) can set its own network namespace's keys only: roles/common's network file
    holds nothing else, and the kernel-wide one is expected on VMs only."""
    facts = ex.role_facts()
    vm = ex.sysctl_hardening(facts, in_container=False)
    container = ex.sysctl_hardening(facts, in_container=True)
    netns, kernel = facts["common_sysctl_netns_file"], facts["common_sysctl_kernel_file"]
    assert list(container) == [netns] and list(vm) == [netns, kernel]
    assert all(re.match(r"^net\.ipv[46]\.", key) for key in vm[netns])
    assert not any(re.match(r"^net\.ipv[46]\.", key) for key in vm[kernel])
    assert vm[netns]["net.ipv4.conf.all.forwarding"] == "0"
    assert vm[netns]["net.ipv4.conf.*.accept_redirects"] == "0"
    assert vm[kernel]["kernel.kptr_restrict"] == "2" and vm[kernel]["fs.suid_dumpable"] == "0"


def test_sysctl_template_writes_forwarding_first_and_what_the_check_reads():
    """Setting `forwarding` resets accept_redirects: the role's file sets it before anything else,
    whatever the variable's order, and the verify check parses the file back to the same settings."""
    import jinja2

    # A sysctl file, not HTML: nothing to escape.
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)  # noqa: S701
    template = environment.from_string(
        (ROOT / "roles/common/templates/sysctl-hardening.conf.j2").read_text(encoding="utf-8")
    )
    settings = {"net.ipv4.conf.*.accept_redirects": 0, "net.ipv4.conf.all.forwarding": 0,
                "net.ipv6.conf.all.forwarding": 0, "net.ipv4.tcp_syncookies": 1}
    text = template.render(ansible_managed="Ansible managed", common_sysctl_scope="test",
                           common_sysctl_settings=settings)
    parsed = ex.sysctl_file_settings(text)
    assert list(parsed)[:2] == ["net.ipv4.conf.all.forwarding", "net.ipv6.conf.all.forwarding"]
    assert parsed == {key: str(value) for key, value in settings.items()}
