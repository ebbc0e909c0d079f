"""The toolchain pins and the Python pins must agree, and never name a forbidden release."""

from __future__ import annotations

import re
from pathlib import Path

from visio_infra.config import FORBIDDEN_LIVEKIT_VERSIONS, MIN_LIVEKIT_VERSION, load_stack_file, stack_file

ROOT = Path(__file__).resolve().parents[2]


def _versions_env() -> dict[str, str]:
    pairs = {}
    for line in (ROOT / "toolchain" / "versions.env").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


def _locked(package: str) -> str:
    text = (ROOT / "requirements.lock").read_text()
    match = re.search(rf"^{re.escape(package)}==(\S+)$", text, re.MULTILINE | re.IGNORECASE)
    assert match, f"{package} is not pinned in requirements.lock"
    return match.group(1)


def test_pulumi_cli_matches_python_sdk():
    assert _versions_env()["PULUMI_VERSION"] == _locked("pulumi")


def test_every_requirement_is_pinned_exactly():
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert re.fullmatch(r"[A-Za-z0-9_.\-]+(\[[a-z,]+\])?==[A-Za-z0-9.+\-]+", line), line


def test_livekit_pins_are_supported_releases():
    env = _versions_env()
    for key in ("LIVEKIT_VERSION", "LIVEKIT_PREVIOUS_VERSION"):
        version = tuple(int(p) for p in env[key].split("."))
        assert version >= MIN_LIVEKIT_VERSION, key
        assert version not in FORBIDDEN_LIVEKIT_VERSIONS, key
    assert tuple(map(int, env["LIVEKIT_PREVIOUS_VERSION"].split("."))) < tuple(
        map(int, env["LIVEKIT_VERSION"].split("."))
    )


def test_lab_deploys_the_toolchain_livekit():
    lab = load_stack_file(stack_file("lab"))
    assert lab.versions.livekit == _versions_env()["LIVEKIT_VERSION"]
