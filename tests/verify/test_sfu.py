"""SFU nodes: LiveKit healthy, TLS signalling with the stack's certificate, sovereign STUN/TURN config."""

from __future__ import annotations

import http.client
import socket
import ssl

import yaml

from visio_infra.hosts.ansible_vars import LIVEKIT_HTTP_PORT
from visio_infra.model.security_rules import HTTPS_PORT
from visio_infra.model.sovereignty import find_foreign_endpoints

ROLES = ("sfu",)

HEALTH = (
    "python3 -c \"import urllib.request,sys;"
    "r=urllib.request.urlopen('http://127.0.0.1:{port}/',timeout=5);print(r.status)\""
)


# Asked on the node itself: the front's peer-only location answers from a peer's LiveKit (loopback only).
PEER_HEALTH = (
    "python3 -c \"import ssl,urllib.request;c=ssl._create_unverified_context();"
    "r=urllib.request.urlopen('https://127.0.0.1/visio-front/peer-health',timeout=5,context=c);"
    "print(r.status, r.headers.get('X-Visio-Upstream'))\""
)

# The LiveKit nodes in Redis as the room allocator sees them, read on an SFU node with LiveKit's own
# Redis settings (the password never leaves the node), by the module the upgrade gate uses.


def _tls_context(ca_file: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def test_livekit_health_endpoint_answers_200(node):
    result = node.host.run(HEALTH.format(port=LIVEKIT_HTTP_PORT))
    assert result.rc == 0 and result.stdout.strip() == "200", (
        f"{node}: GET / on {LIVEKIT_HTTP_PORT} gave {result.stdout.strip() or result.stderr.strip()[-200:]}"
    )


def test_tls_signalling_presents_the_stack_certificate(node, ca_file, config):
    """From outside: the chain verifies against the stack CA for the signalling name and the node's IP."""
    for name in (config.domains.signalling, node.public_ip):
        with socket.create_connection((node.public_ip, HTTPS_PORT), timeout=5) as raw:
            try:
                with _tls_context(ca_file).wrap_socket(raw, server_hostname=name) as tls:
                    version = tls.version()
            except ssl.SSLCertVerificationError as exc:
                raise AssertionError(
                    f"{node}: the certificate on {node.public_ip}:{HTTPS_PORT} does not verify for {name} "
                    f"against the stack CA: {exc.verify_message}"
                ) from None
        assert version in ("TLSv1.2", "TLSv1.3"), f"{node}: TLS version {version}"


def test_signalling_through_tls_reaches_livekit(node, ca_file, config):
    connection = http.client.HTTPSConnection(
        node.public_ip, HTTPS_PORT, timeout=5, context=_tls_context(ca_file)
    )
    try:
        connection.request("GET", "/", headers={"Host": config.domains.signalling})
        status = connection.getresponse().status
    finally:
        connection.close()
    assert status == 200, f"{node}: GET https://{node.public_ip}/ through the TLS terminator gave {status}"


def _livekit_config(node, facts) -> tuple[str, dict]:
    path = f"{facts.get('livekit_config_dir', '/etc/livekit')}/config.yaml"
    text = node.host.file(path).content_string
    return text, yaml.safe_load(text) or {}


def test_rendered_config_uses_our_own_stun_and_turn_only(node, facts, inventory):
    text, rendered = _livekit_config(node, facts)
    foreign = find_foreign_endpoints(text)
    assert not foreign, f"{node}: LiveKit config names non-European endpoints: {foreign}"
    rtc = rendered.get("rtc") or {}
    turn_addresses = {str(h.get("public_ip") or h["private_ip"]) for h in inventory["groups"]["turn"]}
    stun = rtc.get("stun_servers") or []
    # Without stun_servers LiveKit falls back to Google's and Twilio's: they must be set, and ours.
    assert stun, f"{node}: rtc.stun_servers is empty, so LiveKit would use Google/Twilio STUN"
    stun_hosts = {entry.rsplit(":", 1)[0] for entry in stun}
    assert stun_hosts <= turn_addresses, f"{node}: STUN servers {sorted(stun_hosts)} are not our TURN nodes"
    turn = rtc.get("turn_servers") or []
    protocols = {(entry.get("protocol"), entry.get("port")) for entry in turn}
    assert {("udp", 3478), ("tcp", 3478), ("tls", HTTPS_PORT)} <= protocols, (
        f"{node}: turn_servers lack udp/3478, tcp/3478 or tls/443: {sorted(protocols, key=str)}"
    )
    for entry in turn:
        assert entry.get("secret_file") or entry.get("secret"), f"{node}: TURN entry without shared secret"
        assert not entry.get("secret"), f"{node}: TURN secret inline in config.yaml instead of secret_file"


def test_node_ip_is_the_public_address(node, facts):
    _, rendered = _livekit_config(node, facts)
    rtc = rendered.get("rtc") or {}
    assert rtc.get("node_ip") == node.public_ip, (
        f"{node}: rtc.node_ip is {rtc.get('node_ip')!r}, the node's public address is {node.public_ip}"
    )
    assert not rtc.get("use_external_ip"), f"{node}: use_external_ip would discover the address by STUN"


def test_front_falls_back_to_a_peer_livekit(node, inventory):
    """Each node's TLS front can hand signalling to a peer's LiveKit (what it does when its own
    LiveKit is stopped or drained): asked for it, it answers 200 from a peer."""
    sfu = inventory["groups"]["sfu"]
    peers = {f"{h['private_ip']}:{LIVEKIT_HTTP_PORT}" for h in sfu if h["name"] != node.name}
    result = node.host.run(PEER_HEALTH)
    answer = result.stdout.split()
    if not peers:  # one SFU node: nothing to fall back to, and the front says so
        assert result.rc != 0 or answer[:1] != ["200"], f"{node}: a peer answered on a one-node stack"
        return
    assert result.rc == 0 and len(answer) == 2, (
        f"{node}: peer health gave {result.stdout or result.stderr[-300:]}"
    )
    assert answer[0] == "200" and answer[1] in peers, (
        f"{node}: peer health answered {answer}, peers {sorted(peers)}"
    )
