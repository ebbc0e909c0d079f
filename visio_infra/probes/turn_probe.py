"""A small TURN client (RFC 8489 STUN, RFC 8656 TURN) to check a ministry's coturn nodes from outside.

Why our own: the checks need exact answers (which error code for which request), over UDP, TCP and TLS,
with the coturn "TURN REST API" credentials LiveKit hands out (username `<expiry>:<id>`, password
base64(HMAC-SHA1(shared secret, username))). `turnutils_uclient` only reports success or failure.

The encoding half is pure and tested against the RFC 5769 vectors (tests/unit/probes/test_turn_probe.py);
`TurnClient` does the I/O with bounded timeouts and retries. `check_server` is what the verification
suite runs: an allocation with the right credentials must succeed, one with wrong credentials must be
refused (401), and relaying towards loopback, the cloud metadata address and private addresses that
are not SFU nodes must be refused (403), while relaying to an SFU node is allowed (so a server that
refuses everything does not pass).

Command line (secrets come from a file or an environment variable, never from argv):
    python -m visio_infra.probes.turn_probe --server 10.77.0.74 --port 3478 --transport udp \
        --secret-env VISIO_TURN_SECRET --allowed-peer 10.77.0.74 --denied-peer 127.0.0.1 ...
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import hashlib
import hmac
import ipaddress
import json
import os
import secrets
import socket
import ssl
import struct
import sys
import time
from dataclasses import asdict, dataclass, field

MAGIC_COOKIE = 0x2112A442
HEADER_SIZE = 20
FINGERPRINT_XOR = 0x5354554E

# Methods (RFC 8489 / RFC 8656)
BINDING = 0x001
ALLOCATE = 0x003
REFRESH = 0x004
CREATE_PERMISSION = 0x008

# Classes
REQUEST = 0b00
INDICATION = 0b01
SUCCESS = 0b10
ERROR = 0b11

# Attributes
MAPPED_ADDRESS = 0x0001
USERNAME = 0x0006
MESSAGE_INTEGRITY = 0x0008
ERROR_CODE = 0x0009
LIFETIME = 0x000D
XOR_PEER_ADDRESS = 0x0012
REALM = 0x0014
NONCE = 0x0015
XOR_RELAYED_ADDRESS = 0x0016
REQUESTED_TRANSPORT = 0x0019
XOR_MAPPED_ADDRESS = 0x0020
SOFTWARE = 0x8022
FINGERPRINT = 0x8028

PROTO_UDP = 17
SOFTWARE_NAME = "visio-verify turn_probe"


class StunError(ValueError):
    """A datagram or stream chunk is not a well-formed STUN message."""


# --------------------------------------------------------------------------- message encoding


def message_type(method: int, cls: int) -> int:
    """Interleave the 12-bit method and 2-bit class into the 14-bit STUN message type."""
    return (
        (method & 0x000F)
        | ((method & 0x0070) << 1)
        | ((method & 0x0F80) << 2)
        | ((cls & 0b01) << 4)
        | ((cls & 0b10) << 7)
    )


def split_type(value: int) -> tuple[int, int]:
    """(method, class) of a STUN message type."""
    method = (value & 0x000F) | ((value & 0x00E0) >> 1) | ((value & 0x3E00) >> 2)
    cls = ((value & 0x0010) >> 4) | ((value & 0x0100) >> 7)
    return method, cls


@dataclass
class StunMessage:
    """A decoded STUN message: attributes in wire order as (type, raw value)."""

    method: int
    cls: int
    transaction_id: bytes
    attributes: list[tuple[int, bytes]] = field(default_factory=list)

    def get(self, attr_type: int) -> bytes | None:
        for kind, value in self.attributes:
            if kind == attr_type:
                return value
        return None

    def error(self) -> tuple[int, str] | None:
        """(code, reason) of an ERROR-CODE attribute, if any."""
        raw = self.get(ERROR_CODE)
        return decode_error_code(raw) if raw is not None else None


def _pad(length: int) -> int:
    return (4 - length % 4) % 4


def _attr(attr_type: int, value: bytes, padding: bytes = b"\x00") -> bytes:
    return struct.pack("!HH", attr_type, len(value)) + value + padding * _pad(len(value))


def encode(
    method: int,
    cls: int,
    transaction_id: bytes,
    attributes: list[tuple[int, bytes]],
    *,
    integrity_key: bytes | None = None,
    fingerprint: bool = False,
    padding: bytes = b"\x00",
) -> bytes:
    """Encode a message; MESSAGE-INTEGRITY (HMAC-SHA1) and FINGERPRINT (CRC-32) are appended last.

    `padding` is the byte used to pad attribute values (any value is legal; RFC 5769 uses spaces).
    """
    if len(transaction_id) != 12:
        raise ValueError("a STUN transaction id is 12 bytes")
    body = b"".join(_attr(kind, value, padding) for kind, value in attributes)
    mtype = message_type(method, cls)
    if integrity_key is not None:
        # The length in the header covers the MESSAGE-INTEGRITY attribute itself (RFC 8489 14.5).
        header = struct.pack("!HHI", mtype, len(body) + 24, MAGIC_COOKIE) + transaction_id
        mac = hmac.new(integrity_key, header + body, hashlib.sha1).digest()
        body += _attr(MESSAGE_INTEGRITY, mac)
    if fingerprint:
        header = struct.pack("!HHI", mtype, len(body) + 8, MAGIC_COOKIE) + transaction_id
        crc = (binascii.crc32(header + body) & 0xFFFFFFFF) ^ FINGERPRINT_XOR
        body += _attr(FINGERPRINT, struct.pack("!I", crc))
    return struct.pack("!HHI", mtype, len(body), MAGIC_COOKIE) + transaction_id + body


def decode(data: bytes) -> StunMessage:
    """Decode one whole STUN message (raises StunError on anything malformed)."""
    if len(data) < HEADER_SIZE:
        raise StunError(f"{len(data)} bytes is shorter than a STUN header")
    mtype, length, cookie = struct.unpack("!HHI", data[:8])
    if mtype & 0xC000:
        raise StunError("the first two bits of a STUN message are not zero")
    if cookie != MAGIC_COOKIE:
        raise StunError(f"magic cookie {cookie:#x} is not {MAGIC_COOKIE:#x}")
    if length % 4 or HEADER_SIZE + length != len(data):
        raise StunError(f"length field {length} does not match the {len(data) - HEADER_SIZE} body bytes")
    method, cls = split_type(mtype)
    message = StunMessage(method, cls, data[8:20])
    offset = HEADER_SIZE
    while offset < len(data):
        if offset + 4 > len(data):
            raise StunError("truncated attribute header")
        kind, size = struct.unpack("!HH", data[offset : offset + 4])
        start = offset + 4
        if start + size > len(data):
            raise StunError(f"attribute {kind:#06x} runs past the end of the message")
        message.attributes.append((kind, data[start : start + size]))
        offset = start + size + _pad(size)
    return message


def _attribute_offset(data: bytes, wanted: int) -> int | None:
    offset = HEADER_SIZE
    while offset + 4 <= len(data):
        kind, size = struct.unpack("!HH", data[offset : offset + 4])
        if kind == wanted:
            return offset
        offset += 4 + size + _pad(size)
    return None


def verify_integrity(data: bytes, key: bytes) -> bool:
    """True when the message carries a MESSAGE-INTEGRITY that matches `key`."""
    offset = _attribute_offset(data, MESSAGE_INTEGRITY)
    if offset is None or offset + 24 > len(data):
        return False
    header = data[:2] + struct.pack("!H", offset + 24 - HEADER_SIZE) + data[4:HEADER_SIZE]
    expected = hmac.new(key, header + data[HEADER_SIZE:offset], hashlib.sha1).digest()
    return hmac.compare_digest(expected, data[offset + 4 : offset + 24])


def verify_fingerprint(data: bytes) -> bool:
    """True when the message ends with a correct FINGERPRINT attribute."""
    offset = _attribute_offset(data, FINGERPRINT)
    if offset is None or offset + 8 != len(data):
        return False
    header = data[:2] + struct.pack("!H", offset + 8 - HEADER_SIZE) + data[4:HEADER_SIZE]
    crc = (binascii.crc32(header + data[HEADER_SIZE:offset]) & 0xFFFFFFFF) ^ FINGERPRINT_XOR
    return struct.pack("!I", crc) == data[offset + 4 : offset + 8]


def encode_xor_address(ip: str, port: int, transaction_id: bytes) -> bytes:
    """XOR-MAPPED/PEER/RELAYED-ADDRESS value."""
    address = ipaddress.ip_address(ip)
    xport = port ^ (MAGIC_COOKIE >> 16)
    if address.version == 4:
        xaddr = int(address) ^ MAGIC_COOKIE
        return struct.pack("!BBHI", 0, 0x01, xport, xaddr)
    mask = int.from_bytes(struct.pack("!I", MAGIC_COOKIE) + transaction_id, "big")
    return struct.pack("!BBH", 0, 0x02, xport) + (int(address) ^ mask).to_bytes(16, "big")


def decode_xor_address(value: bytes, transaction_id: bytes) -> tuple[str, int]:
    """(ip, port) from an XOR-*-ADDRESS value."""
    if len(value) < 8:
        raise StunError("XOR address attribute too short")
    _, family, xport = struct.unpack("!BBH", value[:4])
    port = xport ^ (MAGIC_COOKIE >> 16)
    if family == 0x01 and len(value) == 8:
        (xaddr,) = struct.unpack("!I", value[4:8])
        return str(ipaddress.IPv4Address(xaddr ^ MAGIC_COOKIE)), port
    if family == 0x02 and len(value) == 20:
        mask = int.from_bytes(struct.pack("!I", MAGIC_COOKIE) + transaction_id, "big")
        return str(ipaddress.IPv6Address(int.from_bytes(value[4:20], "big") ^ mask)), port
    raise StunError(f"unknown address family {family}")


def encode_error_code(code: int, reason: str) -> bytes:
    return struct.pack("!HBB", 0, code // 100, code % 100) + reason.encode()


def decode_error_code(value: bytes) -> tuple[int, str]:
    if len(value) < 4:
        raise StunError("ERROR-CODE attribute too short")
    _, klass, number = struct.unpack("!HBB", value[:4])
    return (klass & 0x07) * 100 + number, value[4:].decode("utf-8", "replace")


# --------------------------------------------------------------------------- credentials


def long_term_key(username: str, realm: str, password: str) -> bytes:
    """Long-term credential key: MD5(username ":" realm ":" password) (RFC 8489 9.2.2).

    The password must already be SASLprep'ed; REST API passwords are base64 (ASCII), unaffected.
    """
    return hashlib.md5(f"{username}:{realm}:{password}".encode(), usedforsecurity=False).digest()


def rest_api_credentials(
    secret: str, *, ttl: int = 600, user_id: str = "visio-verify", now: float | None = None
) -> tuple[str, str]:
    """coturn `use-auth-secret` credentials, as LiveKit derives them: (`<expiry>:<id>`, password)."""
    expiry = int(now if now is not None else time.time()) + ttl
    username = f"{expiry}:{user_id}"
    password = base64.b64encode(hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()).decode()
    return username, password


# --------------------------------------------------------------------------- client


class TurnTimeout(TimeoutError):
    """The server did not answer in time (filtered port, service down)."""


@dataclass
class Answer:
    """What the server said to one request."""

    ok: bool
    code: int | None = None
    reason: str = ""
    message: StunMessage | None = None


class TurnClient:
    """One TURN session over udp, tcp or tls. Use as a context manager; every wait is bounded."""

    def __init__(
        self,
        server: str,
        port: int,
        transport: str = "udp",
        *,
        timeout: float = 3.0,
        ca_file: str | None = None,
        server_name: str | None = None,
    ):
        if transport not in ("udp", "tcp", "tls"):
            raise ValueError(f"transport {transport!r} is not udp, tcp or tls")
        self.server, self.port, self.transport, self.timeout = server, port, transport, timeout
        self.ca_file, self.server_name = ca_file, server_name
        self.sock: socket.socket | None = None
        self.realm: str | None = None
        self.nonce: bytes | None = None
        self.username: str | None = None
        self.key: bytes | None = None
        self.relayed: tuple[str, int] | None = None
        self.mapped: tuple[str, int] | None = None
        self.tls_version: str | None = None
        self._buffer = b""

    def __enter__(self) -> TurnClient:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        family = socket.AF_INET6 if ":" in self.server else socket.AF_INET
        if self.transport == "udp":
            self.sock = socket.socket(family, socket.SOCK_DGRAM)
            self.sock.settimeout(self.timeout)
            self.sock.connect((self.server, self.port))
            return
        raw = socket.create_connection((self.server, self.port), timeout=self.timeout)
        if self.transport == "tls":
            context = ssl.create_default_context(cafile=self.ca_file)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            try:
                self.sock = context.wrap_socket(raw, server_hostname=self.server_name or self.server)
            except Exception:
                raw.close()
                raise
            self.tls_version = self.sock.version()
        else:
            self.sock = raw
        self.sock.settimeout(self.timeout)

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    # -- transport

    def _send(self, data: bytes) -> None:
        assert self.sock is not None, "open() first"
        self.sock.sendall(data) if self.transport != "udp" else self.sock.send(data)

    def _read_stream_message(self, deadline: float) -> bytes:
        assert self.sock is not None
        while True:
            if len(self._buffer) >= HEADER_SIZE:
                (length,) = struct.unpack("!H", self._buffer[2:4])
                total = HEADER_SIZE + length
                if len(self._buffer) >= total:
                    data, self._buffer = self._buffer[:total], self._buffer[total:]
                    return data
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TurnTimeout(f"no answer from {self.server}:{self.port}/{self.transport}")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(4096)
            except TimeoutError:
                raise TurnTimeout(f"no answer from {self.server}:{self.port}/{self.transport}") from None
            if not chunk:
                raise ConnectionError(f"{self.server}:{self.port}/{self.transport} closed the connection")
            self._buffer += chunk

    def transact(self, data: bytes, transaction_id: bytes) -> tuple[StunMessage, bytes]:
        """Send a request and wait for the answer with the same transaction id.

        UDP retransmits with doubling intervals (RFC 8489 6.2.1) within `timeout`; TCP/TLS wait once.
        """
        deadline = time.monotonic() + self.timeout
        assert self.sock is not None, "open() first"
        interval = 0.25
        self._send(data)
        next_send = time.monotonic() + interval
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise TurnTimeout(f"no answer from {self.server}:{self.port}/{self.transport}")
            if self.transport == "udp":
                self.sock.settimeout(max(0.01, min(deadline, next_send) - now))
                try:
                    raw = self.sock.recv(65535)
                except TimeoutError:
                    if time.monotonic() >= next_send:
                        self._send(data)
                        interval *= 2
                        next_send = time.monotonic() + interval
                    continue
                except ConnectionRefusedError:
                    raise ConnectionRefusedError(
                        f"{self.server}:{self.port}/udp answered ICMP port unreachable"
                    ) from None
            else:
                raw = self._read_stream_message(deadline)
            try:
                message = decode(raw)
            except StunError:
                continue  # not ours (e.g. stray data); keep waiting
            if message.transaction_id == transaction_id:
                return message, raw

    def _request(
        self,
        method: int,
        attributes: list[tuple[int, bytes]],
        authenticate: bool,
        transaction_id: bytes | None = None,
        stale_retry: bool = True,
    ) -> Answer:
        tid = transaction_id or secrets.token_bytes(12)
        attrs = list(attributes)
        key = None
        if authenticate:
            assert self.username and self.realm is not None and self.nonce is not None and self.key
            attrs += [
                (USERNAME, self.username.encode()),
                (REALM, self.realm.encode()),
                (NONCE, self.nonce),
            ]
            key = self.key
        data = encode(method, REQUEST, tid, attrs, integrity_key=key, fingerprint=True)
        message, raw = self.transact(data, tid)
        if message.cls == SUCCESS:
            if key is not None and not verify_integrity(raw, key):
                return Answer(False, None, "success answer failed MESSAGE-INTEGRITY", message)
            return Answer(True, None, "", message)
        if message.cls == ERROR:
            code, reason = message.error() or (0, "error without ERROR-CODE")
            if code == 438 and authenticate and stale_retry and self._learn_challenge(message):
                # Stale nonce: retry once with the fresh one (same request, new transaction).
                return self._request(method, attributes, authenticate, None, stale_retry=False)
            return Answer(False, code, reason, message)
        return Answer(False, None, f"unexpected message class {message.cls}", message)

    def _learn_challenge(self, message: StunMessage | None) -> bool:
        if message is None:
            return False
        realm, nonce = message.get(REALM), message.get(NONCE)
        if nonce is None:
            return False
        if realm is not None:
            self.realm = realm.decode("utf-8", "replace")
        self.nonce = nonce
        return True

    def allocate(self, username: str, password: str, lifetime: int = 60) -> Answer:
        """Allocate a UDP relay, answering the server's 401 challenge with long-term credentials."""
        base = [
            (REQUESTED_TRANSPORT, struct.pack("!B3x", PROTO_UDP)),
            (LIFETIME, struct.pack("!I", lifetime)),
            (SOFTWARE, SOFTWARE_NAME.encode()),
        ]
        first = self._request(ALLOCATE, base, authenticate=False)
        if first.ok:
            return Answer(False, None, "the server allocated without asking for credentials", first.message)
        if first.code != 401 or not self._learn_challenge(first.message):
            return first
        self.username = username
        self.key = long_term_key(username, self.realm or "", password)
        answer = self._request(ALLOCATE, base, authenticate=True)
        if answer.ok and answer.message is not None:
            tid = answer.message.transaction_id
            relayed = answer.message.get(XOR_RELAYED_ADDRESS)
            mapped = answer.message.get(XOR_MAPPED_ADDRESS)
            self.relayed = decode_xor_address(relayed, tid) if relayed else None
            self.mapped = decode_xor_address(mapped, tid) if mapped else None
        return answer

    def create_permission(self, peer_ip: str) -> Answer:
        """Ask to relay towards `peer_ip` (permissions ignore the port; 9 is the discard port)."""
        tid = secrets.token_bytes(12)  # an IPv6 XOR-PEER-ADDRESS is masked with the transaction id
        peer = [(XOR_PEER_ADDRESS, encode_xor_address(peer_ip, 9, tid))]
        return self._request(CREATE_PERMISSION, peer, authenticate=True, transaction_id=tid)

    def release(self) -> None:
        """Refresh with lifetime 0 so the allocation does not linger until it expires."""
        if self.key is None or self.relayed is None:
            return
        # If this fails the allocation still expires by itself within its lifetime.
        with contextlib.suppress(OSError):
            self._request(REFRESH, [(LIFETIME, struct.pack("!I", 0))], authenticate=True)


