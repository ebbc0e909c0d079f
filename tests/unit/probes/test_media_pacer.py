"""The synthetic camera and microphone's pacing (MediaPacer): real-time rates, a late loop drops
frames instead of bursting, and the loop sleeps until the next capture instead of polling."""

from __future__ import annotations

import pytest

from visio_infra.probes.livekit_call import (
    AUDIO_BACKLOG_CHUNKS,
    AUDIO_CHUNK_MS,
    VIDEO_FPS,
    MediaPacer,
    SyntheticMedia,
)


def _run(pacer: MediaPacer, times: list[float]) -> tuple[int, list[int]]:
    audio, frames = 0, []
    for now in times:
        audio += pacer.audio_chunks(now)
        index = pacer.video_frame(now)
        if index is not None:
            frames.append(index)
    return audio, frames


def test_a_punctual_loop_sends_every_frame_at_its_rate():
    pacer = MediaPacer()
    now, times = 0.0, []
    while now < 10.0:  # the loop wakes exactly when told to
        times.append(now)
        pacer.audio_chunks(now)
        pacer.video_frame(now)
        now += pacer.sleep(now) or 1e-6
    pacer = MediaPacer()
    audio, frames = _run(pacer, times)
    assert frames == list(range(10 * VIDEO_FPS))  # 15 fps, none skipped
    assert audio == 10 * 1000 // AUDIO_CHUNK_MS  # 10 s of audio
    assert len(times) <= 10 * (VIDEO_FPS + 1000 // AUDIO_CHUNK_MS) + 1  # no polling between captures


def test_a_late_loop_drops_video_frames_and_caps_the_audio_backlog():
    pacer = MediaPacer()
    assert pacer.video_frame(0.0) == 0 and pacer.audio_chunks(0.0) == 1
    # Stalled for 2 s: one video frame now (the current one), not 30 in a burst.
    assert pacer.video_frame(2.0) == 1
    assert pacer.video_frame(2.0) is None
    assert pacer.video_frame(2.0 + 1 / VIDEO_FPS) == int(2.0 * VIDEO_FPS) + 1
    # Audio catches up at most AUDIO_BACKLOG_CHUNKS, then stays continuous.
    assert pacer.audio_chunks(2.0) == AUDIO_BACKLOG_CHUNKS
    assert pacer.audio_chunks(2.0) == 0
    assert pacer.audio_chunks(2.0 + AUDIO_CHUNK_MS / 1000) == 1


def test_sleep_is_until_the_next_capture():
    pacer = MediaPacer()
    pacer.audio_chunks(0.0)
    pacer.video_frame(0.0)
    assert pacer.sleep(0.0) == pytest.approx(min(AUDIO_CHUNK_MS / 1000, 1 / VIDEO_FPS))
    assert pacer.sleep(5.0) == 0.0  # overdue: capture at once


def test_one_audio_chunk_is_the_seamless_tone_repeated():
    media = SyntheticMedia(phases=1)
    assert media.samples == 48000 * AUDIO_CHUNK_MS // 1000
    assert len(media.audio) == media.samples * 2  # 16-bit mono
    ten_ms = len(media.audio) // (AUDIO_CHUNK_MS // 10)
    assert media.audio == media.audio[:ten_ms] * (AUDIO_CHUNK_MS // 10)
