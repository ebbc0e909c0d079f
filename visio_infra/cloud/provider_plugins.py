"""The Pulumi resource plugins a stack needs, checked before the program registers anything.

Why: `PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION` is always set (nothing is fetched at run time),
and the OpenStack provider plugin is not packaged by any registry these machines reach:
`scripts/toolchain.sh` builds it from the pinned source archive of the mirror and installs it in
$PULUMI_HOME's plugin cache. Without this check a workstation that skipped that step would see a
ministry `pulumi preview`/`up` die deep inside the engine, its one useful line buried in a Python
traceback. With it, the run stops before any resource with one line saying which plugin, which
version and how to install it.

`plugin_problems` is pure (it judges facts gathered by `installed_plugins`), so every message is
unit tested; `require_plugins` combines both.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Collection, Mapping
from importlib import metadata
from pathlib import Path

from visio_infra.model.config.cloud import OpenStackCloud
from visio_infra.model.config.stack import StackConfig

SDK_OF_PLUGIN = {"openstack": "pulumi_openstack"}
"""Resource plugin -> the Python SDK whose version fixes the plugin version the engine asks for."""


def needed_plugins(
    config: StackConfig, sdk_version: Callable[[str], str] = metadata.version
) -> dict[str, str]:
    """Resource plugin name -> exact version this stack's program will ask the engine for.

    The lab needs none: its resources are the project's own dynamic providers.
    """
    if isinstance(config.cloud, OpenStackCloud):
        return {name: sdk_version(sdk) for name, sdk in SDK_OF_PLUGIN.items()}
    return {}


def installed_plugins(
    pulumi_home: Path, names: Collection[str], path_lookup: Callable[[str], str | None] = shutil.which
) -> set[str]:
    """Plugins the engine would find: `name-vVERSION` under $PULUMI_HOME/plugins, `name` on PATH."""
    found: set[str] = set()
    plugins = pulumi_home / "plugins"
    if plugins.is_dir():
        for entry in plugins.iterdir():
            if entry.is_dir() and entry.name.startswith("resource-") and not entry.name.endswith(".partial"):
                found.add(entry.name.removeprefix("resource-"))
    for name in names:
        if path_lookup(f"pulumi-resource-{name}"):
            found.add(name)
    return found


def plugin_problems(stack_file: str, needed: Mapping[str, str], installed: Collection[str]) -> list[str]:
    """One line per missing plugin: which, for which stack, and how to install a binary you built."""
    problems = []
    for name, version in sorted(needed.items()):
        if f"{name}-v{version}" in installed or name in installed:
            continue
        problems.append(
            f"{stack_file}: the Pulumi resource plugin `{name}` v{version} (matching "
            f"{SDK_OF_PLUGIN[name]}=={version} in requirements.lock) is not installed, and plugins are "
            "never downloaded at run time. "
            "Build and install it from the pinned source archive with `bash scripts/toolchain.sh plugins` "
            "(the source mirror is $VISIO_UPSTREAM_DIR), or install a binary built elsewhere with "
            f"`pulumi plugin install resource {name} {version} --file ./pulumi-resource-{name}` "
            f"(or put `pulumi-resource-{name}` on PATH); see toolchain/README.md. Nothing was created."
        )
    return problems


def require_plugins(config: StackConfig, environ: Mapping[str, str] = os.environ) -> None:
    """Raise `pulumi.RunError` (printed without a traceback) when a needed plugin is missing."""
    import pulumi

    needed = needed_plugins(config)
    home = Path(environ.get("PULUMI_HOME") or Path.home() / ".pulumi")
    source = f"stacks/Pulumi.{pulumi.get_stack()}.yaml"
    problems = plugin_problems(source, needed, installed_plugins(home, needed))
    if problems:
        raise pulumi.RunError("\n".join(problems))
