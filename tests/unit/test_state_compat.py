"""Stacks deployed before the package was regrouped still refresh, replace and destroy.

Their state holds each dynamic provider pickled by module path under the old layout
(`visio_infra.configuration.ConfigurationProvider`, ...); `visio_infra.state_compat` keeps those
paths importable. These tests unpickle such a provider the way Pulumi's provider server does
(`pulumi.dynamic.__main__.get_provider`: base64, then `dill.loads`; that module starts the server when
imported, so it is not imported here).
"""

from __future__ import annotations

import base64
import importlib
import subprocess
import sys
from pathlib import Path

import dill
import pytest
from pulumi.dynamic import ResourceProvider
from pulumi.dynamic.dynamic import serialize_provider

from visio_infra.state_compat import MOVED, PACKAGES

ROOT = Path(__file__).resolve().parents[2]


def by_module_path(module: str, name: str) -> bytes:
    """A provider pickled by reference, byte for byte what `serialize_provider` writes for ours."""
    body = b""
    for text in (module, name):
        data = text.encode()
        body += b"\x8c" + bytes([len(data)]) + data + b"\x94"
    body += b"\x93\x94)\x81\x94."
    return b"\x80\x04\x95" + len(body).to_bytes(8, "little") + body


def providers(module_name: str) -> list[type]:
    module = importlib.import_module(module_name)
    return [
        value for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, ResourceProvider) and value.__module__ == module_name
    ]


MODULES = sorted(name for name in MOVED if name not in PACKAGES)


@pytest.mark.parametrize("old", MODULES)
def test_a_provider_pickled_under_its_old_path_loads_as_the_current_class(old):
    classes = providers(MOVED[old])
    assert classes, f"{MOVED[old]} defines no dynamic provider any more: drop {old} from MOVED"
    for cls in classes:
        current = base64.b64decode(serialize_provider(cls()))
        assert current == by_module_path(cls.__module__, cls.__qualname__), "no longer pickled by path"
        old_state = base64.b64encode(by_module_path(old, cls.__qualname__)).decode()
        assert type(dill.loads(base64.b64decode(old_state))) is cls  # noqa: S301 (bytes built above)


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_path_is_not_a_real_module_any_more(old):
    relative = Path(*old.split("."))
    assert not (ROOT / relative).with_suffix(".py").exists() and not (ROOT / relative).is_dir()


def test_an_unknown_old_path_still_fails():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("visio_infra.no_such_module")


@pytest.mark.parametrize("old", MODULES)
def test_an_old_pickle_loads_first_thing_in_a_fresh_interpreter(old):
    """As in Pulumi's provider process on `pulumi refresh`: the old pickle is the first thing that
    imports the project. Loading the current module then creates pydantic models, which walk
    sys.modules (`inspect.getmodule`) and ask every stand-in for `__file__`; a stand-in that imported
    its target for that re-entered half-imported modules (seen on the lab: "cannot import name
    '_Model' from partially initialized module")."""
    classes = providers(MOVED[old])
    payloads = [base64.b64encode(by_module_path(old, cls.__qualname__)).decode() for cls in classes]
    script = (
        "import base64, sys, dill\n"
        "for payload in sys.argv[1:]:\n"
        "    print(type(dill.loads(base64.b64decode(payload))).__module__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, *payloads], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [MOVED[old]] * len(classes)


def test_a_stand_in_answers_no_dunder_without_importing_its_target():
    done = subprocess.run(
        [sys.executable, "-c",
         "import sys, importlib; m = importlib.import_module('visio_infra.lab.ssh'); "
         "print(hasattr(m, '__file__'), 'visio_infra.cloud.lab.ssh' in sys.modules)"],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "False"]
