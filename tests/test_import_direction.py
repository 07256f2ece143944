"""The layout's dependency rules, read from the source with ``ast`` (nothing is imported).

``densechange`` itself (the namespace root: :mod:`densechange.atomic`) is the ground floor under
everything; ``datasets`` and ``models`` (the architectures) stand on it, ``checkpoints`` on
``models``, ``engine`` (the run machinery) on those, ``cli`` (the commands of the packages below the
engine) on the engine,
and the two stages on all three: they never import each other, and nothing below a stage imports
it. No module may reach itself again through its imports (no cycles), lazy imports inside
functions included. The folder path is the import path: ``src/densechange/finetune/train.py`` is
``densechange.finetune.train`` (the repository root shows the packages as links into ``src/``).
"""
from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
ROOT = "densechange"
PACKAGES = ("densechange", "datasets", "models", "checkpoints", "engine", "cli", "pretrain", "finetune")
# package -> packages it may import (besides itself)
ALLOWED = {
    "densechange": set(),
    "datasets": {"densechange"},
    "models": {"densechange"},
    "checkpoints": {"densechange", "models"},
    "engine": {"densechange", "datasets", "models", "checkpoints"},
    "cli": {"densechange", "datasets", "models", "checkpoints", "engine"},
    "pretrain": {"densechange", "datasets", "models", "checkpoints", "engine"},
    "finetune": {"densechange", "datasets", "models", "checkpoints", "engine"},
}


@functools.lru_cache(maxsize=None)
def parsed(path: Path) -> ast.Module:
    """A source file's syntax tree, parsed once for all the tests of this module."""
    return ast.parse(path.read_text(), filename=str(path))


def module_name(path: Path) -> str:
    """Installed name of a source file: its path under ``src/`` (``densechange/finetune/deepcl/model.py``)."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_of(module: str) -> str:
    """``densechange.finetune.train`` -> ``finetune``; ``densechange.atomic`` -> ``densechange``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in PACKAGES else ROOT


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for p in (SRC / ROOT).rglob("*.py")}


def resolve(target: str, names: list[str], modules: dict[str, Path]) -> list[str]:
    """Project modules named by ``from target import names`` (a name may itself be a submodule)."""
    found = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
    if len(found) < len(names) and target in modules:
        found.append(target)
    return found


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every project module that ``name`` imports, at the top or inside a function."""
    tree = parsed(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                while parts and ".".join(parts) not in modules:
                    parts.pop()
                if parts:
                    out.add(".".join(parts))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == ROOT:
                out.update(resolve(target, [a.name for a in node.names], modules))
    out.discard(name)
    return out


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def test_packages_import_only_downwards():
    wrong = []
    for name, targets in graph().items():
        top = package_of(name)
        for target in targets:
            other = package_of(target)
            if other != top and other not in ALLOWED[top]:
                wrong.append(f"{name} -> {target}")
    assert not wrong, "imports against the layout's direction:\n" + "\n".join(sorted(wrong))


def test_finetune_benchmark_does_not_need_pretraining():
    modules = project_modules()
    bench = REPO / "bench" / "finetune_step.py"
    used = imports_of("bench.finetune_step", bench, modules)
    assert used and not [m for m in used if package_of(m) == "pretrain"]


def strongly_connected(g: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(g):
        if root in index:
            continue
        work = [(root, iter(sorted(g[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(g.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles():
    cycles = strongly_connected(graph())
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


@pytest.mark.parametrize("g, expected", [
    ({"a": {"b"}, "b": {"a"}, "c": {"a"}}, [["a", "b"]]),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"d"}}, [["a", "b", "c"]]),
])
def test_cycle_finder_on_known_graphs(g, expected):
    assert strongly_connected(g) == expected


def test_relative_and_lazy_imports_are_read(tmp_path):
    source = tmp_path / "fake.py"
    source.write_text("import densechange.engine.loop\nfrom ..data import build_labelled_dataset\n"
                      "def f():\n    from densechange.pretrain.sadl import model\n    from . import views\n")
    found = imports_of("densechange.pretrain.sadl.fake", source, project_modules())
    assert found == {"densechange.engine.loop", "densechange.pretrain.data", "densechange.pretrain.sadl.model",
                     "densechange.pretrain.sadl.views"}


def test_the_old_top_level_names_are_imported_nowhere():
    """Every import of the toolkit goes through ``densechange``: the bare folder names are not installed."""
    files = [*project_modules().values(), *(REPO / "tests").rglob("*.py"), *(REPO / "bench").rglob("*.py")]
    old = [f"{path.relative_to(REPO)} imports {node}" for path in files for node in bare_imports(path)]
    assert not old, "\n".join(old)


def bare_imports(path: Path) -> list[str]:
    tree = parsed(path)
    found = []
    for node in ast.walk(tree):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
        found += [n for n in names if n.split(".")[0] in PACKAGES[1:]]
    return found
