"""Old module paths of the stack's dynamic providers, still importable after the package was regrouped.

Why: Pulumi keeps a dynamic resource's provider in the state as a dill pickle that names the provider
class *by module path* (e.g. `visio_infra.configuration.ConfigurationProvider`). `pulumi up` pickles
the provider again from the current code, but a resource that did not change keeps the old pickle in
its outputs, and `pulumi refresh`, `pulumi destroy` and every delete unpickle that one: without these
aliases a stack deployed before the regrouping (issue 12) fails them with "No module named
'visio_infra.configuration'" (tried on a throwaway stack). An alias is a stand-in module that hands
out the real module's attributes, so the unpickled class is the current one. Only modules that define
a `ResourceProvider` are listed (tests/unit/test_state_compat.py); keep them while such stacks exist.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Sequence
from typing import Any

MOVED: dict[str, str] = {
    "visio_infra.configuration": "visio_infra.hosts.configuration",
    "visio_infra.generated_secret": "visio_infra.cloud.generated_secret",
    "visio_infra.lab": "visio_infra.cloud.lab",
    "visio_infra.lab.base_image": "visio_infra.cloud.lab.base_image",
    "visio_infra.lab.bridge": "visio_infra.cloud.lab.bridge",
    "visio_infra.lab.machine": "visio_infra.cloud.lab.machine",
    "visio_infra.lab.ssh": "visio_infra.cloud.lab.ssh",
    "visio_infra.pki": "visio_infra.cloud.pki",
}
"""Module path written in existing state -> where that module lives now."""

PACKAGES = frozenset({
    "visio_infra.lab",
})
"""Old packages that exist only to hold an aliased module (imported before their submodules)."""


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """First on `sys.meta_path`, so an old path always means the current module (no stale copy of the
    old file elsewhere on the path, e.g. through another checkout's editable install, answers first)."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=fullname in PACKAGES)

    def exec_module(self, module: types.ModuleType) -> None:
        target = MOVED[module.__name__]

        def attribute(name: str) -> Any:
            # Dunder look-ups (`__file__`, `__path__`, ...) come from tools walking sys.modules, e.g.
            # `inspect.getmodule`, which pydantic calls while a model class is being created: importing
            # the target there would re-enter half-imported modules ("partially initialized module").
            if name.startswith("__") and name.endswith("__"):
                raise AttributeError(name)
            return getattr(importlib.import_module(target), name)

        module.__dict__["__getattr__"] = attribute  # PEP 562: the module hands out the real attributes


def install() -> None:
    """Make the old paths importable (idempotent; called by `visio_infra/__init__.py`)."""
    if not any(isinstance(finder, _AliasFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())
