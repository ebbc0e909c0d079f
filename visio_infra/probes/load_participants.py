"""Synthetic participants for `visio loadtest`: real LiveKit SDK clients in real rooms.

Each participant joins its room through one of the SFU signalling URLs (rooms spread over the SFU
addresses in turn, as DNS round-robin spreads clients), publishes the synthetic camera and microphone
of visio_infra/probes/livekit_call.py, subscribes to everyone else, and counts the video frames it
decodes. Bounded: joins give up after `join_timeout`, the steady window lasts `duration`, and every
room is left and deleted at the end whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from visio_infra.model.loadtest import LoadPlan, ParticipantResult, media_stats
from visio_infra.probes.livekit_call import (
    AUDIO_RATE,
    VIDEO_SIZE,
    _produce,
    connect_room,
    join_token,
    settle_connects,
    ssl_context,
)


@dataclass(frozen=True)
class LoadTarget:
    urls: Sequence[tuple[str, str]]
    """(signalling URL, API URL) of each SFU node."""
    api_key: str
    api_secret: str
    ca_file: str | None


class _Participant:
    def __init__(self, room: str, identity: str):
        self.result = ParticipantResult(room=room, identity=identity)
        self.counting = False
        self.tracks: list[asyncio.Task[Any]] = []
        self.started = 0.0
        self.room: Any = None

    async def read_media(self) -> None:
        """WebRTC's video counters of this participant (why frames were thin, when they were)."""
        if self.room is None or not self.result.joined:
            return
        with contextlib.suppress(Exception):  # a figure for the report, never a failure of the run
            stats = await asyncio.wait_for(self.room.get_rtc_stats(), 5)
            self.result.media = media_stats([*stats.publisher_stats, *stats.subscriber_stats])


async def run_load(
    target: LoadTarget,
    plan: LoadPlan,
    *,
    on_steady: Callable[[], Any],
    join_timeout: float = 30.0,
) -> tuple[list[ParticipantResult], float]:
    """Run the plan; `on_steady()` is awaited when every join ended and again when the window ends
    (the caller reads the SFU counters there). Returns the results and the window's length."""
    from livekit import api, rtc

    run_id = secrets.token_hex(3)
    rooms = [f"visio-load-{run_id}-{i + 1}" for i in range(plan.rooms)]
    options_config = (
        rtc.RtcConfiguration(ice_transport_type=rtc.IceTransportType.TRANSPORT_RELAY) if plan.relay else None
    )
    stop = asyncio.Event()
    people: list[_Participant] = []
    rtc_rooms: list[Any] = []
    producers: list[asyncio.Task[Any]] = []

    async def consume(person: _Participant, track: Any) -> None:
        stream = rtc.VideoStream(track)
        try:
            async for _event in stream:
                if person.result.join_to_first_frame_s is None:
                    person.result.join_to_first_frame_s = round(time.monotonic() - person.started, 3)
                if person.counting:
                    person.result.video_frames += 1
                if stop.is_set():
                    break
        finally:
            await stream.aclose()

    async def join(person: _Participant, url: str) -> None:
        room = rtc.Room()
        rtc_rooms.append(room)
        person.room = room

        @room.on("track_subscribed")
        def _on_track(track: Any, _publication: Any, _participant: Any) -> None:
            if track.kind == rtc.TrackKind.KIND_VIDEO:
                person.result.remote_tracks += 1
                person.tracks.append(asyncio.ensure_future(consume(person, track)))

        person.started = time.monotonic()
        try:
            options = rtc.RoomOptions(auto_subscribe=True, rtc_config=options_config, connect_timeout=10)
            jwt = join_token(
                target.api_key, target.api_secret, person.result.room, person.result.identity,
                ttl_seconds=plan.duration + 600,
            )
            await connect_room(room, url, jwt, options, join_timeout)
            video = rtc.VideoSource(*VIDEO_SIZE)
            audio = rtc.AudioSource(AUDIO_RATE, 1)
            camera = rtc.LocalVideoTrack.create_video_track(f"{person.result.identity}-camera", video)
            microphone = rtc.LocalAudioTrack.create_audio_track(f"{person.result.identity}-mic", audio)
            producers.append(asyncio.ensure_future(_produce(rtc, video, audio, stop)))
            await asyncio.wait_for(room.local_participant.publish_track(
                camera, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA)), join_timeout)
            await asyncio.wait_for(room.local_participant.publish_track(
                microphone, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)), join_timeout)
            person.result.joined = True
        except Exception as exc:  # a failed join is a figure of the load test, never a crash
            person.result.error = f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}"[:300]

    import aiohttp

    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=ssl_context(target.ca_file)),
        timeout=aiohttp.ClientTimeout(total=10),
    )
    managers = [
        api.LiveKitAPI(api_url, target.api_key, target.api_secret, session=session, failover=False)
        for _, api_url in target.urls
    ]
    window = 0.0
    try:
        joins = []
        for index, room in enumerate(rooms):
            url, _ = target.urls[index % len(target.urls)]
            for p in range(plan.participants):
                person = _Participant(room, f"load-{index + 1}-{p + 1}")
                people.append(person)
                joins.append(join(person, url))
        await asyncio.gather(*joins)
        await asyncio.sleep(3)  # subscriptions of the last joins settle before the window opens
        for person in people:
            person.counting = True
        await on_steady()
        opened = time.monotonic()
        await asyncio.sleep(plan.duration)
        for person in people:
            person.counting = False
        window = time.monotonic() - opened
        await on_steady()
        await asyncio.gather(*(person.read_media() for person in people))
    finally:
        stop.set()
        for room in rtc_rooms:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(room.disconnect(), 5)
        for task in [*producers, *(t for person in people for t in person.tracks)]:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*producers, return_exceptions=True), 5)
        for index, room_name in enumerate(rooms):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    managers[index % len(managers)].room.delete_room(api.DeleteRoomRequest(room=room_name)),
                    10,
                )
        await settle_connects()
        await session.close()
    return [person.result for person in people], window