# --------------------------------------------------------------------------- the check


@dataclass
class Check:
    """One named expectation and what was observed."""

    name: str
    passed: bool
    detail: str


@dataclass
class ServerReport:
    server: str
    port: int
    transport: str
    checks: list[Check] = field(default_factory=list)
    elapsed_ms: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["passed"] = self.passed
        return data


def check_server(
    server: str,
    port: int,
    transport: str,
    secret: str,
    *,
    allowed_peers: list[str],
    denied_peers: list[str],
    ca_file: str | None = None,
    server_name: str | None = None,
    timeout: float = 3.0,
) -> ServerReport:
    """Run the TURN expectations against one listener; never raises for a server misbehaving."""
    report = ServerReport(server, port, transport)
    started = time.monotonic()

    def client() -> TurnClient:
        return TurnClient(server, port, transport, timeout=timeout, ca_file=ca_file, server_name=server_name)

    username, password = rest_api_credentials(secret)
    try:
        with client() as turn:
            answer = turn.allocate(username, password)
            detail = (
                f"relayed {turn.relayed[0]}:{turn.relayed[1]}" if answer.ok and turn.relayed
                else f"refused: {answer.code} {answer.reason}".strip()
            )
            if turn.tls_version:
                detail += f" over {turn.tls_version}"
            report.checks.append(Check("allocation with shared-secret credentials", answer.ok, detail))
            if answer.ok:
                for peer in allowed_peers:
                    perm = turn.create_permission(peer)
                    report.checks.append(Check(
                        f"relay to SFU node {peer} allowed", perm.ok,
                        "permission granted" if perm.ok else f"refused: {perm.code} {perm.reason}",
                    ))
                for peer in denied_peers:
                    perm = turn.create_permission(peer)
                    refused = not perm.ok and perm.code == 403
                    report.checks.append(Check(
                        f"relay to {peer} refused", refused,
                        f"answered {perm.code} {perm.reason}" if not perm.ok else "permission GRANTED",
                    ))
                turn.release()
    except (OSError, ssl.SSLError, StunError) as exc:  # TurnTimeout is an OSError
        report.checks.append(
            Check("allocation with shared-secret credentials", False, f"{type(exc).__name__}: {exc}")
        )

    wrong_user, wrong_password = rest_api_credentials(secret + "-wrong")
    try:
        with client() as turn:
            answer = turn.allocate(wrong_user, wrong_password)
            refused = not answer.ok and answer.code == 401
            report.checks.append(Check(
                "allocation with wrong credentials refused", refused,
                f"answered {answer.code} {answer.reason}" if not answer.ok else "allocation GRANTED",
            ))
            if answer.ok:
                turn.release()
    except (OSError, ssl.SSLError, StunError) as exc:
        report.checks.append(
            Check("allocation with wrong credentials refused", False, f"{type(exc).__name__}: {exc}")
        )
    report.elapsed_ms = round((time.monotonic() - started) * 1000, 1)
    return report


