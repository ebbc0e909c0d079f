#!/usr/bin/python3
"""Ansible module: the LiveKit nodes registered in Redis, as the room allocator sees them.

Each LiveKit node writes itself into the Redis hash `nodes` (node id -> protobuf `livekit.Node`:
id, ip, stats with `updated_at`, state STARTING_UP/SERVING/SHUTTING_DOWN). The allocator places new
rooms only on nodes that are SERVING with stats younger than 5 seconds, so that is what "in
rotation" means for a rolling upgrade: drained nodes show SHUTTING_DOWN, stopped ones disappear.
Runs on an SFU node (the only hosts Redis accepts); speaks RESP and protobuf with the standard
library only. With `sentinels`, the current master is asked of the Sentinels first (the same password
protects Redis and Sentinel). The password is a no_log argument and never returned.
"""

from __future__ import annotations

import socket
import time

DOCUMENTATION = r"""
module: visio_livekit_nodes
short_description: List the LiveKit nodes registered in Redis (id, ip, state, stats age)
options:
  address: {description: "Redis host:port (or give sentinels and master_name)", required: false, type: str}
  sentinels: {description: "Sentinel host:port list, asked for the current master", required: false,
              type: list, elements: str}
  master_name: {description: Name the Sentinels monitor the master under, required: false, type: str}
  password: {description: Redis password, required: false, type: str, no_log: true}
  db: {description: Redis database, required: false, type: int, default: 0}
  timeout: {description: Socket timeout in seconds, required: false, type: float, default: 5}
"""

NODE_STATES = {0: "STARTING_UP", 1: "SERVING", 2: "SHUTTING_DOWN", 3: "SUSPENDED"}
AVAILABLE_SECONDS = 5
"""LiveKit's selector treats a node whose stats are older than this as unavailable."""


# ----------------------------------------------------------------------------- protobuf (wire format)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def proto_fields(data: bytes) -> dict[int, list[int | bytes]]:
    """Field number -> values (ints for varint/fixed, bytes for length-delimited)."""
    fields: dict[int, list[int | bytes]] = {}
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = int.from_bytes(data[pos:pos + 8], "little"), pos + 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ValueError("truncated length-delimited field")
            value, pos = data[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = int.from_bytes(data[pos:pos + 4], "little"), pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields


def _first(fields: dict[int, list[int | bytes]], number: int, default: int | bytes) -> int | bytes:
    values = fields.get(number)
    return values[-1] if values else default


def decode_node(data: bytes, now: float) -> dict:
    """A `livekit.Node` message as a plain dict (fields 1 id, 2 ip, 4 stats, 6 state)."""
    node = proto_fields(data)
    stats_raw = _first(node, 4, b"")
    stats = proto_fields(stats_raw) if isinstance(stats_raw, bytes) else {}
    updated_at = int(_first(stats, 2, 0))  # type: ignore[arg-type]
    state = int(_first(node, 6, 0))  # type: ignore[arg-type]
    age = round(now - updated_at, 1) if updated_at else None
    return {
        "id": bytes(_first(node, 1, b"")).decode(),  # type: ignore[arg-type]
        "ip": bytes(_first(node, 2, b"")).decode(),  # type: ignore[arg-type]
        "state": NODE_STATES.get(state, str(state)),
        "started_at": int(_first(stats, 1, 0)),  # type: ignore[arg-type]
        "updated_at": updated_at,
        "stats_age_seconds": age,
        "num_rooms": int(_first(stats, 3, 0)),  # type: ignore[arg-type]
        "num_clients": int(_first(stats, 4, 0)),  # type: ignore[arg-type]
        "available": state == 1 and age is not None and age < AVAILABLE_SECONDS,
    }


# ----------------------------------------------------------------------------- RESP (Redis protocol)


def encode_command(*parts: str) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        raw = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


class RespReader:
    """Reads one RESP reply at a time from a socket-like `recv`."""

    def __init__(self, recv):
        self._recv = recv
        self._buffer = b""

    def _line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            chunk = self._recv(65536)
            if not chunk:
                raise ConnectionError("Redis closed the connection")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\r\n", 1)
        return line

    def _exact(self, size: int) -> bytes:
        while len(self._buffer) < size + 2:
            chunk = self._recv(65536)
            if not chunk:
                raise ConnectionError("Redis closed the connection")
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size + 2:]
        return data

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self._exact(size)
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self.reply() for _ in range(count)]
        raise ValueError(f"unexpected RESP reply {line[:20]!r}")


class RedisError(RuntimeError):
    """Redis answered with an error (wrong password, unknown command...)."""


def list_nodes(address: str, password: str | None, db: int = 0, timeout: float = 5.0) -> list[dict]:
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        reader = RespReader(sock.recv)
        if password:
            sock.sendall(encode_command("AUTH", password))
            reader.reply()
        if db:
            sock.sendall(encode_command("SELECT", str(db)))
            reader.reply()
        sock.sendall(encode_command("HGETALL", "nodes"))
        flat = reader.reply() or []
    now = time.time()
    return sorted((decode_node(flat[i + 1], now) for i in range(0, len(flat), 2)), key=lambda n: n["ip"])


def resolve_master(sentinels: list[str], master_name: str, password: str | None, timeout: float = 5.0) -> str:
    """The current master's "host:port", from the first Sentinel that answers."""
    errors = []
    for sentinel in sentinels:
        host, _, port = sentinel.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout) as sock:
                reader = RespReader(sock.recv)
                if password:
                    sock.sendall(encode_command("AUTH", password))
                    reader.reply()
                sock.sendall(encode_command("SENTINEL", "get-master-addr-by-name", master_name))
                answer = reader.reply()
        except (OSError, RedisError, ValueError) as exc:
            errors.append(f"{sentinel}: {exc}")
            continue
        if answer:
            return f"{answer[0].decode()}:{answer[1].decode()}"
        errors.append(f"{sentinel}: no master named {master_name}")
    raise RedisError("no Sentinel names the master: " + "; ".join(errors))


def main() -> None:
    from ansible.module_utils.basic import AnsibleModule

    module = AnsibleModule(
        argument_spec={
            "address": {"type": "str", "required": False},
            "sentinels": {"type": "list", "elements": "str", "required": False},
            "master_name": {"type": "str", "required": False},
            "password": {"type": "str", "required": False, "no_log": True},
            "db": {"type": "int", "default": 0},
            "timeout": {"type": "float", "default": 5.0},
        },
        required_one_of=[("address", "sentinels")],
        required_together=[("sentinels", "master_name")],
        supports_check_mode=True,
    )
    params = module.params
    try:
        address = params["address"] or resolve_master(
            params["sentinels"], params["master_name"], params["password"], params["timeout"]
        )
        nodes = list_nodes(address, params["password"], params["db"], params["timeout"])
    except (OSError, RedisError, ValueError) as exc:
        # Never echo the password: the message is Redis's or the socket's own.
        where = params["address"] or ", ".join(params["sentinels"] or [])
        module.fail_json(msg=f"cannot read LiveKit nodes from Redis at {where}: {exc}")
    module.exit_json(changed=False, nodes=nodes)


if __name__ == "__main__":
    main()
