"""Call traffic kept up during a rolling upgrade (run as its own process by test_rolling_upgrade.py).

- A meeting: a publisher (synthetic camera + microphone) and a subscriber in one room, both with
  their signalling on the SFU node that hosts the room (found from the nodes' own metrics), for a
  fixed time counted from its first video frames (`media_at`); then they leave on their own. Every
  connection-state change is recorded, and the subscriber's decoded video frames give the longest
  media gap.
- A probe: every few seconds a new participant joins a new room, through the next SFU node in
  rotation that passes the health check a load balancer would use (GET / through TLS answers 200),
  then leaves and the room is deleted. Every join must succeed.
- With --relay (TURN rollouts): the probe's ICE is relay only, through the TURN servers the SFU
  hands out, and each join records the TURN node its media pair goes through; with
  --meeting-turn-uri the meeting is relayed only through that one TURN server (the node whose drain
  is under test), and the report names the relay its media used when ready and when leaving.
The report (JSON, no secret) is written to --report. Keys and CA come from the 0600 outputs file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import secrets
import ssl
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from visio_infra.model.node_status import metric_sums
from visio_infra.probes.livekit_call import (
    AUDIO_RATE,
    VIDEO_SIZE,
    _produce,
    connect_room,
    join_token,
    selected_pair,
    settle_connects,
    ssl_context,
    trust_bundle,
)
from visio_infra.probes.turn_probe import rest_api_credentials

MEDIA_START_SECONDS = 30
"""How long a meeting's first video frames may take after its join (a relayed one takes 1-3 s on the
lab: `visio verify`'s call report). Bounded below call_traffic's 120 s wait for the ready file."""


class Traffic:
    def __init__(self, args: argparse.Namespace, outputs: dict[str, Any]):
        self.args = args
        self.key = outputs["livekit_api_key"]
        self.secret = outputs["livekit_api_secret"]
        self.ca_pem = outputs.get("ca_certificate")
        self.turn_secret = outputs.get("turn_shared_secret") or ""
        self.nodes: list[dict[str, str]] = args.nodes
        self.started = time.monotonic()
        self.report: dict[str, Any] = {
            "meeting": {"events": [], "frames": 0, "max_gap_s": None},
            "probe": {
                "joins": 0,
                "ok": 0,
                "failures": [],
                "per_node": {},
                "skipped_unhealthy": {},
                "join_ms": [],
                "per_turn": {},
            },
        }

    def t(self) -> float:
        return round(time.monotonic() - self.started, 2)

    def token(self, room: str, identity: str) -> str:
        return join_token(self.key, self.secret, room, identity, ttl_seconds=30 * 60)

    def options(self, *, meeting: bool = False) -> Any:
        """Room options: relay-only ICE for the meeting (one explicit TURN server) or the probe."""
        from livekit import rtc

        rtc_config = None
        if meeting and self.args.meeting_turn_uri:
            username, password = rest_api_credentials(self.turn_secret, user_id="upgrade-meeting", ttl=3600)
            server = rtc.IceServer(urls=[self.args.meeting_turn_uri], username=username, password=password)
            rtc_config = rtc.RtcConfiguration(
                ice_transport_type=rtc.IceTransportType.TRANSPORT_RELAY, ice_servers=[server]
            )
        elif not meeting and self.args.relay:
            rtc_config = rtc.RtcConfiguration(ice_transport_type=rtc.IceTransportType.TRANSPORT_RELAY)
        return rtc.RoomOptions(auto_subscribe=True, rtc_config=rtc_config, connect_timeout=10)

    async def relay_of(self, room: Any) -> str | None:
        """The TURN relay address of the room's selected candidate pair, once ICE picked one."""
        for _ in range(20):
            stats = await asyncio.wait_for(room.get_rtc_stats(), 5)
            local = selected_pair(stats.subscriber_stats + stats.publisher_stats).get("local")
            if local is not None:
                return local.address if local.type == "relay" else f"not relayed ({local.type})"
            await asyncio.sleep(0.25)
        return None

    def http_base(self, node: dict[str, str]) -> str:
        secure = self.args.scheme == "wss"
        port = f":{self.args.port}" if self.args.port else ""
        return f"{'https' if secure else 'http'}://{node['public_ip']}{port}"

    def ws_base(self, node: dict[str, str]) -> str:
        return self.http_base(node).replace("http", "ws", 1)

    async def http(self, url: str) -> tuple[int, str]:
        import aiohttp

        connector = aiohttp.TCPConnector(ssl=self.ssl)
        timeout = aiohttp.ClientTimeout(total=3)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as s, s.get(url) as response:
            return response.status, await response.text()

    async def participants(self, node: dict[str, str]) -> int:
        try:
            status, text = await self.http(f"http://{node['private_ip']}:{self.args.metrics_port}/metrics")
        except Exception:
            return -1
        return int(metric_sums(text).get("livekit_participant_total", 0.0)) if status == 200 else -1

    async def healthy(self, node: dict[str, str]) -> bool:
        try:
            status, _ = await self.http(f"{self.http_base(node)}/")
        except Exception:
            return False
        return status == 200

    async def api(self, node: dict[str, str]) -> Any:
        import aiohttp
        from livekit import api

        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self.ssl), timeout=aiohttp.ClientTimeout(total=10)
        )
        return api.LiveKitAPI(
            self.http_base(node), self.key, self.secret, session=session, failover=False
        ), session

    # ----------------------------------------------------------------------- the meeting

    async def meeting(self, ready: asyncio.Event) -> None:
        from livekit import api, rtc

        meeting = self.report["meeting"]
        publisher = subscriber = None
        frames: list[float] = []
        for attempt in range(12):
            node = self.nodes[attempt % len(self.nodes)]
            room = f"upgrade-meeting-{secrets.token_hex(3)}"
            lk, session = await self.api(node)
            await lk.room.create_room(api.CreateRoomRequest(name=room, empty_timeout=60))
            publisher = rtc.Room()
            token = self.token(room, "upgrade-publisher")
            await connect_room(publisher, self.ws_base(node), token, self.options(meeting=True), 60)
            await asyncio.sleep(1)
            here = await self.participants(node)
            if here >= 1 and all(
                await asyncio.gather(*[self._empty(n) for n in self.nodes if n is not node])
            ):
                meeting.update({"room": room, "node": node["name"], "placement_attempts": attempt + 1})
                await lk.aclose()
                await session.close()
                break
            await publisher.disconnect()
            with contextlib.suppress(Exception):
                await lk.room.delete_room(api.DeleteRoomRequest(room=room))
            await lk.aclose()
            await session.close()
            publisher = None
        if publisher is None:
            meeting["error"] = "could not place the meeting on the node its signalling uses"
            ready.set()
            return
        node = next(n for n in self.nodes if n["name"] == meeting["node"])

        def watch(who: str, room: Any) -> None:
            @room.on("connection_state_changed")
            def _state(state: Any) -> None:
                meeting["events"].append({"t": self.t(), "who": who, "event": f"state {int(state)}"})

            for name in ("disconnected", "reconnecting", "reconnected"):
                room.on(
                    name,
                    lambda *_a, _n=name: meeting["events"].append({"t": self.t(), "who": who, "event": _n}),
                )

        watch("publisher", publisher)
        subscriber = rtc.Room()
        watch("subscriber", subscriber)
        tasks: list[asyncio.Task[Any]] = []
        stop = asyncio.Event()
        media = asyncio.Event()

        async def consume(track: Any) -> None:
            stream = rtc.VideoStream(track)
            async for _event in stream:
                frames.append(time.monotonic())
                if len(frames) == 5:
                    media.set()
                if stop.is_set():
                    break
            await stream.aclose()

        @subscriber.on("track_subscribed")
        def _track(track: Any, *_rest: Any) -> None:
            if track.kind == rtc.TrackKind.KIND_VIDEO:
                tasks.append(asyncio.ensure_future(consume(track)))

        await connect_room(
            subscriber, self.ws_base(node), self.token(meeting["room"], "upgrade-subscriber"),
            self.options(meeting=True), 60,
        )
        video = rtc.VideoSource(*VIDEO_SIZE)
        audio = rtc.AudioSource(AUDIO_RATE, 1)
        tasks.append(asyncio.ensure_future(_produce(rtc, video, audio, stop)))
        await publisher.local_participant.publish_track(
            rtc.LocalVideoTrack.create_video_track("camera", video),
            rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA),
        )
        await publisher.local_participant.publish_track(
            rtc.LocalAudioTrack.create_audio_track("microphone", audio),
            rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE),
        )
        meeting["joined_at"] = self.t()
        # The meeting's clock starts once its video flows, so whatever the test does next (a rollout)
        # always has the whole meeting ahead of it, and what went wrong while it was being set up is
        # reported as that (`media_at`, the events before it), never blamed on the change under test.
        try:
            await asyncio.wait_for(media.wait(), MEDIA_START_SECONDS)
        except TimeoutError:
            meeting["error"] = (
                f"the meeting's video did not start within {MEDIA_START_SECONDS} s of joining, before "
                f"anything under test began; its connection events: {meeting['events']}"
            )
        else:
            meeting["media_at"] = self.t()
            if self.args.meeting_turn_uri:
                meeting["relay"] = await self.relay_of(subscriber)
            ready.set()
            await self.meeting_time()
            if self.args.meeting_turn_uri:
                with contextlib.suppress(Exception):
                    meeting["relay_at_leave"] = await self.relay_of(subscriber)
        meeting["connected_at_leave"] = {
            "publisher": int(publisher.connection_state),
            "subscriber": int(subscriber.connection_state),
        }
        meeting["left_at"] = self.t()
        stop.set()
        for room in (publisher, subscriber):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(room.disconnect(), 5)
        for task in tasks:
            task.cancel()
        meeting["frames"] = len(frames)
        gaps = [b - a for a, b in itertools.pairwise(frames)]
        meeting["max_gap_s"] = round(max(gaps), 2) if gaps else None
        ready.set()

    async def meeting_time(self) -> None:
        """The meeting lasts --meeting-seconds; with --end-on-stop it leaves as soon as the stop file
        appears (a test that only needs a meeting on while it looks, not a meeting of a given length)."""
        end = time.monotonic() + self.args.meeting_seconds
        stop_file = Path(self.args.stop_file)
        while time.monotonic() < end:
            if getattr(self.args, "end_on_stop", False) and stop_file.exists():
                return
            await asyncio.sleep(min(0.5, max(0.0, end - time.monotonic())))

    async def _empty(self, node: dict[str, str]) -> bool:
        return await self.participants(node) == 0

    # ----------------------------------------------------------------------- the probe

    async def probe_node(self, number: int, *, avoid: str | None = None) -> dict[str, str] | None:
        """The next SFU node in rotation from `number` that passes its health check (skipping
        `avoid`); the ones skipped as unhealthy are counted."""
        probe = self.report["probe"]
        for offset in range(len(self.nodes)):
            candidate = self.nodes[(number + offset) % len(self.nodes)]
            if candidate["name"] == avoid:
                continue
            if await self.healthy(candidate):
                return candidate
            probe["skipped_unhealthy"][candidate["name"]] = (
                probe["skipped_unhealthy"].get(candidate["name"], 0) + 1
            )
        return None

    async def probe_join(self, node: dict[str, str], number: int) -> str | None:
        """One probe join through `node`: None when it got in (counted in ok, join_ms, per_node and
        per_turn), else what went wrong. The room is deleted afterwards either way."""
        from livekit import api, rtc

        probe = self.report["probe"]
        room_name = f"upgrade-probe-{number}-{secrets.token_hex(2)}"
        started = time.monotonic()
        room = rtc.Room()
        lk, session = await self.api(node)
        try:
            # A join as Meet's clients make it: the token names the room and the join creates it (no
            # room-API call first). LiveKit retries a join whose room was placed on a node that does
            # not answer (signal_relay.connect_attempts, choosing the node again each time); its
            # room API does not, so a CreateRoom in the seconds after a node's death can answer 504.
            await connect_room(room, self.ws_base(node), self.token(room_name, "probe"), self.options(), 15)
            if room.connection_state != rtc.ConnectionState.CONN_CONNECTED:
                raise RuntimeError(f"connection state {int(room.connection_state)}")
            if self.args.relay:
                relay = await self.relay_of(room)
                if relay is None or relay.startswith("not relayed"):
                    raise RuntimeError(f"media pair not through TURN: {relay or 'no pair selected'}")
                probe["per_turn"][relay] = probe["per_turn"].get(relay, 0) + 1
            probe["ok"] += 1
            probe["join_ms"].append(round((time.monotonic() - started) * 1000))
            probe["per_node"][node["name"]] = probe["per_node"].get(node["name"], 0) + 1
            return None
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"[:300]
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(room.disconnect(), 5)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(lk.room.delete_room(api.DeleteRoomRequest(room=room_name)), 5)
            with contextlib.suppress(Exception):
                await lk.aclose()
                await session.close()

    async def probe_once(self, number: int) -> None:
        probe = self.report["probe"]
        node = await self.probe_node(number)
        probe["joins"] += 1
        if node is None:
            probe["failures"].append(
                {"t": self.t(), "node": None, "error": "no SFU node passes its health check"}
            )
            return
        error = await self.probe_join(node, number)
        if error is not None:
            probe["failures"].append({"t": self.t(), "node": node["name"], "error": error})

    CONCURRENT_PROBES = False
    """True: each probe join starts on the clock in its own task (the drills: `Drill`)."""

    async def probes(self, meeting_done: asyncio.Task[Any]) -> None:
        """A probe join every --probe-interval s until the meeting has left after the stop file: one
        after the other, or with CONCURRENT_PROBES each in its own task, so a join hanging on a node
        lost under it (up to the 15 s connect timeout) never holds back the joins after it."""
        number = 0
        stop_file = Path(self.args.stop_file)
        running: set[asyncio.Task[None]] = set()
        while True:
            tick = time.monotonic()
            task = asyncio.ensure_future(self.probe_once(number))
            running.add(task)
            task.add_done_callback(running.discard)
            if not self.CONCURRENT_PROBES:
                await task
            number += 1
            if stop_file.exists() and meeting_done.done():
                break
            if time.monotonic() - self.started > self.args.max_seconds:
                self.report["probe"]["failures"].append(
                    {"t": self.t(), "node": None, "error": "harness ran out of time"}
                )
                break
            await asyncio.sleep(max(0.0, self.args.probe_interval - (time.monotonic() - tick)))
        if running:
            await asyncio.gather(*running)

    async def run(self) -> None:
        bundle = trust_bundle(self.ca_pem)
        self.ssl: ssl.SSLContext = ssl_context(bundle)
        ready = asyncio.Event()
        meeting = asyncio.ensure_future(self.meeting(ready))
        await ready.wait()
        Path(self.args.ready_file).write_text(json.dumps(self.report["meeting"]), encoding="utf-8")
        await self.probes(meeting)
        await meeting


