"""`visio upgrade` pure parts: reading the state, facts, timings, figures; the Redis/protobuf module."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest

from visio_infra.commands.upgrade import inputs_from_state
from visio_infra.hosts.rolling_upgrade import figures_lines, version_changes
from visio_infra.hosts.upgrade_runner import EventTap, UpgradeError, db_candidate, node_states
from visio_infra.model.rollout import NodeState, Plan, RolloutState, Step

ROOT_TEMPLATES = Path(__file__).resolve().parents[3] / "roles" / "livekit" / "templates"

ROOT = Path(__file__).resolve().parents[3]
MODULE = ROOT / "playbooks" / "library" / "visio_livekit_nodes.py"
spec = importlib.util.spec_from_file_location("visio_livekit_nodes", MODULE)
assert spec and spec.loader
nodes_module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(nodes_module)


# --------------------------------------------------------------------------- protobuf / RESP helpers


def varint(value: int) -> bytes:
    assert value >= 0, "negative varints are not used by these messages"
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, value: int | bytes | str, wire: int | None = None) -> bytes:
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return varint(number << 3 | 2) + varint(len(value)) + value
    if wire == 5:
        return varint(number << 3 | 5) + value.to_bytes(4, "little")
    if wire == 1:
        return varint(number << 3 | 1) + value.to_bytes(8, "little")
    return varint(number << 3) + varint(value)


def livekit_node(node_id: str, ip: str, state: int, updated_at: int, clients: int) -> bytes:
    stats = field(1, updated_at - 100) + field(2, updated_at) + field(3, 2) + field(4, clients)
    stats += field(7, 123456789, wire=1) + field(37, 1065353216, wire=5)  # fixed64 / float fields
    return (field(1, node_id) + field(2, ip) + field(3, 8) + field(4, stats) + field(5, 1)
            + field(6, state) + field(7, "fr-par"))


def test_decode_node_reads_id_ip_state_and_stats() -> None:
    now = 1_800_000_000
    node = nodes_module.decode_node(livekit_node("ND_abc", "10.77.0.74", 1, now - 2, 3), now)
    assert node["id"] == "ND_abc" and node["ip"] == "10.77.0.74"
    assert node["state"] == "SERVING" and node["num_clients"] == 3 and node["num_rooms"] == 2
    assert node["stats_age_seconds"] == 2 and node["available"] is True


def test_a_draining_or_stale_node_is_not_available() -> None:
    now = 1_800_000_000
    draining = nodes_module.decode_node(livekit_node("ND_a", "10.77.0.74", 2, now, 1), now)
    stale = nodes_module.decode_node(livekit_node("ND_b", "10.77.0.75", 1, now - 30, 0), now)
    assert draining["state"] == "SHUTTING_DOWN" and not draining["available"]
    assert stale["state"] == "SERVING" and not stale["available"]


def test_truncated_protobuf_is_an_error() -> None:
    with pytest.raises(ValueError, match="truncated"):
        nodes_module.proto_fields(field(1, "ND_abc")[:-2])


def test_resp_reader_parses_an_hgetall_reply() -> None:
    payload = livekit_node("ND_x", "10.0.0.1", 1, 1_800_000_000, 0)
    reply = b"*2\r\n$4\r\nND_x\r\n$%d\r\n%s\r\n" % (len(payload), payload)
    chunks = [reply[:7], reply[7:20], reply[20:], b""]
    reader = nodes_module.RespReader(lambda _size: chunks.pop(0))
    assert reader.reply() == [b"ND_x", payload]


def test_resp_error_and_command_encoding() -> None:
    reader = nodes_module.RespReader(lambda _size: b"-WRONGPASS invalid username-password pair\r\n")
    with pytest.raises(nodes_module.RedisError, match="WRONGPASS"):
        reader.reply()
    assert nodes_module.encode_command("HGETALL", "nodes") == b"*2\r\n$7\r\nHGETALL\r\n$5\r\nnodes\r\n"


# --------------------------------------------------------------------------- stack state, facts


def secret(value: object) -> dict[str, str]:
    return {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270",
            "plaintext": json.dumps(value)}


def _fake_sentinel(answers: list[bytes]) -> tuple[str, list[bytes]]:
    """A one-connection TCP server replying `answers` in turn; returns its address and what it read."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn, server:
            for answer in answers:
                received.append(conn.recv(4096))
                conn.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    return f"127.0.0.1:{server.getsockname()[1]}", received


def test_the_master_is_asked_of_the_sentinels_with_the_password() -> None:
    address, received = _fake_sentinel([b"+OK\r\n", b"*2\r\n$9\r\n10.0.0.12\r\n$4\r\n6379\r\n"])
    unreachable = "127.0.0.1:1"
    assert nodes_module.resolve_master([unreachable, address], "visio", "pw", timeout=2) == "10.0.0.12:6379"
    assert received[0] == nodes_module.encode_command("AUTH", "pw")
    assert received[1] == nodes_module.encode_command("SENTINEL", "get-master-addr-by-name", "visio")


