"""connect_room: a room connect bounded in time but never cancelled half-way (the SDK aborts the
process when a connect it completed is abandoned), the straggler disconnected once it gets through.
join_token: the join token every probe participant uses."""

from __future__ import annotations

import asyncio
import time

import jwt
import pytest

from visio_infra.probes.livekit_call import connect_room, join_token, settle_connects


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


SECRET = "s3cret-" * 6
ROOM, IDENTITY = "visio-verify-direct-ab12", "visio-verify-publisher"


@pytest.mark.parametrize(
    ("kwargs", "ttl"), [({}, 600), ({"ttl_seconds": 1800}, 1800)], ids=["default ttl", "30 min"]
)
def test_join_token_grants_one_room_to_one_identity_for_a_lifetime(kwargs: dict[str, int], ttl: int) -> None:
    before = int(time.time())
    token = join_token("APIkey", SECRET, ROOM, IDENTITY, **kwargs)
    after = int(time.time())
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])  # also checks the signature and expiry
    assert claims["iss"] == "APIkey"
    assert claims["sub"] == IDENTITY
    wanted = {"roomJoin": True, "room": ROOM, "canPublish": True, "canSubscribe": True}
    assert claims["video"].items() >= wanted.items()
    assert not any(claims["video"].get(g) for g in ("roomAdmin", "roomCreate", "roomList", "roomRecord"))
    assert before <= claims["nbf"] <= after
    assert claims["exp"] - claims["nbf"] in (ttl, ttl + 1)  # whole seconds, read at two instants
    assert before + ttl <= claims["exp"] <= after + ttl


def test_join_token_is_refused_under_another_secret() -> None:
    token = join_token("APIkey", SECRET, ROOM, IDENTITY)
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, "another-" * 5, algorithms=["HS256"])