def harness_parser(description: str, *, max_seconds: float) -> argparse.ArgumentParser:
    """The arguments every traffic script of the lab tests takes (this one, drill_traffic.py,
    drill_join_load.py): the 0600 outputs file, where the report goes, the ready/stop handshake."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--outputs-file", required=True)
    parser.add_argument("--report", required=True)
    parser.add_argument("--ready-file", required=True, help="written once the traffic is running")
    parser.add_argument("--stop-file", required=True, help="the traffic winds down once this exists")
    parser.add_argument("--max-seconds", type=float, default=max_seconds, help="stops by itself after this")
    return parser


def run_harness(
    harness_class: type[Traffic], args: argparse.Namespace, report: Callable[[Any], Any] | None = None
) -> int:
    """Run one traffic harness against the stack's SFU nodes and always write its report (even when it
    fails or is interrupted), so the test reads what happened up to that point."""
    outputs = json.loads(Path(args.outputs_file).read_text(encoding="utf-8"))
    args.nodes = [
        {"name": h["name"], "private_ip": h["private_ip"], "public_ip": h.get("public_ip") or h["private_ip"]}
        for h in outputs["inventory"]["groups"]["sfu"]
    ]
    harness = harness_class(args, outputs)

    async def run_and_settle() -> None:
        try:
            await harness.run()
        finally:
            await settle_connects()

    try:
        asyncio.run(run_and_settle())
    finally:
        content = report(harness) if report else harness.report
        Path(args.report).write_text(json.dumps(content, indent=2), encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = harness_parser(__doc__.splitlines()[0], max_seconds=1200)
    parser.add_argument("--meeting-seconds", type=float, default=90)
    parser.add_argument("--probe-interval", type=float, default=3)
    parser.add_argument("--metrics-port", type=int, default=6789)
    parser.add_argument(
        "--scheme",
        choices=("wss", "ws"),
        default="wss",
        help="ws only to try the harness against a local server without TLS",
    )
    parser.add_argument("--port", type=int, help="signalling port (default: 443 through nginx)")
    parser.add_argument("--relay", action="store_true", help="probe joins relay only (TURN rollouts)")
    parser.add_argument(
        "--end-on-stop", action="store_true", help="the meeting leaves once the stop file appears"
    )
    parser.add_argument(
        "--meeting-turn-uri",
        help="relay the meeting only through this TURN server (turn:IP:3478?transport=udp)",
    )
    return run_harness(Traffic, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