def test_no_sentinel_naming_the_master_is_an_error() -> None:
    address, _ = _fake_sentinel([b"+OK\r\n", b"*-1\r\n"])
    with pytest.raises(nodes_module.RedisError, match="no master named visio"):
        nodes_module.resolve_master([address], "visio", "pw", timeout=2)


def test_inputs_come_from_the_host_configuration_resource_with_secrets_unwrapped() -> None:
    inventory = {"groups": {"sfu": [{"name": "lab-sfu-1", "private_ip": "10.77.0.74", "public_ip": None}]}}
    export = {"deployment": {"resources": [
        {"type": "pulumi:pulumi:Stack", "urn": "urn:pulumi:lab::visio::pulumi:pulumi:Stack::visio-lab"},
        {"type": "pulumi-python:dynamic/visio:HostConfiguration",
         "urn": "urn:pulumi:lab::visio::pulumi-python:dynamic/visio:HostConfiguration::lab-configuration",
         "inputs": {"inventory": inventory, "secrets": secret({"turn_shared_secret": "s" * 40}),
                    "certificates": secret({"ca_certificate": "-----BEGIN CERTIFICATE-----"})}},
    ]}}
    inputs = inputs_from_state(export)
    assert inputs.inventory == inventory
    assert inputs.secrets == {"turn_shared_secret": "s" * 40}
    assert inputs.certificates == {"ca_certificate": "-----BEGIN CERTIFICATE-----"}


def test_a_stack_without_configured_hosts_is_reported() -> None:
    with pytest.raises(UpgradeError, match="run `pulumi up` first"):
        inputs_from_state({"deployment": {"resources": []}})


def test_node_states_from_reported_facts() -> None:
    inventory = {"groups": {
        "sfu": [{"name": "sfu-1"}, {"name": "sfu-2"}],
        "db": [{"name": "db-1"}, {"name": "db-2"}],
        "redis": [{"name": "redis-1"}],
    }}
    facts = {
        "sfu-1": {"role": "sfu", "version": "1.13.4", "serving": "True", "load": "3"},
        "db-1": {"version": "15.18-0+deb12u1", "candidate": "15.20-0+deb12u1", "primary": True,
                 "serving": True},
        "db-2": {"version": "15.18-0+deb12u1", "candidate": "15.20-0+deb12u1", "primary": "False",
                 "serving": "True"},
    }
    nodes = {n.name: n for n in node_states(inventory, facts)}
    assert nodes["sfu-1"] == NodeState("sfu-1", "sfu", "1.13.4", True, load=3)
    # A host that reported nothing (unreachable) is unknown and out of service, never assumed fine.
    assert nodes["sfu-2"].version is None and not nodes["sfu-2"].serving
    assert nodes["db-1"].primary and not nodes["db-2"].primary
    assert "redis-1" not in nodes
    assert db_candidate(list(nodes.values())) == "15.20-0+deb12u1"


def test_version_changes_names_roles_whose_pin_moved() -> None:
    old = {"versions": {"livekit": "1.13.4", "coturn": "4.6.1-1", "postgresql": 15}}
    assert version_changes(old, {"versions": {**old["versions"], "livekit": "1.13.5"}}) == ["sfu"]
    assert version_changes(old, old) == []
    assert version_changes(old, {"versions": {**old["versions"], "coturn": "4.6.2-1"}}) == ["turn"]


def test_event_tap_keeps_facts_and_times_the_drain() -> None:
    tap = EventTap(None)
    tap({"event": "playbook_on_task_start", "event_data": {"task": "Send SIGTERM once (...)"}})
    time.sleep(0.05)
    tap({"event": "playbook_on_task_start", "event_data": {"task": "Wait for the node to drain (...)"}})
    time.sleep(0.1)
    tap({"event": "runner_on_ok",
         "event_data": {"task": "Wait for the node to drain (...)", "host": "sfu-1"}})
    tap({"event": "runner_on_ok", "event_data": {
        "task": "Report the node's upgrade facts", "host": "sfu-1",
        "res": {"visio_upgrade_node": {"version": "1.13.4"}}}})
    tap({"event": "runner_on_failed", "event_data": {
        "task": "Stop here when the deadline passed", "host": "sfu-1",
        "res": {"msg": "drain deadline passed: sfu-1 still hosts\n 2 participant(s) after 20 s."}}})
    tap({"event": "runner_on_failed",
         "event_data": {"task": "Ignored", "host": "sfu-1", "ignore_errors": True}})
    assert tap.failures == ["sfu-1: Stop here when the deadline passed: drain deadline passed: "
                            "sfu-1 still hosts 2 participant(s) after 20 s."]
    span = tap.span(("Send SIG", "Wait for the node"), ("Wait for the node",))
    assert span is not None and 0.1 <= span < 1
    assert tap.facts == {"sfu-1": {"version": "1.13.4"}}
    assert tap.span(("Nope",), ("Wait",)) is None


