"""Call traffic for the fault drills (run as its own process by test_drill_sfu.py / test_drill_turn.py).

Like tests/lab/upgrade_traffic.py (whose probe it reuses), but the meeting survives a lost machine:
- A meeting: a publisher and a subscriber in one room hosted on one SFU node, signalling through
  that node's address (as a client whose DNS answer was that node). With --meeting-relay, relay-only
  ICE through the TURN servers the SFU hands out (every TURN node), and the report names the relay
  the media used.
- Recovery: the LiveKit SDK's own reconnection (ICE restart, signal resume) gets the first try.
  When the subscriber receives no video for --stall-seconds, or a participant is disconnected, the
  test client rejoins the same room the way the Meet front end does after a failed reconnect: a new
  connection of both participants through the next SFU address that passes the health check a
  browser's connection fallback amounts to (GET / through TLS answers 200), retried every second
  until --rejoin-deadline. That rejoin is the test client's logic, not LiveKit's.
- Every time is also recorded on the wall clock (`wall`), so the test can measure from the moment
  it cut the power.
- The probe: a new participant in a new room every --probe-interval s through the SFU addresses in
  turn (upgrade_traffic's probe; with --relay, relay only).
The report (JSON, no secret) goes to --report. Keys and CA come from the 0600 outputs file.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.lab.upgrade_traffic import Traffic, harness_parser, run_harness
from visio_infra.probes.livekit_call import AUDIO_RATE, VIDEO_SIZE, _produce, connect_room


class Drill(Traffic):
    """The meeting of a fault drill: placed on one node, rejoined elsewhere when that node is lost."""

    CONCURRENT_PROBES = True
    """Probe joins start on their clock whatever the ones before them do: a join hanging on the node
    cut under it must not hold back the joins that show the stack still takes new meetings."""

    def options(self, *, meeting: bool = False) -> Any:
        from livekit import rtc

        if meeting and self.args.meeting_relay:
            rtc_config = rtc.RtcConfiguration(ice_transport_type=rtc.IceTransportType.TRANSPORT_RELAY)
            return rtc.RoomOptions(auto_subscribe=True, rtc_config=rtc_config, connect_timeout=10)
        return super().options(meeting=meeting)

    def event(self, who: str, what: str, **extra: Any) -> None:
        self.report["meeting"]["events"].append(
            {"t": self.t(), "wall": round(time.time(), 3), "who": who, "event": what, **extra}
        )

    async def host_of(self, expect_participants: int = 2) -> str | None:
        """The SFU node whose metrics count the meeting's participants (the others count none)."""
        counts = await asyncio.gather(*[self.participants(n) for n in self.nodes])
        hosting = [n["name"] for n, c in zip(self.nodes, counts, strict=True) if c >= expect_participants]
        return hosting[0] if len(hosting) == 1 else None

    async def healthy_node(self, start: int) -> dict[str, str] | None:
        for offset in range(len(self.nodes)):
            node = self.nodes[(start + offset) % len(self.nodes)]
            if await self.healthy(node):
                return node
        return None

    async def join(self, node: dict[str, str], room: str) -> tuple[Any, Any, asyncio.Event]:
        """Both participants in `room` through `node`, the publisher publishing; returns them and an
        event set at the subscriber's first video frame of this connection."""
        from livekit import rtc

        publisher, subscriber = rtc.Room(), rtc.Room()
        first_frame = asyncio.Event()
        for who, room_ in (("publisher", publisher), ("subscriber", subscriber)):
            for name in ("disconnected", "reconnecting", "reconnected"):
                room_.on(name, lambda *_a, _n=name, _w=who: self.event(_w, _n))

        async def consume(track: Any) -> None:
            stream = rtc.VideoStream(track)
            async for _event in stream:
                self.frames.append(time.time())
                first_frame.set()
                if self.stop.is_set():
                    break
            await stream.aclose()

        @subscriber.on("track_subscribed")
        def _track(track: Any, *_rest: Any) -> None:
            if track.kind == rtc.TrackKind.KIND_VIDEO:
                self.tasks.append(asyncio.ensure_future(consume(track)))

        try:
            for who, room_ in (("publisher", publisher), ("subscriber", subscriber)):
                token = self.token(room, f"drill-{who}")
                await connect_room(room_, self.ws_base(node), token, self.options(meeting=True), 15)
            await asyncio.wait_for(
                publisher.local_participant.publish_track(
                    rtc.LocalVideoTrack.create_video_track("camera", self.video),
                    rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA),
                ),
                15,
            )
            await asyncio.wait_for(
                publisher.local_participant.publish_track(
                    rtc.LocalAudioTrack.create_audio_track("microphone", self.audio),
                    rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE),
                ),
                15,
            )
        except BaseException:
            await self.leave(publisher, subscriber)
            raise
        return publisher, subscriber, first_frame

    @staticmethod
    async def leave(*rooms: Any) -> None:
        for room in rooms:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(room.disconnect(), 3)

    async def relays(self, publisher: Any, subscriber: Any) -> dict[str, str | None]:
        result: dict[str, str | None] = {}
        for who, room in (("publisher", publisher), ("subscriber", subscriber)):
            try:
                result[who] = await self.relay_of(room)
            except Exception as exc:
                result[who] = f"unknown ({type(exc).__name__})"
        return result

    async def meeting(self, ready: asyncio.Event) -> None:
        from livekit import api, rtc

        meeting = self.report["meeting"]
        self.frames: list[float] = []
        self.tasks: list[asyncio.Task[Any]] = []
        self.stop = asyncio.Event()
        self.video = rtc.VideoSource(*VIDEO_SIZE)
        self.audio = rtc.AudioSource(AUDIO_RATE, 1)
        self.tasks.append(asyncio.ensure_future(_produce(rtc, self.video, self.audio, self.stop)))
        publisher = subscriber = None
        # 1. Place the meeting: the room must be hosted by the node its signalling goes through.
        for attempt in range(12):
            node = self.nodes[attempt % len(self.nodes)]
            room = f"drill-meeting-{secrets.token_hex(3)}"
            lk, session = await self.api(node)
            try:
                await lk.room.create_room(api.CreateRoomRequest(name=room, empty_timeout=120))
            finally:
                await lk.aclose()
                await session.close()
            try:
                publisher, subscriber, first = await self.join(node, room)
                await asyncio.wait_for(first.wait(), 15)
            except Exception as exc:
                self.event("meeting", "placement failed", error=f"{type(exc).__name__}: {exc}"[:200])
                continue
            if await self.host_of() == node["name"]:
                meeting.update({"room": room, "node": node["name"], "placement_attempts": attempt + 1})
                break
            await self.leave(publisher, subscriber)
            publisher = subscriber = None
        if publisher is None or subscriber is None:
            meeting["error"] = "could not place the meeting on the node its signalling uses"
            ready.set()
            return
        meeting["joined_at"] = self.t()
        if self.args.meeting_relay:
            meeting["relay"] = await self.relays(publisher, subscriber)
        ready.set()

        # 2. Keep the meeting on until --meeting-seconds, rejoining when it is lost.
        end = time.monotonic() + self.args.meeting_seconds
        attempt = 0
        lost_at: float | None = None
        while time.monotonic() < end:
            await asyncio.sleep(0.2)
            stalled = time.time() - (self.frames[-1] if self.frames else 0) > self.args.stall_seconds
            gone = any(
                r.connection_state == rtc.ConnectionState.CONN_DISCONNECTED for r in (publisher, subscriber)
            )
            if lost_at is None and time.time() - self.frames[-1] > 1.0:
                # The first gap over a second: when the media stopped, on the wall clock.
                self.event("meeting", "media stopped", last_frame_wall=round(self.frames[-1], 3))
                lost_at = self.frames[-1]
            if lost_at is not None and self.frames[-1] > lost_at and not (stalled or gone):
                gap = round(self.frames[-1] - lost_at, 2)
                self.event("meeting", "media back", gap_s=gap, relay=None)
                meeting.setdefault("recoveries", []).append(
                    {"how": "sdk", "lost_wall": round(lost_at, 3), "back_wall": round(self.frames[-1], 3)}
                )
                lost_at = None
            if not (stalled or gone):
                continue
            # 3. The test client's rejoin, through the next healthy SFU address, until it works.
            self.event("meeting", "rejoin", stalled=stalled, disconnected=gone)
            # Leaving a dead node's connections may hang until timeouts: never wait for it.
            self.tasks.append(asyncio.ensure_future(self.leave(publisher, subscriber)))
            deadline = time.monotonic() + self.args.rejoin_deadline
            rejoined = False
            while time.monotonic() < deadline:
                attempt += 1
                found = await self.healthy_node(attempt)
                if found is None:
                    self.event("meeting", "rejoin: no healthy SFU address")
                    await asyncio.sleep(1)
                    continue
                node = found
                try:
                    publisher, subscriber, first = await self.join(node, meeting["room"])
                    await asyncio.wait_for(first.wait(), 10)
                except Exception as exc:
                    self.event(
                        "meeting",
                        "rejoin failed",
                        node=node["name"],
                        error=f"{type(exc).__name__}: {exc}"[:200],
                    )
                    await asyncio.sleep(1)
                    continue
                rejoined = True
                back = {
                    "how": "rejoin",
                    "lost_wall": round(lost_at or self.frames[-1], 3),
                    "back_wall": round(self.frames[-1], 3),
                    "signalling_node": node["name"],
                    "attempts": attempt,
                    "host": await self.host_of(),
                }
                if self.args.meeting_relay:
                    back["relay"] = await self.relays(publisher, subscriber)
                meeting.setdefault("recoveries", []).append(back)
                self.event("meeting", "rejoined", **back)
                lost_at = None
                break
            if not rejoined:
                meeting["error"] = f"no rejoin within {self.args.rejoin_deadline} s"
                break
        if self.args.meeting_relay:
            with contextlib.suppress(Exception):
                meeting["relay_at_leave"] = await self.relays(publisher, subscriber)
        meeting["host_at_leave"] = await self.host_of()
        meeting["connected_at_leave"] = {
            "publisher": int(publisher.connection_state),
            "subscriber": int(subscriber.connection_state),
        }
        meeting["left_at"] = self.t()
        self.stop.set()
        await self.leave(publisher, subscriber)
        for task in self.tasks:
            task.cancel()
        meeting["frames"] = len(self.frames)
        ready.set()

    async def probe_once(self, number: int) -> None:
        """One probe join, as a browser makes it through a round-robin name: through the next SFU
        address that answers; when that node dies under the join (the connect fails and the node no
        longer passes its health check), once more through the next address that answers. Such a
        join is counted as a fallback, with the node and the first error, never hidden; a join that
        fails on a node still healthy, or fails again, is a failure."""
        probe = self.report["probe"]
        started = round(time.time(), 3)
        probe.setdefault("wall", []).append(started)
        probe.setdefault("fallbacks", [])
        node = await self.probe_node(number)
        probe["joins"] += 1
        if node is None:
            probe["failures"].append({
                "t": self.t(), "node": None, "error": "no SFU node passes its health check",
                "wall": round(time.time(), 3), "started_wall": started,
            })
            return
        error = await self.probe_join(node, number)
        if error is None:
            return
        fallback = None if await self.healthy(node) else await self.probe_node(number + 1, avoid=node["name"])
        if fallback is not None:
            second = await self.probe_join(fallback, number)
            if second is None:
                probe["fallbacks"].append({"t": self.t(), "node": node["name"], "error": error,
                                           "then": fallback["name"], "started_wall": started,
                                           "wall": round(time.time(), 3)})
                return
            error = f"{error}; then through {fallback['name']}: {second}"
        probe["failures"].append({"t": self.t(), "node": node["name"], "error": error,
                                  "wall": round(time.time(), 3), "started_wall": started})


def main(argv: list[str] | None = None) -> int:
    parser = harness_parser(__doc__.splitlines()[0], max_seconds=600)
    parser.add_argument("--meeting-seconds", type=float, default=90)
    parser.add_argument("--probe-interval", type=float, default=1.5)
    parser.add_argument("--metrics-port", type=int, default=6789)
    parser.add_argument("--stall-seconds", type=float, default=4)
    parser.add_argument("--rejoin-deadline", type=float, default=90)
    parser.add_argument("--relay", action="store_true", help="probe joins relay only")
    parser.add_argument(
        "--meeting-relay", action="store_true", help="the meeting relay only (every TURN node)"
    )
    args = parser.parse_args(argv)
    args.scheme, args.port, args.meeting_turn_uri = "wss", None, None
    return run_harness(Drill, args)


if __name__ == "__main__":
    sys.exit(main())
