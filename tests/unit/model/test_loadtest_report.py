"""`visio loadtest`'s pure part: bounds, the explicit target, counters, and the report's arithmetic."""

from __future__ import annotations

import pytest

from visio_infra.model.loadtest import (
    LoadPlan,
    LoadPlanError,
    ParticipantResult,
    SfuCounters,
    build_report,
    confirm_target,
    counters_script,
    parse_counters,
    percentile,
    render_report,
)
from visio_infra.model.node_status import sections


@pytest.mark.parametrize(
    ("rooms", "participants", "duration", "message"),
    [
        (0, 4, 60, "--rooms must be at least 1"),
        (2, 1, 60, "a call needs two"),
        (10, 7, 60, "at most 60 synthetic participants"),
        (2, 4, 5, "--duration must be between 10"),
        (2, 4, 3600, "--duration must be between 10"),
    ],
)
def test_plans_outside_the_bounds_are_refused(rooms: int, participants: int, duration: float, message: str):
    with pytest.raises(LoadPlanError, match=message):
        LoadPlan(rooms, participants, duration)


def test_a_stack_is_loaded_only_when_named_twice():
    confirm_target("lab", "lab")
    for confirmed in (None, "interieur", ""):
        with pytest.raises(LoadPlanError, match="--yes-load-this-stack lab"):
            confirm_target("lab", confirmed)


STAT = (
    "744 (livekit-server) S 1 744 744 0 -1 4194560 8406 0 0 0 790 390 0 0 20 0 8 0 164262 1344983040 15244"
)
METRICS = (
    'livekit_packet_bytes{country="",direction="incoming",transmission="initial"} 1000\n'
    'livekit_packet_bytes{country="",direction="incoming",transmission="retransmit"} 24\n'
    'livekit_packet_bytes{country="",direction="outgoing",transmission="initial"} 2000\n'
    'livekit_participant_total{node_id="ND_x"} 6\n'
)


def test_counters_are_read_from_the_livekit_process_and_its_metrics():
    counters = parse_counters(sections(f"### clk\n100\n### stat\n{STAT}\n### metrics\n{METRICS}"))
    assert counters == SfuCounters(cpu_seconds=11.8, bytes_out=2000.0, bytes_in=1024.0, participants=6)
    script = counters_script(6789)
    assert "127.0.0.1:6789/metrics" in script and "MainPID --value livekit.service" in script
    with pytest.raises(KeyError):
        parse_counters(sections("### clk\n100\n"))


def test_percentile_is_nearest_rank():
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([float(v) for v in range(1, 21)], 95) == 19.0
    assert percentile([5.0], 95) == 5.0


def _person(
    room: str, n: int, *, first: float | None = 1.0, frames: int = 270, tracks: int = 3
) -> ParticipantResult:
    return ParticipantResult(room, f"load-{n}", joined=first is not None, join_to_first_frame_s=first,
                             video_frames=frames if first is not None else 0, remote_tracks=tracks,
                             error="" if first is not None else "TimeoutError: no connect")


def test_report_divides_the_sfu_counters_by_window_and_participants():
    plan = LoadPlan(1, 4, 30)
    people = [_person("r", 1, first=0.8), _person("r", 2, first=1.2), _person("r", 3, first=2.0),
              _person("r", 4, first=None)]
    before = [SfuCounters(10.0, 0.0, 0.0, 0), SfuCounters(5.0, 100.0, 100.0, 0)]
    # 9 CPU seconds and 45 MB out over 30 s for 3 joined participants.
    after = [SfuCounters(16.0, 30e6, 15e6, 3), SfuCounters(8.0, 15e6 + 100, 7.5e6 + 100, 0)]
    model = {"vcpu_per_video_participant": 0.09, "mbps_out_per_video_participant": 5.0,
             "mbps_in_per_video_participant": 2.7}
    report = build_report(plan, people, before, after, 30.0, model)
    assert (report.joins_ok, report.joins_total) == (3, 4)
    assert report.first_frame_p50_s == 1.2 and report.first_frame_p95_s == 2.0
    assert report.received_fps == 3.0  # 810 frames / 9 remote tracks / 30 s
    assert report.vcpu_per_participant == 0.1
    assert report.mbps_out_per_participant == 4.0
    assert report.mbps_in_per_participant == 2.0
    assert report.peak_participants_seen == 3
    assert report.errors == ["load-4: TimeoutError: no connect"]
    table = render_report(report)
    assert "joins: 3/4 (75.0 %)" in table
    assert "vCPU (SFU)" in table and "0.09" in table and "0.1" in table
    assert report.as_dict()["join_success_rate"] == 0.75