def test_figures_lines_for_the_benchmark() -> None:
    plan = Plan((Step("sfu", "sfu-1", "1.13.4", "1.13.5"), Step("sfu", "sfu-2", "1.13.4", "1.13.5")), ())
    state = RolloutState.start("lab", {"sfu": "1.13.5"}, plan, "t")
    state.steps[0].status, state.steps[0].drain_seconds, state.steps[0].seconds = "done", 61.2, 95.0
    state.status, state.total_seconds = "stopped", 120.5
    lines = figures_lines(state)
    assert lines[0] == ("UPGRADE-FIGURE stack=lab role=sfu node=sfu-1 from=1.13.4 to=1.13.5 status=done "
                        "drain_seconds=61.2 node_seconds=95.0")
    assert lines[-1] == "UPGRADE-FIGURE stack=lab total_seconds=120.5 status=stopped nodes=1"
    assert len(lines) == 2  # the pending node has no figure


def test_turn_drain_ruleset_rejects_only_new_turn_clients():
    """The drain table must never reject anything but new TURN clients: nft ends a rule at the line
    break, so a verdict split onto its own line would reject all traffic (SSH included)."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    from visio_infra.hosts.rolling_upgrade import ROOT

    env = Environment(  # noqa: S701 (an nftables ruleset, not HTML)
        loader=FileSystemLoader(ROOT / "playbooks" / "templates"), undefined=StrictUndefined
    )
    text = env.get_template("coturn-drain.nft.j2").render(
        visio_turn_port=3478, visio_turns_port=443, visio_client_idle_seconds=15
    )
    body = text[text.index("chain input {") :].splitlines()[1:]
    rules = [line.strip() for line in body if line.strip() and line.strip() != "}"]
    assert rules[0].startswith("type filter hook input") and "policy accept" in rules[0]
    assert rules[1:] == [
        'udp dport 3478 ct state new reject comment "visio drain"',
        'tcp dport { 3478, 443 } ct state new reject with tcp reset comment "visio drain"',
        "udp dport 3478 update @udp_clients { ip saddr . udp sport }",
        "udp dport 3478 update @udp6_clients { ip6 saddr . udp sport }",
    ]
    assert text.count("timeout 15s") == 2


def _front(front: str, out: list[str], sfu: tuple[str, ...] = ("sfu-1", "sfu-2", "sfu-3")) -> list[str]:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    from visio_infra.hosts.rolling_upgrade import ROOT

    env = Environment(  # noqa: S701 (an nginx configuration, not HTML)
        loader=FileSystemLoader(ROOT / "roles" / "livekit" / "templates"), undefined=StrictUndefined
    )
    env.filters["difference"] = lambda a, b: [x for x in a if x not in b]  # Ansible's filter
    hostvars = {name: {"private_ip": f"10.0.0.{i}"} for i, name in enumerate(sfu, start=1)}
    text = env.get_template("nginx-livekit-upstream.conf.j2").render(
        ansible_managed="managed", livekit_front_host=front, livekit_front_out=out,
        livekit_sfu_hosts=list(sfu), hostvars=hostvars, livekit_http_port=7880,
        livekit_front_fail_timeout_seconds=10,
    )
    return [line.strip() for line in text.splitlines() if line.strip().startswith(("upstream", "server"))]


def test_front_sends_to_its_own_livekit_first_and_to_the_peers_as_backup():
    assert _front("sfu-2", []) == [
        "upstream livekit_signalling {",
        "server 127.0.0.1:7880 max_fails=0;",
        "server 10.0.0.1:7880 max_fails=1 fail_timeout=10s backup;",
        "server 10.0.0.3:7880 max_fails=1 fail_timeout=10s backup;",
        "upstream livekit_peers {",
        "server 10.0.0.1:7880 max_fails=1 fail_timeout=10s;",
        "server 10.0.0.3:7880 max_fails=1 fail_timeout=10s;",
    ]


def test_a_drained_node_is_out_of_its_own_front_and_its_peers():
    own = _front("sfu-2", ["sfu-2"])
    assert own[1] == "server 127.0.0.1:7880 max_fails=0 down;"
    peer = _front("sfu-1", ["sfu-2"])
    assert "server 10.0.0.2:7880 max_fails=1 fail_timeout=10s backup down;" in peer
    assert "server 10.0.0.2:7880 max_fails=1 fail_timeout=10s down;" in peer
    assert peer[1] == "server 127.0.0.1:7880 max_fails=0;"


def test_a_single_node_front_keeps_its_only_livekit():
    lines = _front("sfu-1", ["sfu-1"], sfu=("sfu-1",))
    assert lines[1] == "server 127.0.0.1:7880 max_fails=0;"
    assert lines[-1] == "server 127.0.0.1:7880 down;"


def test_a_livekit_504_is_answered_not_retried_at_a_peer():
    """A 504 is LiveKit's own answer (the room's node did not reply): counting it as a failure
    took the front's own LiveKit out for fail_timeout and, with a dead peer, every join got 502."""
    text = (ROOT_TEMPLATES / "nginx-livekit.conf.j2").read_text()
    main = text.split("location / {", 1)[1]
    retried = next(line for line in main.splitlines() if "proxy_next_upstream " in line)
    assert "http_502" in retried and "http_503" in retried
    assert "http_504" not in retried
