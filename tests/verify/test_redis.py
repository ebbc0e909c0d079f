"""Redis (LiveKit's routing store): password required, bound to the private address, reachable from
SFU nodes with LiveKit's own credentials, refused from every other node and from outside."""

from __future__ import annotations

import shlex
import socket

import pytest

from visio_infra.hosts.ansible_vars import REDIS_PORT

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
    import json

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


@pytest.mark.parametrize("source_role", ["turn", "db"])
def test_refused_from_nodes_that_are_not_sfu(node, hosts_of, source_role):
    for other in hosts_of(source_role):
        result = _python(other.host, PROBE_CONNECT, node.private_ip, str(REDIS_PORT))
        assert result.rc == 0, f"{other}: probe failed: {result.stderr.strip()[-200:]}"
        assert result.stdout.startswith("closed"), f"{other} ({source_role}) can open Redis on {node}"


def test_refused_from_outside(node):
    """From the operator's machine (outside the SFU group): the connection must not open."""
    try:
        socket.create_connection((node.private_ip, REDIS_PORT), timeout=3).close()
    except OSError:
        return
    pytest.fail(f"{node}: Redis {node.private_ip}:{REDIS_PORT} is open to non-SFU clients")