def test_report_without_joins_measures_nothing():
    report = build_report(LoadPlan(1, 2, 30), [_person("r", 1, first=None)], [], [], 30.0, {})
    assert report.vcpu_per_participant is None and report.received_fps is None
    assert "n/a" in render_report(report)


# ------------------------------------------------------------------ WebRTC's view of the video


def _inbound(kind: str, **fields: int):
    from livekit.rtc._proto import stats_pb2

    item = stats_pb2.RtcStats()
    item.inbound_rtp.stream.kind = kind
    for name in ("packets_received", "packets_lost"):
        if name in fields:
            setattr(item.inbound_rtp.received, name, fields.pop(name))
    for name, value in fields.items():
        setattr(item.inbound_rtp.inbound, name, value)
    return item


def _outbound(kind: str, reason: int, **fields: float):
    from livekit.rtc._proto import stats_pb2

    item = stats_pb2.RtcStats()
    item.outbound_rtp.stream.kind = kind
    item.outbound_rtp.outbound.quality_limitation_reason = reason
    for name, value in fields.items():
        setattr(item.outbound_rtp.outbound, name, value)
    return item


def test_media_stats_add_up_video_only_and_name_the_encoders_limitation():
    from visio_infra.model.loadtest import media_stats

    stats = [
        _inbound("video", frames_received=400, frames_decoded=390, key_frames_decoded=2, nack_count=3,
                 pli_count=1, freeze_count=0, packets_received=900, packets_lost=4),
        _inbound("video", frames_received=10, frames_decoded=9, key_frames_decoded=9, pli_count=12,
                 freeze_count=5, packets_received=300, packets_lost=-1),  # RTCP may report negative loss
        _inbound("audio", packets_received=5000, packets_lost=50),
        _outbound("video", 1, frames_encoded=420, key_frames_encoded=3, pli_count=13,
                  target_bitrate=300000.0),
        _outbound("audio", 0, target_bitrate=32000.0),
    ]
    media = media_stats(stats)
    assert media["frames_received"] == 410 and media["frames_decoded"] == 399
    assert media["key_frames_decoded"] == 11 and media["plis_sent"] == 13 and media["freezes"] == 5
    assert media["packets_received"] == 1200 and media["packets_lost"] == 4  # audio and the -1 left out
    assert media["frames_encoded"] == 420 and media["plis_received"] == 13
    assert media["target_bitrate_bps"] == 300000.0
    assert media["limited_cpu"] == 1.0 and "limited_none" not in media


def test_thin_video_is_explained_in_the_report():
    from visio_infra.model.loadtest import sum_media

    plan = LoadPlan(1, 2, 30)
    people = []
    for name, reason in (("a", "cpu"), ("b", "none")):
        person = ParticipantResult("r", name, joined=True, remote_tracks=1, video_frames=15)
        person.media = {"frames_received": 20, "frames_decoded": 15, "key_frames_decoded": 15,
                        "frames_dropped": 0, "packets_received": 100, "packets_lost": 30,
                        "nacks_sent": 40, "plis_sent": 15, "freezes": 14, "frames_encoded": 450,
                        "key_frames_encoded": 15, "plis_received": 15, "nacks_received": 40,
                        "target_bitrate_bps": 100000.0, f"limited_{reason}": 1.0}
        people.append(person)
    counters = [SfuCounters(1.0, 0.0, 0.0, 0)]
    report = build_report(plan, people, counters, counters, 30.0, {})
    assert report.media == sum_media(p.media for p in people)
    assert report.as_dict()["media"]["plis_sent"] == 30
    text = render_report(report)
    assert "received: 40 frames, 30 decoded (30 key frames), 0 dropped, 28 freezes" in text
    assert "network: 60 packets lost of 260, 80 NACKs and 30 PLIs sent" in text
    assert "encoders limited by: none 1, cpu 1, mean target 100 kbit/s" in text


def test_no_media_section_without_stats():
    plan = LoadPlan(1, 2, 30)
    counters = [SfuCounters(1.0, 0.0, 0.0, 0)]
    people = [ParticipantResult("r", "a", joined=True)]
    assert "WebRTC's counters" not in render_report(build_report(plan, people, counters, counters, 30.0, {}))
