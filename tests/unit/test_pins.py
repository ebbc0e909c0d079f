"""The toolchain pins and the Python pins must agree, and never name a forbidden release."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from visio_infra.model.config.sections import FORBIDDEN_LIVEKIT_VERSIONS, MIN_LIVEKIT_VERSION
from visio_infra.model.stack_file import load_stack_file, stack_file

ROOT = Path(__file__).resolve().parents[2]


def _versions_env() -> dict[str, str]:
    pairs = {}
    for line in (ROOT / "toolchain" / "versions.env").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


def _name(package: str) -> str:
    """The normalised project name (PEP 503): `pulumi_policy`, `Pulumi-Policy` and `pulumi-policy` are one."""
    return re.sub(r"[-_.]+", "-", package).lower()


def _pins(lines: list[str]) -> dict[str, str]:
    """`name==version` requirement lines (comments and blank lines aside) as {normalised name: version}.
    Anything but an exact pin fails: a loosened pin is not a pin."""
    pins = {}
    for line in lines:
        requirement = line.split("#", 1)[0].strip()
        if requirement:
            match = re.fullmatch(
                r"([A-Za-z0-9_.\-]+)(?:\[[A-Za-z0-9_,\-]+\])?\s*==\s*([A-Za-z0-9.+\-]+)", requirement
            )
            assert match, f"not an exact pin: {line!r}"
            pins[_name(match.group(1))] = match.group(2)
    return pins


def _differences(pins: dict[str, str], locked: dict[str, str]) -> list[str]:
    return [
        f"{name}=={version} (requirements.lock: {locked.get(name, 'not pinned')})"
        for name, version in sorted(pins.items())
        if locked.get(name) != version
    ]


def _lock() -> dict[str, str]:
    return _pins((ROOT / "requirements.lock").read_text().splitlines())


def _locked(package: str) -> str:
    version = _lock().get(_name(package))
    assert version, f"{package} is not pinned in requirements.lock"
    return version


def test_pulumi_cli_matches_python_sdk():
    assert _versions_env()["PULUMI_VERSION"] == _locked("pulumi")


def test_resource_plugins_match_their_python_sdks():
    """The engine asks for the plugin version of the SDK; a different build only warns, then drifts."""
    env = _versions_env()
    assert env["OPENSTACK_PLUGIN_VERSION"] == _locked("pulumi_openstack")
    assert env["RANDOM_PLUGIN_VERSION"] == _locked("pulumi_random")


def test_source_archives_are_the_pinned_releases():
    """Each archive of the source mirror is named after the release it builds, with a sha256 pinned."""
    env = _versions_env()
    assert env["LANGUAGE_HOST_ARCHIVE"] == f"pulumi-language-python-{env['PULUMI_VERSION']}.tar.gz"
    for name in ("openstack", "random"):
        version = env[f"{name.upper()}_PLUGIN_VERSION"]
        assert env[f"{name.upper()}_PLUGIN_ARCHIVE"] == f"pulumi-{name}-{version}-provider.tar.gz"
    for key in ("LANGUAGE_HOST_SHA256", "OPENSTACK_PLUGIN_SHA256", "RANDOM_PLUGIN_SHA256"):
        assert re.fullmatch(r"[0-9a-f]{64}", env[key]), key


def test_every_requirement_is_pinned_exactly():
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert re.fullmatch(r"[A-Za-z0-9_.\-]+(\[[a-z,]+\])?==[A-Za-z0-9.+\-]+", line), line


def test_policy_pack_pins_equal_the_lock():
    """The policy pack runs in the project's virtualenv, installed from requirements.lock: the pins
    policy/requirements.txt documents must be those versions."""
    policy = _pins((ROOT / "policy" / "requirements.txt").read_text().splitlines())
    assert policy, "policy/requirements.txt pins nothing"
    assert _differences(policy, _lock()) == []


def test_build_backend_pins_equal_the_lock():
    """scripts/setup.sh installs the project without build isolation, with the setuptools of the lock."""
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    build = _pins(requires)
    assert "setuptools" in build
    assert _differences(build, _lock()) == []


def test_pin_comparison_catches_a_difference():
    lock = _pins(["pulumi==3.259.0", "pulumi_policy==1.21.0"])
    assert _differences(_pins(["Pulumi-Policy==1.21.0", "pulumi==3.259.0  # the SDK"]), lock) == []
    assert _differences(_pins(["pulumi-policy==1.20.0"]), lock) == [
        "pulumi-policy==1.20.0 (requirements.lock: 1.21.0)"
    ]
    assert _differences(_pins(["pulumi-aws==7.0.0"]), lock) == [
        "pulumi-aws==7.0.0 (requirements.lock: not pinned)"
    ]
    for loose in ("pulumi-policy>=1.21", "pulumi-policy", "pulumi-policy==1.21.*"):
        with pytest.raises(AssertionError, match="not an exact pin"):
            _pins([loose])


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
