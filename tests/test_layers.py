"""The package's layers, checked from the source: imports only run downward, and there is no
import cycle between modules (DESIGN.md, "Layers of the code").

Every ``import jetpower...`` / ``from jetpower... import`` in every module counts, including
those inside functions (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import jetpower

PKG = Path(jetpower.__file__).resolve().parent

#: what each layer may import (besides itself and the shared basics)
BASICS = {"errors", "log", "timebase", "_compat", "_fs", "_process", "_native", "__init__"}
ALLOWED: dict[str, set[str]] = {
    "cli": {"commands"},
    "__main__": {"cli"},
    "commands": {"campaign", "acquire", "sensors", "plan", "report", "upload", "worker"},
    "campaign": {"acquire", "sensors", "plan", "upload", "worker"},
    "acquire": {"sampler", "sensors"},
    "report": {"acquire"},
    "plan": {"sensors", "worker"},
    "upload": set(),
    "sampler": set(),
    "sensors": set(),
    "worker": {"sensors"},  # the truth bus of simulated runs (sensors/truthbus.py)
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("jetpower"):
                    yield a.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "jetpower":
                for a in node.names:  # a submodule, or a name of the package's __init__
                    sub = (PKG / a.name).is_dir() or (PKG / f"{a.name}.py").is_file()
                    yield f"jetpower.{a.name}" if sub else "jetpower"
            elif node.module.startswith("jetpower."):
                yield node.module


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(PKG.rglob("*.py")):
        graph[_module_name(path)] = set(_imports(path))
    return graph


def test_imports_run_downward() -> None:
    wrong = []
    for module, targets in _graph().items():
        layer = _layer(module)
        if layer in BASICS and layer != "__init__":
            allowed = BASICS
        else:
            allowed = ALLOWED.get(layer, set()) | BASICS | {layer}
        for target in targets:
            tl = _layer(target)
            if tl == "_sampler":
                if module != "jetpower._native":
                    wrong.append(f"{module} imports the compiled module (only _native may)")
                continue
            if tl not in allowed:
                wrong.append(f"{module} -> {target} ({layer} may not use {tl})")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycles() -> None:
    graph = _graph()
    known = set(graph)

    def resolve(target: str) -> str | None:
        while target and target not in known:
            target = target.rpartition(".")[0]
        return target or None

    # a package's __init__ re-exporting its own submodules is not a cycle of design
    edges = {m: {r for t in ts if (r := resolve(t)) and r != m and not r.startswith(m + ".")}
             for m, ts in graph.items()}
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for t in sorted(edges.get(m, ())):
            if state.get(t) == 1:
                cycles.append(" -> ".join([*stack[stack.index(t):], t]))
            elif t not in state:
                visit(t, [*stack, t])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    assert not cycles, "\n".join(cycles)


def test_sensors_know_nothing_above_them() -> None:
    """The rule the issue names: sensors/ never imports sampler/ or acquire/; report/ never
    imports campaign/."""
    for module, targets in _graph().items():
        layer = _layer(module)
        for t in targets:
            if layer == "sensors":
                assert _layer(t) not in {"sampler", "acquire"}, (module, t)
            if layer == "report":
                assert _layer(t) != "campaign", (module, t)


def test_one_definition_of_each_shared_name() -> None:
    """Names the issue found defined twice are defined once and imported elsewhere."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    from jetpower import _native
    from jetpower.plan import SOURCES as plan_sources
    from jetpower.plan import _models
    from jetpower.sensors import SOURCES
    from jetpower.sensors.discover import NVML_LIB_ENV
    from jetpower.worker import config

    assert plan_sources is SOURCES
    assert _models.BACKENDS is config.BACKENDS and _models.DTYPES is config.DTYPES
    assert NVML_LIB_ENV is _native.NVML_LIB_ENV
    project = tomllib.loads((PKG.parent / "pyproject.toml").read_text())["project"]
    assert jetpower.__version__ == project["version"]
