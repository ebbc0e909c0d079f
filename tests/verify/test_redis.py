"""Redis (LiveKit's routing store): password required, bound to the private address, reachable from
SFU nodes with LiveKit's own credentials, refused from every other node and from outside; Sentinel
on every node, password required, a reachable quorum, all Sentinels agreeing on one master, which
has every other node as a connected replica; every LiveKit node registered in it."""

from __future__ import annotations

import json
import shlex
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

from visio_infra.hosts.ansible_vars import REDIS_PORT
from visio_infra.model.node_status import REDIS_AUTH
from visio_infra.model.security_rules import REDIS_SENTINEL_MASTER_NAME, SENTINEL_PORT

from . import expectations as ex

ROLES = ("redis",)

# Runs on an SFU node: speak RESP to Redis with the password LiveKit is configured with (read from
# LiveKit's own config there, so the secret never leaves the node nor appears on a command line).
SFU_CLIENT = r"""
import json, re, socket, sys
text = open(sys.argv[1]).read()
section = text.split("\nredis:", 1)[1]
password = json.loads(re.search(r"^\s+password:\s*(.+)$", section, re.M).group(1))
def talk(*commands):
    with socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=5) as s:
        out = []
        for cmd in commands:
            args = "".join("$%d\r\n%s\r\n" % (len(a.encode()), a) for a in cmd)
            s.sendall(("*%d\r\n" % len(cmd) + args).encode())
            out.append(s.recv(256).decode().split("\r\n")[0])
        return out
print(json.dumps({"anonymous": talk(["PING"]), "wrong": talk(["AUTH", password + "x"]),
                  "livekit": talk(["AUTH", password], ["PING"])}))
"""

PROBE_CONNECT = (
    "import socket,sys\n"
    "try:\n"
    "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close(); print('open')\n"
    "except OSError as e:\n"
    "    print('closed', type(e).__name__)\n"
)


def _python(host, code: str, *args: str):
    return host.run("python3 -c " + shlex.quote(code) + " " + " ".join(shlex.quote(a) for a in args))


def test_bound_to_private_address_only(node):
    listeners = ex.parse_proc_net(node.host.file("/proc/net/tcp").content_string, "tcp")
    listeners += ex.parse_proc_net(node.host.file("/proc/net/tcp6").content_string, "tcp6")
    exposed = {item.address for item in listeners if item.port == REDIS_PORT and not item.loopback}
    assert exposed == {node.private_ip}, (
        f"{node}: Redis listens on {sorted(exposed)}, want {node.private_ip} only"
    )


def test_password_required_and_livekit_credentials_work_from_sfu_nodes(node, hosts_of, facts):
    config_path = f"{facts.get('livekit_config_dir', '/etc/livekit')}/config.yaml"
    for sfu in hosts_of("sfu"):
        result = _python(sfu.host, SFU_CLIENT, config_path, node.private_ip, str(REDIS_PORT))
        assert result.rc == 0, f"{sfu} -> {node}: Redis client failed: {result.stderr.strip()[-300:]}"
        answers = json.loads(result.stdout)
        assert answers["anonymous"][0].startswith("-NOAUTH"), (
            f"{sfu} -> {node}: PING without a password answered {answers['anonymous'][0]!r}"
        )
        assert answers["wrong"][0].startswith("-WRONGPASS") or answers["wrong"][0].startswith("-ERR"), (
            f"{sfu} -> {node}: a wrong password answered {answers['wrong'][0]!r}"
        )
        assert answers["livekit"] == ["+OK", "+PONG"], (
            f"{sfu} -> {node}: LiveKit's Redis password gave {answers['livekit']}"
        )


def test_dangerous_commands_are_renamed_or_disabled(node):
    """CONFIG under its own name, FLUSHALL, FLUSHDB, DEBUG and SHUTDOWN are unknown even with the
    password (roles/redis renames CONFIG for Sentinel only; Lynis' DBS-1886 cannot see it, as it reads
    redis.conf and not its include: docs/hardening.md)."""
    for command in ("CONFIG", "FLUSHALL", "FLUSHDB", "DEBUG", "SHUTDOWN"):
        args = ("CONFIG", "GET", "maxmemory") if command == "CONFIG" else (command,)
        answer = _cli(node, REDIS_PORT, *args)
        assert answer.startswith("ERR unknown command"), f"{node}: {command} answered {answer[:120]!r}"


def _assert_closed_from(sources, node, port: int, what: str, source_role: str) -> None:
    """Connect to node:port from every source host at once: a dropped SYN costs the probe's whole
    3 s timeout, so probing the sources one after the other made each check wait 3 s per source."""
    with ThreadPoolExecutor(max_workers=max(1, len(sources))) as pool:
        probes = [pool.submit(_python, o.host, PROBE_CONNECT, node.private_ip, str(port)) for o in sources]
        results = [probe.result() for probe in probes]
    for other, result in zip(sources, results, strict=True):
        assert result.rc == 0, f"{other}: probe failed: {result.stderr.strip()[-200:]}"
        assert result.stdout.startswith("closed"), f"{other} ({source_role}) can open {what} on {node}"


@pytest.mark.parametrize("source_role", ["turn", "db"])
def test_refused_from_nodes_that_are_not_sfu(node, hosts_of, source_role):
    _assert_closed_from(hosts_of(source_role), node, REDIS_PORT, "Redis", source_role)


