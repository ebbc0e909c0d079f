"""A real call through a ministry's LiveKit SFU (and its coturn), from outside the deployment.

Two participants join a fresh room with tokens signed by the stack's API key; one publishes a
synthetic camera (moving colour bars) and microphone (a tone); the other must receive decoded video
and audio frames. The same call runs with default ICE (host/srflx candidates straight to the SFU) and
with the ICE transport forced to relay, so media has to go through the ministry's own TURN servers
(the ones LiveKit hands out from its `rtc.turn_servers`, or an explicit TURN URI such as
`turns:<turn>:443?transport=tcp`). The report names the candidate pair that carried the media (from
the WebRTC stats) and the time from joining to the first received video frame.

Sovereignty: the probe only talks to the URLs it is given; the API client's LiveKit-Cloud region
failover is switched off, and no public STUN server is ever configured.

Secrets (API key and secret, TURN shared secret) come from environment variables or the 0600 file
`visio verify` writes, never from the command line. Run as a module:
    python -m visio_infra.probes.livekit_call --url wss://10.77.0.74 --api-url https://10.77.0.74 \
        --ca-file ca.pem --mode direct --mode relay --outputs-file "$VISIO_VERIFY_OUTPUTS"
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import math
import os
import secrets
import ssl
import sys
import tempfile
import time
from array import array
from dataclasses import asdict, dataclass, field
from typing import Any

MODES = ("direct", "relay", "relay-tls")
"""direct: default ICE; relay: relay only, TURN servers handed out by the SFU;
relay-tls: relay only, through one explicit `turns:` URI (TLS, 443 by default)."""

VIDEO_SIZE = (320, 240)
VIDEO_FPS = 15
AUDIO_RATE = 48000
AUDIO_FRAME_MS = 10
FRAMES_WANTED = 10
"""Video frames the subscriber must decode before the call counts as working."""


@dataclass
class CandidateInfo:
    """One side of the selected ICE candidate pair."""

    type: str
    protocol: str
    address: str
    port: int
    relay_protocol: str = ""
    url: str = ""


@dataclass
class CallReport:
    """What one call showed. `passed` is False with `error` set whenever anything went wrong."""

    mode: str
    url: str
    room: str
    passed: bool = False
    error: str = ""
    join_ms: float | None = None
    """Both participants connected (signalling, ICE and DTLS done), from the start of the join."""
    first_video_ms: float | None = None
    """First decoded video frame at the subscriber, from the start of the join."""
    first_audio_ms: float | None = None
    video_frames: int = 0
    audio_frames: int = 0
    subscriber_pair: dict[str, CandidateInfo] = field(default_factory=dict)
    publisher_pair: dict[str, CandidateInfo] = field(default_factory=dict)
    room_deleted: bool = False
    elapsed_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        def pair(p: dict[str, CandidateInfo]) -> str:
            if not p:
                return "unknown pair"
            local, remote = p.get("local"), p.get("remote")
            def one(c: CandidateInfo | None) -> str:
                if c is None:
                    return "?"
                relay = f" via {c.relay_protocol} {c.url}".rstrip() if c.type == "relay" else ""
                return f"{c.type} {c.protocol} {c.address}:{c.port}{relay}"
            return f"{one(local)} -> {one(remote)}"
        state = "ok" if self.passed else f"FAILED ({self.error})"
        timing = f"first video {self.first_video_ms} ms" if self.first_video_ms is not None else "no video"
        return f"{self.mode}: {state}; {timing}; subscriber {pair(self.subscriber_pair)}"


# --------------------------------------------------------------------------- TLS trust


def trust_bundle(ca_pem: str | None) -> str | None:
    """Write a CA bundle (system roots + the stack CA) and point the native SDK at it.

    The LiveKit FFI library (Rust, rustls) reads SSL_CERT_FILE; Python's aiohttp gets an SSLContext.
    Returns the bundle path (the caller removes it) or None when no extra CA is needed.
    """
    if not ca_pem:
        return None
    system = ssl.get_default_verify_paths().cafile
    parts = []
    if system and os.path.exists(system):
        with open(system, encoding="utf-8") as handle:
            parts.append(handle.read())
    parts.append(ca_pem.strip() + "\n")
    fd, path = tempfile.mkstemp(prefix="visio-ca-", suffix=".pem")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("\n".join(parts))
    os.environ["SSL_CERT_FILE"] = path
    return path


def ssl_context(ca_file: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


# --------------------------------------------------------------------------- media


AUDIO_TONE_HZ = 400
"""A whole number of periods per 10 ms frame, so one precomputed frame repeats seamlessly."""
AUDIO_CHUNK_MS = 100
"""Audio is handed to the SDK 100 ms at a time (its source queues up to 1 s): ten calls a second per
participant, not a hundred. Each call is a round trip through the SDK's FFI and the event loop; with
6 participants in one process and 10 ms chunks, a contended CPU starved the camera loop (measured on
the lab with the host's two cores busy: 3.5 frames per second sent for 15)."""
AUDIO_BACKLOG_CHUNKS = 5
"""A producer later than this many audio chunks drops the older ones (a real microphone does the
same) rather than queueing seconds of audio behind a stalled loop."""


class SyntheticMedia:
    """Precomputed frames: moving colour bars and a tone, cheap enough for a loaded CI machine."""

    def __init__(self, phases: int = 8):
        width, height = VIDEO_SIZE
        self.video: list[bytes] = []
        for phase in range(phases):
            row = bytearray(width * 4)
            shift = phase * width // phases
            for x in range(width):
                bar = ((x + shift) % width) * 8 // width
                row[x * 4 : x * 4 + 4] = bytes(
                    (255 if bar & 1 else 0, 255 if bar & 2 else 0, 255 if bar & 4 else 0, 255)
                )
            self.video.append(bytes(row) * height)
        samples = AUDIO_RATE * AUDIO_FRAME_MS // 1000
        tone = (math.sin(2 * math.pi * AUDIO_TONE_HZ * i / AUDIO_RATE) for i in range(samples))
        pcm = array("h", (int(8000 * value) for value in tone))
        repeat = AUDIO_CHUNK_MS // AUDIO_FRAME_MS
        self.audio = pcm.tobytes() * repeat
        self.samples = samples * repeat

    def video_frame(self, rtc: Any, index: int) -> Any:
        width, height = VIDEO_SIZE
        return rtc.VideoFrame(width, height, rtc.VideoBufferType.RGBA, self.video[index % len(self.video)])

    def audio_frame(self, rtc: Any) -> Any:
        return rtc.AudioFrame(self.audio, AUDIO_RATE, 1, self.samples)


@dataclass
class MediaPacer:
    """When a synthetic camera and microphone are due, as a real one paces them: the camera at
    VIDEO_FPS, dropping the frames a late loop missed (never a burst to catch up), the microphone in
    AUDIO_CHUNK_MS chunks, continuous unless more than AUDIO_BACKLOG_CHUNKS behind. Pure: `now` is
    seconds since the start."""

    audio_next: int = 0
    video_next: int = 0

    def audio_chunks(self, now: float) -> int:
        """How many audio chunks to capture now."""
        due = math.floor(now * 1000 / AUDIO_CHUNK_MS) + 1 - self.audio_next
        if due > AUDIO_BACKLOG_CHUNKS:
            self.audio_next += due - AUDIO_BACKLOG_CHUNKS
            due = AUDIO_BACKLOG_CHUNKS
        due = max(due, 0)
        self.audio_next += due
        return due

    def video_frame(self, now: float) -> int | None:
        """The index of the video frame to capture now, or None if none is due."""
        if self.video_next / VIDEO_FPS > now:
            return None
        index = self.video_next
        self.video_next = max(index + 1, math.floor(now * VIDEO_FPS) + 1)
        return index

    def sleep(self, now: float) -> float:
        """Seconds until the next capture is due."""
        due = min(self.audio_next * AUDIO_CHUNK_MS / 1000, self.video_next / VIDEO_FPS)
        return max(due - now, 0.0)


async def _produce(rtc: Any, video: Any, audio: Any, stop: asyncio.Event) -> None:
    """Feed the sources at real-time pace until told to stop."""
    media = SyntheticMedia()
    pacer = MediaPacer()
    started = time.monotonic()
    while not stop.is_set():
        now = time.monotonic() - started
        for _ in range(pacer.audio_chunks(now)):
            await audio.capture_frame(media.audio_frame(rtc))
        index = pacer.video_frame(now)
        if index is not None:
            video.capture_frame(media.video_frame(rtc, index))
        await asyncio.sleep(pacer.sleep(time.monotonic() - started))


# --------------------------------------------------------------------------- stats


_CANDIDATE_TYPES = {0: "host", 1: "srflx", 2: "prflx", 3: "relay"}
_RELAY_PROTOCOLS = {0: "udp", 1: "tcp", 2: "tls"}


def selected_pair(stats: list[Any]) -> dict[str, CandidateInfo]:
    """The candidate pair media flows on, from a list of WebRTC stats (pure over the proto objects).

    Prefers the transport's `selected_candidate_pair_id`; else the nominated succeeded pair that
    carried the most bytes.
    """
    pairs: dict[str, Any] = {}
    candidates: dict[str, Any] = {}
    selected_ids: list[str] = []
    for item in stats:
        kind = item.WhichOneof("stats")
        if kind == "candidate_pair":
            pairs[item.candidate_pair.rtc.id] = item.candidate_pair.candidate_pair
        elif kind in ("local_candidate", "remote_candidate"):
            holder = getattr(item, kind)
            candidates[holder.rtc.id] = holder.candidate
        elif kind == "transport" and item.transport.transport.selected_candidate_pair_id:
            selected_ids.append(item.transport.transport.selected_candidate_pair_id)
    chosen = next((pairs[i] for i in selected_ids if i in pairs), None)
    if chosen is None and pairs:
        chosen = max(
            pairs.values(),
            key=lambda p: (bool(p.nominated), p.bytes_received + p.bytes_sent),
        )
    if chosen is None:
        return {}
    result = {}
    for side, cid in (("local", chosen.local_candidate_id), ("remote", chosen.remote_candidate_id)):
        c = candidates.get(cid)
        if c is None:
            continue
        result[side] = CandidateInfo(
            type=_CANDIDATE_TYPES.get(c.candidate_type, str(c.candidate_type)),
            protocol=c.protocol,
            address=c.address,
            port=c.port,
            relay_protocol=_RELAY_PROTOCOLS.get(c.relay_protocol, "") if c.HasField("relay_protocol") else "",
            url=c.url,
        )
    return result


# --------------------------------------------------------------------------- the call


def join_token(key: str, secret: str, room: str, identity: str, ttl_seconds: float = 600) -> str:
    """A token for `identity` to join `room`, publish and subscribe, signed with the stack's API key.

    The one place the probes (verify's call, the load test, the lab's traffic harnesses) mint join
    tokens, so they all join with the same grants; each caller picks a lifetime that covers its stay.
    """
    from livekit import api

    grants = api.VideoGrants(room_join=True, room=room, can_publish=True, can_subscribe=True)
    return (
        api.AccessToken(key, secret)
        .with_identity(identity)
        .with_ttl(datetime.timedelta(seconds=ttl_seconds))
        .with_grants(grants)
        .to_jwt()
    )


@dataclass
class CallSettings:
    url: str
    api_url: str
    api_key: str
    api_secret: str
    ca_file: str | None = None
    ice_servers: list[dict[str, Any]] = field(default_factory=list)
    """For relay-tls: [{"urls": [...], "username": ..., "password": ...}]."""
    timeout: float = 30.0


async def _bounded(coro: Any, seconds: float) -> Any:
    return await asyncio.wait_for(coro, timeout=seconds)


_UNFINISHED_CONNECTS: set[asyncio.Task[Any]] = set()
"""Connects that outlived their caller's timeout, kept until they end (see connect_room)."""


async def connect_room(room: Any, url: str, token: str, options: Any, seconds: float) -> None:
    """`room.connect` bounded by `seconds`, without ever cancelling the connect itself.

    The SDK's Rust side goes on connecting when the Python side gives up; once it gets through it
    waits for the Python room to say it is ready, and livekit 1.2.1 aborts the whole process when
    nobody does ("FFI Panic: timed out waiting for ReadyForRoomEventRequest", seen under load in a lab
    drill). So on timeout the connect keeps running in the background, the room is disconnected once
    it gets through, and the caller gets TimeoutError. `settle_connects` waits for the stragglers
    before a process ends."""
    task = asyncio.ensure_future(room.connect(url, token, options))
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if task in done:
        task.result()
        return
    _UNFINISHED_CONNECTS.add(task)

    def _ended(finished: asyncio.Task[Any]) -> None:
        _UNFINISHED_CONNECTS.discard(finished)
        if not finished.cancelled() and finished.exception() is None:
            leave = asyncio.ensure_future(room.disconnect())
            _UNFINISHED_CONNECTS.add(leave)
            leave.add_done_callback(_UNFINISHED_CONNECTS.discard)

    task.add_done_callback(_ended)
    raise TimeoutError(f"the connect did not get through within {seconds:.0f} s")


async def settle_connects(seconds: float = 60) -> int:
    """Wait (bounded) for connects that outlived their timeout, and their disconnects; how many were
    still running when asked."""
    pending = len(_UNFINISHED_CONNECTS)
    end = time.monotonic() + seconds
    while _UNFINISHED_CONNECTS and time.monotonic() < end:
        await asyncio.wait(set(_UNFINISHED_CONNECTS), timeout=max(0.1, end - time.monotonic()))
    return pending


async def run_call(settings: CallSettings, mode: str) -> CallReport:
    """One call in `mode`; always cleans up (disconnect, delete the room) within bounded time."""
    from livekit import api, rtc

    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {MODES}")
    room_name = f"visio-verify-{mode}-{secrets.token_hex(4)}"
    report = CallReport(mode=mode, url=settings.url, room=room_name)
    started = time.monotonic()
    deadline = started + settings.timeout

    def left() -> float:
        return max(0.1, deadline - time.monotonic())

    rtc_config = None
    if mode != "direct":
        servers = []
        if mode == "relay-tls":
            servers = [
                rtc.IceServer(urls=s["urls"], username=s.get("username", ""), password=s.get("password", ""))
                for s in settings.ice_servers
            ]
            if not servers:
                report.error = "relay-tls needs an explicit turns: server"
                return report
        rtc_config = rtc.RtcConfiguration(
            ice_transport_type=rtc.IceTransportType.TRANSPORT_RELAY, ice_servers=servers
        )
    options = rtc.RoomOptions(auto_subscribe=True, rtc_config=rtc_config, connect_timeout=10)

    def token(identity: str) -> str:
        return join_token(settings.api_key, settings.api_secret, room_name, identity, ttl_seconds=600)

    import aiohttp

    connector = aiohttp.TCPConnector(ssl=ssl_context(settings.ca_file))
    session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10))
    lkapi = api.LiveKitAPI(
        settings.api_url, settings.api_key, settings.api_secret, session=session, failover=False
    )
    publisher, subscriber = rtc.Room(), rtc.Room()
    stop = asyncio.Event()
    tasks: list[asyncio.Task[Any]] = []
    first_video = asyncio.Event()
    enough = asyncio.Event()
    counts = {"video": 0, "audio": 0}

    async def consume(track: Any, kind: str) -> None:
        stream = rtc.VideoStream(track) if kind == "video" else rtc.AudioStream(track)
        try:
            async for _event in stream:
                counts[kind] += 1
                elapsed = round((time.monotonic() - started) * 1000, 1)
                if kind == "video" and counts[kind] == 1:
                    report.first_video_ms = elapsed
                    first_video.set()
                if kind == "audio" and counts[kind] == 1:
                    report.first_audio_ms = elapsed
                if counts["video"] >= FRAMES_WANTED and counts["audio"] >= FRAMES_WANTED:
                    enough.set()
                if stop.is_set():
                    break
        finally:
            await stream.aclose()

    @subscriber.on("track_subscribed")
    def _on_track(track: Any, _publication: Any, _participant: Any) -> None:
        kind = "video" if track.kind == rtc.TrackKind.KIND_VIDEO else "audio"
        tasks.append(asyncio.ensure_future(consume(track, kind)))

    try:
        await _bounded(lkapi.room.create_room(
            api.CreateRoomRequest(name=room_name, empty_timeout=30, max_participants=2)
        ), left())
        join_started = time.monotonic()
        seconds = left()
        await asyncio.gather(
            connect_room(subscriber, settings.url, token("visio-verify-subscriber"), options, seconds),
            connect_room(publisher, settings.url, token("visio-verify-publisher"), options, seconds),
        )
        video = rtc.VideoSource(*VIDEO_SIZE)
        audio = rtc.AudioSource(AUDIO_RATE, 1)
        camera = rtc.LocalVideoTrack.create_video_track("visio-verify-camera", video)
        microphone = rtc.LocalAudioTrack.create_audio_track("visio-verify-microphone", audio)
        tasks.append(asyncio.ensure_future(_produce(rtc, video, audio, stop)))
        await _bounded(publisher.local_participant.publish_track(
            camera, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA)
        ), left())
        await _bounded(publisher.local_participant.publish_track(
            microphone, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        ), left())
        report.join_ms = round((time.monotonic() - join_started) * 1000, 1)
        try:
            await _bounded(first_video.wait(), left())
            await _bounded(enough.wait(), left())
        except TimeoutError:
            report.error = (
                f"subscriber decoded {counts['video']} video and {counts['audio']} audio frames "
                f"within {settings.timeout:.0f} s (wanted {FRAMES_WANTED} of each)"
            )
        stats = await _bounded(subscriber.get_rtc_stats(), 5)
        report.subscriber_pair = selected_pair(stats.subscriber_stats + stats.publisher_stats)
        pub_stats = await _bounded(publisher.get_rtc_stats(), 5)
        report.publisher_pair = selected_pair(pub_stats.publisher_stats + pub_stats.subscriber_stats)
        if not report.error and mode != "direct":
            for side, pair in (("subscriber", report.subscriber_pair), ("publisher", report.publisher_pair)):
                local = pair.get("local")
                if local is None or local.type != "relay":
                    report.error = f"{side} media did not go through TURN (local candidate {local})"
                    break
        report.passed = not report.error
    except TimeoutError:
        report.error = report.error or f"timed out after {settings.timeout:.0f} s"
    except Exception as exc:  # report, never raise: the suite names the failure
        report.error = f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}"
    finally:
        report.video_frames, report.audio_frames = counts["video"], counts["audio"]
        stop.set()
        for room in (publisher, subscriber):
            with contextlib.suppress(Exception):
                await _bounded(room.disconnect(), 5)
        for task in tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await _bounded(asyncio.gather(*tasks, return_exceptions=True), 5)
        try:
            await _bounded(lkapi.room.delete_room(api.DeleteRoomRequest(room=room_name)), 10)
            report.room_deleted = True
        except Exception as exc:
            if report.passed:
                report.passed = False
                report.error = f"room not deleted: {exc}"
        with contextlib.suppress(Exception):
            await lkapi.aclose()
        with contextlib.suppress(Exception):
            await session.close()
        report.elapsed_ms = round((time.monotonic() - started) * 1000, 1)
    return report


