"""Steady join load for a fault drill (run as its own process by tests/lab/test_drill_redis.py).

Workers each create a new room through the LiveKit API of the next SFU node in turn, join it as a
participant (WebRTC, through the node's TLS signalling), leave and delete it, again and again, one
attempt every --interval seconds per worker. Every attempt is recorded with its wall-clock start and
end (the lab machines share this host's clock, so the drill can place the fault on the same axis),
its node, and its error. The report (JSON, no secret) is written to --report when --stop-file appears
or after --max-seconds, whichever comes first. Keys and CA come from the 0600 outputs file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from tests.lab.upgrade_traffic import Traffic, harness_parser, run_harness
from visio_infra.probes.livekit_call import connect_room, ssl_context, trust_bundle


class JoinLoad(Traffic):
    def __init__(self, args: argparse.Namespace, outputs: dict[str, Any]):
        super().__init__(args, outputs)
        self.attempts: list[dict[str, Any]] = []

    async def join_once(self, number: int) -> None:
        from livekit import api, rtc

        node = self.nodes[number % len(self.nodes)]
        room_name = f"drill-{number}-{secrets.token_hex(2)}"
        attempt: dict[str, Any] = {"n": number, "node": node["name"], "start": time.time()}
        room = rtc.Room()
        lk, session = await self.api(node)
        try:
            await asyncio.wait_for(
                lk.room.create_room(api.CreateRoomRequest(name=room_name, empty_timeout=10)), 10
            )
            token = self.token(room_name, f"drill-{number}")
            await connect_room(room, self.ws_base(node), token, self.options(), 15)
            if room.connection_state != rtc.ConnectionState.CONN_CONNECTED:
                raise RuntimeError(f"connection state {int(room.connection_state)}")
            attempt["ok"] = True
        except Exception as exc:
            attempt.update({"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]})
        finally:
            attempt["end"] = time.time()
            self.attempts.append(attempt)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(room.disconnect(), 5)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(lk.room.delete_room(api.DeleteRoomRequest(room=room_name)), 5)
            with contextlib.suppress(Exception):
                await lk.aclose()
                await session.close()

    async def worker(self, index: int, workers: int) -> None:
        stop_file = Path(self.args.stop_file)
        number = index
        while not stop_file.exists() and time.monotonic() - self.started < self.args.max_seconds:
            tick = time.monotonic()
            await self.join_once(number)
            number += workers
            await asyncio.sleep(max(0.0, self.args.interval - (time.monotonic() - tick)))

    async def run(self) -> None:  # type: ignore[override]
        self.ssl = ssl_context(trust_bundle(self.ca_pem))
        workers = self.args.workers
        Path(self.args.ready_file).write_text("started", encoding="utf-8")
        await asyncio.gather(*(self.worker(i, workers) for i in range(workers)))


def main(argv: list[str] | None = None) -> int:
    parser = harness_parser(__doc__.splitlines()[0], max_seconds=600)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    # What Traffic's helpers read (TLS signalling on 443, no relay, no meeting).
    args.scheme, args.port, args.relay, args.meeting_turn_uri = "wss", None, False, None
    args.metrics_port = 6789
    return run_harness(JoinLoad, args, report=lambda load: {"attempts": load.attempts})


if __name__ == "__main__":
    sys.exit(main())
