"""A ministry run without the OpenStack provider plugin stops before any resource, saying how to fix it."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from conftest import STACKS_DIR
from test_pins import _locked

from visio_infra.cloud.provider_plugins import installed_plugins, needed_plugins, plugin_problems
from visio_infra.model.stack_file import load_stack_file


def test_openstack_stacks_need_the_plugin_of_the_pinned_sdk() -> None:
    culture = load_stack_file(STACKS_DIR / "Pulumi.culture.yaml")
    assert needed_plugins(culture) == {"openstack": _locked("pulumi_openstack")}
    assert needed_plugins(culture) == {"openstack": metadata.version("pulumi_openstack")}


def test_the_lab_needs_no_provider_plugin() -> None:
    assert needed_plugins(load_stack_file(STACKS_DIR / "Pulumi.lab.yaml")) == {}


def test_installed_plugins_reads_the_plugin_cache_and_path(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    (plugins / "resource-openstack-v5.5.1").mkdir(parents=True)
    (plugins / "resource-random-v4.16.0.partial").mkdir()  # an interrupted install does not count
    (plugins / "language-python-v3.0.0").mkdir()
    (plugins / "resource-stray-file").write_text("", encoding="utf-8")
    assert installed_plugins(tmp_path, ["openstack"], path_lookup=lambda _: None) == {"openstack-v5.5.1"}
    on_path = installed_plugins(tmp_path / "empty", ["openstack"], path_lookup=lambda n: f"/usr/bin/{n}")
    assert on_path == {"openstack"}


def test_a_missing_plugin_is_named_with_its_version_file_and_install_command() -> None:
    [problem] = plugin_problems("stacks/Pulumi.culture.yaml", {"openstack": "5.5.1"}, set())
    assert problem.startswith("stacks/Pulumi.culture.yaml: ")
    assert "`openstack` v5.5.1" in problem
    assert "pulumi plugin install resource openstack 5.5.1 --file ./pulumi-resource-openstack" in problem
    assert "bash scripts/toolchain.sh plugins" in problem
    assert "Nothing was created" in problem


def test_another_version_in_the_cache_does_not_count() -> None:
    assert plugin_problems("f", {"openstack": "5.5.1"}, {"openstack-v5.5.0"})


def test_an_installed_or_path_plugin_is_enough() -> None:
    assert plugin_problems("f", {"openstack": "5.5.1"}, {"openstack-v5.5.1"}) == []
    assert plugin_problems("f", {"openstack": "5.5.1"}, {"openstack"}) == []
    assert plugin_problems("f", {}, set()) == []