@pytest.mark.parametrize("port", [REDIS_PORT, SENTINEL_PORT], ids=["redis", "sentinel"])
def test_refused_from_outside_or_password_bound_for_meet(node, config, port):
    """From the operator's machine: refused, unless this machine is in Meet's app range (the lab's
    host stands in for the Meet backend, as in the DB suite), where it must still need the password."""
    import ipaddress

    try:
        sock = socket.create_connection((node.private_ip, port), timeout=3)
    except OSError:
        return
    with sock:
        source = ipaddress.ip_address(sock.getsockname()[0])
        if source not in config.network.app_cidr:
            pytest.fail(f"{node}: {node.private_ip}:{port} is open to {source}, outside the SFU group and "
                        f"Meet's app range {config.network.app_cidr}")
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        answer = sock.recv(256).decode(errors="replace")
    assert answer.startswith("-NOAUTH"), f"{node}: PING on {port} from Meet's range answered {answer!r}"


# --------------------------------------------------------------------------- Sentinel

# The password is read on the node from its own Redis config into redis-cli's environment: it never
# appears on a command line (not in `ps`, not in the test ids) nor leaves the node (the same
# REDIS_AUTH as `visio status`).


def _cli(node, port: int, *args: str) -> str:
    command = (f"{REDIS_AUTH} redis-cli --no-auth-warning -h {node.private_ip} -p {port} "
               + " ".join(shlex.quote(a) for a in args))
    result = node.host.run(command)
    assert result.rc == 0, f"{node}: redis-cli {args[0]} failed: {result.stderr.strip()[-300:]}"
    return result.stdout.replace("\r", "").strip()


def _info_replication(node) -> dict[str, str]:
    text = _cli(node, REDIS_PORT, "INFO", "replication")
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))


@pytest.fixture(scope="module")
def redis_nodes(hosts_of):
    nodes = hosts_of("redis")
    assert len(nodes) >= 3, f"Sentinel needs three Redis nodes, the inventory has {len(nodes)}"
    return nodes


def test_sentinel_requires_the_password(node):
    result = node.host.run(f"redis-cli -h {node.private_ip} -p {SENTINEL_PORT} PING")
    assert "NOAUTH" in result.stdout, f"{node}: Sentinel answered PING without a password: {result.stdout!r}"


def test_sentinel_quorum_is_reachable(node, redis_nodes):
    answer = _cli(node, SENTINEL_PORT, "SENTINEL", "CKQUORUM", REDIS_SENTINEL_MASTER_NAME)
    assert answer.startswith(f"OK {len(redis_nodes)} usable Sentinels"), f"{node}: CKQUORUM: {answer}"


@pytest.mark.parametrize("source_role", ["turn", "db"])
def test_sentinel_refused_from_nodes_that_are_not_sfu(node, hosts_of, source_role):
    _assert_closed_from(hosts_of(source_role), node, SENTINEL_PORT, "Sentinel", source_role)


def test_sentinels_agree_on_one_master_with_every_other_node_replicating(redis_nodes):
    answers = {
        n.name: _cli(n, SENTINEL_PORT, "SENTINEL", "get-master-addr-by-name", REDIS_SENTINEL_MASTER_NAME)
        .splitlines()[0]
        for n in redis_nodes
    }
    assert len(set(answers.values())) == 1, f"the Sentinels disagree on the master: {answers}"
    master_ip = next(iter(answers.values()))
    master = next((n for n in redis_nodes if n.private_ip == master_ip), None)
    assert master is not None, f"the Sentinels name {master_ip}, not a Redis node of the inventory"
    info = _info_replication(master)
    assert info.get("role") == "master", f"{master} is the Sentinels' master but reports {info.get('role')}"
    replicas = {
        value.split("ip=")[1].split(",")[0]: value
        for key, value in info.items() if key.startswith("slave") and key[5:].isdigit()
    }
    expected = {n.private_ip for n in redis_nodes if n is not master}
    assert int(info.get("connected_slaves", 0)) == len(expected) and set(replicas) == expected, (
        f"{master}: replicas {sorted(replicas)}, want {sorted(expected)}"
    )
    assert all("state=online" in value for value in replicas.values()), f"{master}: {replicas}"
    for other in redis_nodes:
        if other is master:
            continue
        theirs = _info_replication(other)
        state = (theirs.get("role"), theirs.get("master_host"), theirs.get("master_link_status"))
        assert state == ("slave", master.private_ip, "up"), f"{other}: role, master, link = {state}"


LIVEKIT_NODES = """
import json, re, sys
password = re.search(r'^requirepass "(.*)"$', open("/etc/redis/visio-redis.conf").read(), re.M).group(1)
print(json.dumps(list_nodes(sys.argv[1], password)))
"""


def test_every_livekit_node_is_registered_and_serving(redis_nodes, hosts_of):
    """LiveKit's `nodes` hash on the master (read with the upgrade playbooks' own decoder, on the master
    itself): every SFU node SERVING with fresh stats, so rooms can be placed on each."""
    from pathlib import Path

    master_ip = _cli(redis_nodes[0], SENTINEL_PORT, "SENTINEL", "get-master-addr-by-name",
                     REDIS_SENTINEL_MASTER_NAME).splitlines()[0]
    master = next(n for n in redis_nodes if n.private_ip == master_ip)
    module = Path(__file__).resolve().parents[2] / "playbooks" / "library" / "visio_livekit_nodes.py"
    source = module.read_text(encoding="utf-8").split('if __name__ == "__main__":')[0]
    result = _python(master.host, source + LIVEKIT_NODES, f"{master.private_ip}:{REDIS_PORT}")
    assert result.rc == 0, f"{master}: reading LiveKit's nodes failed: {result.stderr.strip()[-300:]}"
    registered = json.loads(result.stdout)
    serving = {n["ip"] for n in registered if n["available"]}
    sfu = hosts_of("sfu")
    missing = [n.name for n in sfu if n.public_ip not in serving]
    assert not missing, f"LiveKit nodes not SERVING in Redis: {missing} (registered: {registered})"
