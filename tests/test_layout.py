"""The layout is physical: each module's folder path is its import path, and the user's folders show at the root.

Static tools (editors' "go to definition", type checkers, grep) follow imports through files, not
through import hooks; an editable install of this ``src/`` layout puts ``src/`` on ``sys.path``, so
they resolve ``densechange.X.Y`` to ``src/densechange/X/Y.py``. The resolution is checked with jedi,
the completion engine many editors use.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "densechange"
LINKED = ("pretrain", "finetune", "datasets", "checkpoints", "engine", "models")


@pytest.mark.parametrize("name", LINKED)
def test_top_level_folders_are_links_into_the_package(name):
    link = REPO / name
    assert link.is_symlink() and link.resolve() == (SRC / name).resolve()


@pytest.mark.parametrize("module, name", [
    ("densechange.finetune.predict", "main"),
    ("densechange.pretrain.sadl.losses", "SaDLLoss"),
    ("densechange.datasets.readers.change", "ChangeDataset"),
    ("densechange.checkpoints.factory", "build_encoder"),
    ("densechange.engine.config", "load_config"),
    ("densechange.models.fpn", "FPN"),
    ("densechange.atomic", "write_atomically"),
])
def test_jedi_resolves_each_package_to_its_file(tmp_path, module, name):
    jedi = pytest.importorskip("jedi")
    source = f"from {module} import {name}\n"
    script = jedi.Script(source, path=tmp_path / "user.py", project=jedi.Project(tmp_path, sys_path=sys.path))
    found = script.goto(1, len(source) - 2, follow_imports=True)
    want = SRC.joinpath(*module.split(".")[1:]).with_suffix(".py")
    assert found and Path(found[0].module_path).resolve() == want.resolve(), found


def _module_classes(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            bases = [ast.unparse(b) for b in node.bases]
            if any(b in ("nn.Module", "torch.nn.Module", "Module") or b.startswith("nn.") for b in bases):
                out.append(f"{path.relative_to(REPO)}:{node.name}")
    return out


def test_checkpoints_define_no_modules_and_models_hold_the_architectures():
    in_checkpoints = [c for p in (SRC / "checkpoints").rglob("*.py") for c in _module_classes(p)]
    assert not in_checkpoints, in_checkpoints
    in_models = {c.rsplit(":", 1)[1] for p in (SRC / "models").rglob("*.py") for c in _module_classes(p)}
    assert {"Encoder", "FPN", "SimplePyramid"} <= in_models
