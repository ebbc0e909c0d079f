"""connect_room: a room connect bounded in time but never cancelled half-way (the SDK aborts the
process when a connect it completed is abandoned), the straggler disconnected once it gets through."""

from __future__ import annotations

import asyncio

import pytest

from visio_infra.probes.livekit_call import connect_room, settle_connects


class FakeRoom:
    """A room whose connect takes `seconds`; records what happened to it."""

    def __init__(self, seconds: float, fail: bool = False) -> None:
        self.seconds, self.fail = seconds, fail
        self.events: list[str] = []

    async def connect(self, url: str, token: str, options: object) -> None:
        try:
            await asyncio.sleep(self.seconds)
        except asyncio.CancelledError:
            self.events.append("cancelled")
            raise
        if self.fail:
            self.events.append("failed")
            raise RuntimeError("refused")
        self.events.append("connected")

    async def disconnect(self) -> None:
        self.events.append("disconnected")


def test_a_quick_connect_returns() -> None:
    room = FakeRoom(0.01)
    asyncio.run(connect_room(room, "wss://example.test", "t", None, 1))
    assert room.events == ["connected"]


def test_a_failing_connect_raises_its_error() -> None:
    room = FakeRoom(0.01, fail=True)
    with pytest.raises(RuntimeError, match="refused"):
        asyncio.run(connect_room(room, "wss://example.test", "t", None, 1))


def test_a_slow_connect_times_out_but_is_never_cancelled() -> None:
    room = FakeRoom(0.3)

    async def scenario() -> tuple[str, int]:
        try:
            await connect_room(room, "wss://example.test", "t", None, 0.05)
        except TimeoutError as exc:
            outcome = str(exc)
        else:
            outcome = "no timeout"
        assert room.events == []  # still connecting in the background, not cancelled
        return outcome, await settle_connects(5)

    outcome, pending = asyncio.run(scenario())
    assert "did not get through" in outcome
    assert pending == 1
    assert room.events == ["connected", "disconnected"]
