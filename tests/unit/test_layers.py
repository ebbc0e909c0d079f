"""The package's layers: imports only go down, and no module imports itself through a circle.

    commands  ->  cloud  ->  hosts  ->  probes  ->  model

A module may import modules of its own layer or of a lower one, never of a higher one, and the module
graph has no cycle. Imports inside functions count: a lazy import is a dependency all the same (it
only hid the config <-> sizing circle this test was written against). The model imports neither
Pulumi nor anything that starts processes or opens connections, so it runs the same in `pulumi up`,
`visio plan` and these tests.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "visio_infra"
LAYERS = {"model": 0, "probes": 1, "hosts": 2, "cloud": 3, "commands": 4}
"""Layer of each subpackage, lowest first."""
OUTSIDE_LAYERS = {"visio_infra", "visio_infra.state_compat"}
"""The package itself and the aliases existing state needs; they import no layer."""
MODEL_FORBIDDEN = (
    "pulumi", "pulumi_openstack", "pulumi_policy", "openstack", "keystoneauth1", "ansible_runner",
    "subprocess", "socket", "asyncio", "urllib.request", "http", "requests", "livekit",
)
"""Top-level modules the model never imports (Pulumi, clouds, processes, network)."""


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, int]]:
    """(imported module, line) for every import in the file, lazy ones included."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.append((submodule if submodule in MODULES else base, node.lineno))
    return found


def _graph() -> dict[str, set[str]]:
    return {
        name: {target for target, _ in _imports(name, path) if target in MODULES and target != name}
        for name, path in MODULES.items()
    }


def _layer(name: str) -> int | None:
    if name in OUTSIDE_LAYERS:
        return None
    return LAYERS[name.split(".")[1]]


def test_every_module_belongs_to_a_layer():
    strays = [
        name for name in MODULES if name not in OUTSIDE_LAYERS and name.split(".")[1] not in LAYERS
    ]
    assert not strays, f"modules outside {sorted(LAYERS)}: {strays}; put each in the layer it belongs to"


def _upward(edges: list[tuple[str, str, str]]) -> list[str]:
    """The (module, imported module, where) edges that go to a higher layer."""
    found = []
    for name, target, where in edges:
        if OUTSIDE_LAYERS & {name, target}:
            continue
        source_layer, target_layer = _layer(name), _layer(target)
        assert source_layer is not None and target_layer is not None
        if target_layer > source_layer:
            found.append(f"{where}: {name} imports {target} (a higher layer)")
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_imports_only_go_down():
    edges = [
        (name, target, f"{path.relative_to(ROOT)}:{line}")
        for name, path in MODULES.items()
        for target, line in _imports(name, path)
        if target in MODULES
    ]
    upward = _upward(edges)
    assert not upward, "\n".join(upward)


def test_outside_modules_import_no_layer():
    for name in OUTSIDE_LAYERS:
        targets = {t for t, _ in _imports(name, MODULES[name]) if t.startswith(PACKAGE)}
        assert targets <= OUTSIDE_LAYERS, f"{name} imports {sorted(targets - OUTSIDE_LAYERS)}"


def test_no_import_cycle():
    cycles = _cycles(_graph())
    assert not cycles, f"import cycles: {cycles}"


def test_model_imports_no_pulumi_and_no_io_library():
    found = [
        f"{path.relative_to(ROOT)}:{line}: {name} imports {target}"
        for name, path in MODULES.items()
        if _layer(name) == LAYERS["model"]
        for target, line in _imports(name, path)
        if any(target == m or target.startswith(m + ".") for m in MODEL_FORBIDDEN)
    ]
    assert not found, "\n".join(found)


def _top_level_names(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        else:
            names |= {
                n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
            }
    return names


def test_every_import_of_the_package_resolves():
    """Lab, verify and role tests, the policy pack and scripts are not all run by the unit suite:
    every `visio_infra` import anywhere must name a module of the package and a name it defines."""
    files = [ROOT / "__main__.py"] + [
        path
        for folder in ("visio_infra", "tests", "policy", "scripts")
        for path in (ROOT / folder).rglob("*.py")
        if ".venv" not in path.parts
    ]
    unknown = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [(a.name, None) for a in node.names if a.name.split(".")[0] == PACKAGE]
            elif (
                isinstance(node, ast.ImportFrom)
                and not node.level
                and (node.module or "").split(".")[0] == PACKAGE
            ):
                modules = [(node.module or "", a.name) for a in node.names]
            else:
                continue
            for module, name in modules:
                if module not in MODULES:
                    unknown.append(f"{path.relative_to(ROOT)}:{node.lineno}: no module {module}")
                elif (
                    name
                    and f"{module}.{name}" not in MODULES
                    and name not in _top_level_names(MODULES[module])
                ):
                    unknown.append(f"{path.relative_to(ROOT)}:{node.lineno}: {module} has no {name}")
    assert not unknown, "\n".join(unknown)


def test_the_checks_can_fail(tmp_path):
    """A made-up upward import, circle and lazy import are all caught."""
    assert _upward([("visio_infra.model.topology", "visio_infra.commands.cli", "x.py:1")])
    assert not _upward([("visio_infra.commands.cli", "visio_infra.model.topology", "x.py:1")])
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert not _cycles({"a": {"b"}, "b": set()})
    lazy = tmp_path / "m.py"
    lazy.write_text("def f():\n    from visio_infra.model import topology\n")
    assert _imports("visio_infra.model.m", lazy) == [("visio_infra.model.topology", 2)]
