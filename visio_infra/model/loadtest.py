"""`visio loadtest`'s pure part: the bounded plan, the SFU counters read before and after, and the
report that sets what was measured next to what the sizing model assumes.

Measured on the SFU nodes themselves, so the load generator's own CPU never counts: the LiveKit
process's CPU time (/proc/<pid>/stat, user + system) and LiveKit's own byte counters
(`livekit_packet_bytes`, by direction), summed over the SFU nodes, divided by the window and by the
participants. The model's coefficients come from the stack's `capacity` section (LiveKit's published
benchmark, 720p simulcast); the load test's synthetic camera is 320x240 at 15 fps, so measured
per-participant figures are a floor for that resolution, not a replacement for the coefficients.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from visio_infra.model.node_status import metric_sums

MAX_PARTICIPANTS = 60
"""Total synthetic participants one run may start (each one publishes and decodes video)."""
MAX_DURATION_SECONDS = 900


class LoadPlanError(ValueError):
    """A plan outside the bounds: refused before anything connects."""


@dataclass(frozen=True)
class LoadPlan:
    rooms: int
    participants: int
    """Per room; each publishes camera and microphone and subscribes to every other one."""
    duration: float
    """Seconds of steady load, from the moment every participant has joined (or given up)."""
    relay: bool = False
    """ICE relay only: the media goes through the stack's TURN servers."""

    def __post_init__(self) -> None:
        if self.rooms < 1 or self.participants < 2:
            raise LoadPlanError("--rooms must be at least 1 and --participants at least 2 (a call needs two)")
        if self.rooms * self.participants > MAX_PARTICIPANTS:
            raise LoadPlanError(
                f"{self.rooms} rooms x {self.participants} participants = {self.rooms * self.participants}: "
                f"at most {MAX_PARTICIPANTS} synthetic participants per run"
            )
        if not 10 <= self.duration <= MAX_DURATION_SECONDS:
            raise LoadPlanError(f"--duration must be between 10 and {MAX_DURATION_SECONDS} seconds")

    @property
    def total(self) -> int:
        return self.rooms * self.participants


def confirm_target(stack: str, confirmed: str | None) -> None:
    """Load is only sent to a stack named twice: as the argument and as --yes-load-this-stack."""
    if confirmed != stack:
        raise LoadPlanError(
            f"visio loadtest sends real load to stack {stack!r}; "
            f"to mean it, add --yes-load-this-stack {stack}"
        )


@dataclass
class ParticipantResult:
    """What one synthetic participant saw."""

    room: str
    identity: str
    joined: bool = False
    error: str = ""
    join_to_first_frame_s: float | None = None
    """From the start of its join to the first decoded video frame of another participant."""
    video_frames: int = 0
    """Decoded video frames, all remote tracks together, during the steady window."""
    remote_tracks: int = 0
    media: dict[str, float] = field(default_factory=dict)
    """WebRTC's own counters for this participant's video at the window's end (media_stats)."""


# ------------------------------------------------------------------ WebRTC's view of the video

LIMITATIONS = {0: "none", 1: "cpu", 2: "bandwidth", 3: "other"}
"""WebRTC's quality-limitation reasons (why an encoder lowers its frame rate or resolution)."""

MEDIA_COUNTERS = (
    "frames_received", "frames_decoded", "key_frames_decoded", "frames_dropped", "packets_received",
    "packets_lost", "nacks_sent", "plis_sent", "freezes", "frames_encoded", "key_frames_encoded",
    "plis_received", "nacks_received",
)


def media_stats(stats: Iterable[Any]) -> dict[str, float]:
    """One participant's video counters, cumulative since its join, from its WebRTC stats (pure over
    the SDK's proto objects): what it received and decoded, what it lost and asked again for (NACK,
    PLI), what its own camera encoder produced and why it held back (`limited_<reason>`: 1 for the
    reason its encoder reports). When received video is thin, these say where it thinned: frames
    lost on the way (packets_lost, NACKs, PLIs, few decoded but key frames), or never sent (frames
    encoded low, limited by CPU or bandwidth)."""
    out = dict.fromkeys(MEDIA_COUNTERS, 0.0)
    out["target_bitrate_bps"] = 0.0
    for item in stats:
        kind = item.WhichOneof("stats")
        if kind == "inbound_rtp" and item.inbound_rtp.stream.kind == "video":
            received, inbound = item.inbound_rtp.received, item.inbound_rtp.inbound
            out["frames_received"] += inbound.frames_received
            out["frames_decoded"] += inbound.frames_decoded
            out["key_frames_decoded"] += inbound.key_frames_decoded
            out["frames_dropped"] += inbound.frames_dropped
            out["packets_received"] += received.packets_received
            out["packets_lost"] += max(received.packets_lost, 0)
            out["nacks_sent"] += inbound.nack_count
            out["plis_sent"] += inbound.pli_count
            out["freezes"] += inbound.freeze_count
        elif kind == "outbound_rtp" and item.outbound_rtp.stream.kind == "video":
            outbound = item.outbound_rtp.outbound
            out["frames_encoded"] += outbound.frames_encoded
            out["key_frames_encoded"] += outbound.key_frames_encoded
            out["plis_received"] += outbound.pli_count
            out["nacks_received"] += outbound.nack_count
            out["target_bitrate_bps"] += outbound.target_bitrate
            reason = LIMITATIONS.get(int(outbound.quality_limitation_reason), "other")
            out[f"limited_{reason}"] = 1.0
    return out


