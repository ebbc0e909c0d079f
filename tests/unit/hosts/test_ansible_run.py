"""Which Ansible strategy a run uses (pure selection), and where Mitogen's plugins are found."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest

from visio_infra.hosts import ansible_run
from visio_infra.hosts.ansible_run import (
    LINEAR,
    MITOGEN,
    STRATEGY_ENV,
    HostStats,
    RunResult,
    Strategy,
    StrategyError,
    choose_strategy,
    strategy_env,
)
from visio_infra.hosts.ansible_vars import AnsibleVarsError

PLUGINS = "/somewhere/ansible_mitogen/plugins/strategy"
ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("requested", [None, "", "  ", MITOGEN])
def test_mitogen_by_default_when_installed(requested):
    assert choose_strategy(requested, PLUGINS, None) == Strategy(MITOGEN, plugin_dir=PLUGINS)


def test_linear_on_request_says_so_in_one_line():
    chosen = choose_strategy(LINEAR, PLUGINS, None)
    assert chosen.name == LINEAR and chosen.plugin_dir is None
    assert chosen.note and "\n" not in chosen.note
    assert chosen.note == f"ansible: {LINEAR} strategy requested ({STRATEGY_ENV}), running without Mitogen"


@pytest.mark.parametrize("requested", [None, MITOGEN])
def test_falls_back_to_linear_naming_why_when_mitogen_is_missing(requested):
    chosen = choose_strategy(requested, None, "ansible_mitogen is not importable from /x/bin/python")
    assert chosen.name == LINEAR and chosen.plugin_dir is None
    assert chosen.note and "\n" not in chosen.note
    assert "ansible_mitogen is not importable from /x/bin/python" in chosen.note
    assert "linear" in chosen.note and "scripts/setup.sh" in chosen.note


@pytest.mark.parametrize("requested", ["free", "mitogen_free", "Linear", "host_pinned"])
def test_unknown_strategy_is_refused_before_any_run(requested):
    with pytest.raises(StrategyError, match=f"{STRATEGY_ENV}=.*use {MITOGEN} .* or {LINEAR}"):
        choose_strategy(requested, PLUGINS, None)
    # Reported by every caller that reports bad input (visio configure exits 2 with the message).
    assert issubclass(StrategyError, AnsibleVarsError)


def test_environment_of_each_strategy():
    assert strategy_env(Strategy(MITOGEN, plugin_dir=PLUGINS)) == {
        "ANSIBLE_STRATEGY": MITOGEN,
        "ANSIBLE_STRATEGY_PLUGINS": PLUGINS,
        # Mitogen's deadline covers its whole bootstrap, not only SSH's handshake.
        "ANSIBLE_TIMEOUT": "30",
    }
    assert strategy_env(Strategy(LINEAR, note="why")) == {"ANSIBLE_STRATEGY": LINEAR}


def test_installed_mitogen_is_found_through_the_import_system_and_pinned():
    plugin_dir, problem = ansible_run.find_mitogen_strategy_plugins()
    assert problem is None and plugin_dir is not None
    assert (Path(plugin_dir) / f"{MITOGEN}.py").is_file()
    import ansible_mitogen

    assert Path(plugin_dir) == Path(ansible_mitogen.__file__).parent / "plugins" / "strategy"
    pinned = re.search(r"^mitogen==(\S+)$", (ROOT / "requirements.lock").read_text(), re.MULTILINE)
    assert pinned and importlib.metadata.version("mitogen") == pinned.group(1)


def test_missing_mitogen_is_reported_not_raised(monkeypatch):
    monkeypatch.setattr(ansible_run.importlib.util, "find_spec", lambda _name: None)
    plugin_dir, problem = ansible_run.find_mitogen_strategy_plugins()
    assert plugin_dir is None and problem and "not importable" in problem
    monkeypatch.delenv(STRATEGY_ENV, raising=False)
    assert ansible_run.strategy_for_run().name == LINEAR


def test_env_variable_and_argument_choose(monkeypatch):
    monkeypatch.setenv(STRATEGY_ENV, LINEAR)
    assert ansible_run.strategy_for_run().name == LINEAR
    assert ansible_run.strategy_for_run(MITOGEN).name == MITOGEN  # the caller's choice wins
    monkeypatch.delenv(STRATEGY_ENV)
    assert ansible_run.strategy_for_run().name == MITOGEN


def test_ansible_cfg_leaves_the_strategy_to_the_run():
    """A strategy in ansible.cfg would bypass the selection (and its fallback message)."""
    lines = (ROOT / "ansible.cfg").read_text().splitlines()
    assert not [line for line in lines if line.split("=")[0].strip() in ("strategy", "strategy_plugins")]


def test_summary_names_the_strategy():
    result = RunResult(
        rc=0, status="successful", hosts={"lab-sfu-1": HostStats(ok=3)}, artifact_dir=Path("/a"),
        duration_seconds=12.0, strategy=MITOGEN,
    )
    assert f"ansible ({MITOGEN}) succeeded in 12 s, 0 change(s)" in result.summary()