async def run_calls(settings: CallSettings, modes: list[str]) -> list[CallReport]:
    """Calls one after the other (each one its own room) so their timings do not interfere."""
    reports = [await run_call(settings, mode) for mode in modes]
    await settle_connects()
    return reports


# --------------------------------------------------------------------------- command line


def _load_outputs(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    with open(path, encoding="utf-8") as handle:
        return dict(json.load(handle))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A real call through the SFU and TURN of a stack.")
    parser.add_argument("--url", required=True, help="signalling URL, e.g. wss://10.77.0.74")
    parser.add_argument("--api-url", required=True, help="API URL, e.g. https://10.77.0.74")
    parser.add_argument("--mode", action="append", choices=MODES, help="repeatable; default: direct, relay")
    parser.add_argument("--outputs-file", help="stack outputs JSON (0600), for keys, TURN secret and CA")
    parser.add_argument("--ca-file", help="extra CA (PEM) to trust; default: the outputs' ca_certificate")
    parser.add_argument("--turns-uri", help="for relay-tls, e.g. turns:turn.example:443?transport=tcp")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per call")
    args = parser.parse_args(argv)

    outputs = _load_outputs(args.outputs_file or os.environ.get("VISIO_VERIFY_OUTPUTS"))
    api_key = outputs.get("livekit_api_key") or os.environ.get("LIVEKIT_API_KEY", "")
    api_secret = outputs.get("livekit_api_secret") or os.environ.get("LIVEKIT_API_SECRET", "")
    if not api_key or not api_secret:
        parser.error("no API key/secret: give --outputs-file or set LIVEKIT_API_KEY and LIVEKIT_API_SECRET")
    ca_pem = None
    if args.ca_file:
        with open(args.ca_file, encoding="utf-8") as handle:
            ca_pem = handle.read()
    elif outputs.get("ca_certificate"):
        ca_pem = outputs["ca_certificate"]
    bundle = trust_bundle(ca_pem)
    ice_servers = []
    if args.turns_uri:
        from visio_infra.probes.turn_probe import rest_api_credentials

        secret = outputs.get("turn_shared_secret") or os.environ.get("VISIO_TURN_SECRET", "")
        if not secret:
            parser.error("--turns-uri needs the TURN shared secret (outputs file or VISIO_TURN_SECRET)")
        username, password = rest_api_credentials(secret, user_id="visio-verify-call")
        ice_servers = [{"urls": [args.turns_uri], "username": username, "password": password}]
    settings = CallSettings(
        url=args.url, api_url=args.api_url, api_key=api_key, api_secret=api_secret,
        ca_file=bundle, ice_servers=ice_servers, timeout=args.timeout,
    )
    try:
        reports = asyncio.run(run_calls(settings, args.mode or ["direct", "relay"]))
    finally:
        if bundle:
            os.unlink(bundle)
    json.dump([r.to_dict() for r in reports], sys.stdout, indent=2)
    print()
    for r in reports:
        print(r.summary(), file=sys.stderr)
    return 0 if all(r.passed for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