def _read_secret(args: argparse.Namespace) -> str:
    if args.secret_file:
        with open(args.secret_file, encoding="utf-8") as handle:
            return handle.read().strip()
    value = os.environ.get(args.secret_env or "")
    if not value:
        raise SystemExit(f"turn_probe: environment variable {args.secret_env!r} is empty or unset")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--server", required=True, help="TURN server address")
    parser.add_argument("--port", type=int, default=3478)
    parser.add_argument("--transport", choices=("udp", "tcp", "tls"), default="udp")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--secret-file", help="file holding the coturn static-auth-secret")
    group.add_argument("--secret-env", help="environment variable holding the coturn static-auth-secret")
    parser.add_argument("--allowed-peer", action="append", default=[], help="SFU address relaying must reach")
    parser.add_argument("--denied-peer", action="append", default=[], help="address relaying must refuse")
    parser.add_argument("--ca-file", help="CA bundle to verify the TLS listener with")
    parser.add_argument("--server-name", help="name expected in the TLS certificate")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    report = check_server(
        args.server, args.port, args.transport, _read_secret(args),
        allowed_peers=args.allowed_peer, denied_peers=args.denied_peer,
        ca_file=args.ca_file, server_name=args.server_name, timeout=args.timeout,
    )
    json.dump(report.to_dict(), sys.stdout, indent=2)
    print()
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