def sum_media(per_participant: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """The participants' media counters added up (`limited_<reason>`: how many encoders report it)."""
    total: dict[str, float] = {}
    for media in per_participant:
        for key, value in media.items():
            total[key] = total.get(key, 0.0) + value
    return total


# ------------------------------------------------------------------ counters read on an SFU node

COUNTERS_SCRIPT = """\
set -e
pid=$(systemctl show -p MainPID --value livekit.service)
echo '### clk'; getconf CLK_TCK
echo '### stat'; cat /proc/$pid/stat
echo '### metrics'
python3 -c 'import urllib.request, sys; sys.stdout.write(urllib.request.urlopen(
    "http://127.0.0.1:{port}/metrics", timeout=5).read().decode())' \\
  | grep -E '^livekit_packet_bytes|^livekit_participant_total'
"""


def counters_script(metrics_port: int = 6789) -> str:
    return COUNTERS_SCRIPT.replace("{port}", str(int(metrics_port)))


@dataclass(frozen=True)
class SfuCounters:
    cpu_seconds: float
    bytes_out: float
    bytes_in: float
    participants: int


def parse_counters(sections: Mapping[str, str]) -> SfuCounters:
    """One SFU node's counters from the script's `### ` sections; ValueError if any is missing."""
    clock = int(sections["clk"].strip())
    fields = sections["stat"].rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime field 14, stime field 15 (1-based, proc(5)).
    cpu = (int(fields[11]) + int(fields[12])) / clock
    out = inn = 0.0
    for line in sections["metrics"].splitlines():
        if line.startswith("livekit_packet_bytes"):
            value = float(line.rsplit(" ", 1)[1])
            if 'direction="outgoing"' in line:
                out += value
            elif 'direction="incoming"' in line:
                inn += value
    participants = metric_sums(sections["metrics"]).get("livekit_participant_total", 0.0)
    return SfuCounters(cpu, out, inn, int(participants))


# ------------------------------------------------------------------ the report


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class LoadReport:
    plan: LoadPlan
    window_s: float
    joins_ok: int
    joins_total: int
    first_frame_p50_s: float | None
    first_frame_p95_s: float | None
    received_fps: float | None
    """Mean decoded video frames per second per remote track, over the steady window."""
    vcpu_per_participant: float | None
    mbps_out_per_participant: float | None
    mbps_in_per_participant: float | None
    peak_participants_seen: int
    """LiveKit's participant gauge summed over the SFU nodes at the window's end (a participant whose
    signalling goes through another node than its room's can be counted on both)."""
    model: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    media: dict[str, float] = field(default_factory=dict)
    """The participants' WebRTC video counters added up (sum_media), cumulative since their joins."""

    @property
    def join_success_rate(self) -> float:
        return self.joins_ok / self.joins_total if self.joins_total else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "rooms": self.plan.rooms,
            "participants_per_room": self.plan.participants,
            "relay": self.plan.relay,
            "window_s": round(self.window_s, 1),
            "joins_ok": self.joins_ok,
            "joins_total": self.joins_total,
            "join_success_rate": round(self.join_success_rate, 4),
            "first_frame_p50_s": self.first_frame_p50_s,
            "first_frame_p95_s": self.first_frame_p95_s,
            "received_fps": self.received_fps,
            "vcpu_per_participant": self.vcpu_per_participant,
            "mbps_out_per_participant": self.mbps_out_per_participant,
            "mbps_in_per_participant": self.mbps_in_per_participant,
            "peak_participants_seen": self.peak_participants_seen,
            "model": self.model,
            "media": {key: round(value, 1) for key, value in sorted(self.media.items())},
            "errors": self.errors,
        }


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def build_report(
    plan: LoadPlan,
    results: Iterable[ParticipantResult],
    before: Sequence[SfuCounters],
    after: Sequence[SfuCounters],
    window_s: float,
    model: Mapping[str, float],
) -> LoadReport:
    """Aggregate the participants' view and the SFU counters over the window."""
    people = list(results)
    joined = [p for p in people if p.joined]
    first = [p.join_to_first_frame_s for p in joined if p.join_to_first_frame_s is not None]
    tracks = sum(p.remote_tracks for p in joined)
    frames = sum(p.video_frames for p in joined)
    fps = frames / tracks / window_s if tracks and window_s > 0 else None
    cpu = sum(a.cpu_seconds - b.cpu_seconds for b, a in zip(before, after, strict=True))
    out = sum(a.bytes_out - b.bytes_out for b, a in zip(before, after, strict=True))
    inn = sum(a.bytes_in - b.bytes_in for b, a in zip(before, after, strict=True))
    count = len(joined)
    per = (lambda total: total / window_s / count) if count and window_s > 0 else None
    return LoadReport(
        plan=plan,
        window_s=window_s,
        joins_ok=count,
        joins_total=len(people),
        first_frame_p50_s=_round(percentile(first, 50)),
        first_frame_p95_s=_round(percentile(first, 95)),
        received_fps=_round(fps, 1),
        vcpu_per_participant=_round(per(cpu) if per else None, 4),
        mbps_out_per_participant=_round(per(out * 8 / 1e6) if per else None),
        mbps_in_per_participant=_round(per(inn * 8 / 1e6) if per else None),
        peak_participants_seen=sum(a.participants for a in after),
        model=dict(model),
        errors=[f"{p.identity}: {p.error}" for p in people if p.error],
        media=sum_media(p.media for p in joined),
    )


def render_media(media: Mapping[str, float]) -> list[str]:
    """WebRTC's side of the video, all participants together (empty when no stats were read)."""
    if not media:
        return []
    m = {key: int(value) for key, value in media.items()}
    cameras = sum(m.get(f"limited_{reason}", 0) for reason in LIMITATIONS.values())
    limited = ", ".join(
        f"{reason} {m[f'limited_{reason}']}" for reason in LIMITATIONS.values() if m.get(f"limited_{reason}")
    )
    return [
        "",
        "video, WebRTC's counters since the joins (all participants)",
        f"  received: {m['frames_received']} frames, {m['frames_decoded']} decoded "
        f"({m['key_frames_decoded']} key frames), {m['frames_dropped']} dropped, {m['freezes']} freezes",
        f"  network: {m['packets_lost']} packets lost of {m['packets_lost'] + m['packets_received']}, "
        f"{m['nacks_sent']} NACKs and {m['plis_sent']} PLIs sent",
        f"  cameras: {m['frames_encoded']} frames encoded ({m['key_frames_encoded']} key frames), "
        f"{m['plis_received']} PLIs received, encoders limited by: {limited or 'n/a'}"
        + (f", mean target {media['target_bitrate_bps'] / cameras / 1000:.0f} kbit/s" if cameras else ""),
    ]


def render_report(report: LoadReport) -> str:
    """The table `visio loadtest` prints (and `make bench` collects)."""
    r = report

    def show(value: float | None, unit: str = "") -> str:
        return "n/a" if value is None else f"{value}{unit}"

    lines = [
        f"load: {r.plan.rooms} rooms x {r.plan.participants} participants, {r.window_s:.0f} s steady"
        f"{', relay only' if r.plan.relay else ''}",
        f"joins: {r.joins_ok}/{r.joins_total} ({100 * r.join_success_rate:.1f} %)",
        f"join -> first frame: p50 {show(r.first_frame_p50_s, ' s')}, p95 {show(r.first_frame_p95_s, ' s')}",
        f"received video: {show(r.received_fps, ' fps')} per remote track",
        "",
        f"{'per participant':<28}{'model':>10}{'measured':>12}",
        f"{'vCPU (SFU)':<28}{r.model.get('vcpu_per_video_participant', 0):>10}"
        f"{show(r.vcpu_per_participant):>12}",
        f"{'egress Mbit/s (SFU)':<28}{r.model.get('mbps_out_per_video_participant', 0):>10}"
        f"{show(r.mbps_out_per_participant):>12}",
        f"{'ingress Mbit/s (SFU)':<28}{r.model.get('mbps_in_per_video_participant', 0):>10}"
        f"{show(r.mbps_in_per_participant):>12}",
        "model: LiveKit's benchmark at 720p simulcast; measured: 320x240 at 15 fps synthetic video",
    ]
    lines += render_media(r.media)
    lines += [f"error: {e}" for e in r.errors[:10]]
    return "\n".join(lines)
