"""One import name: the installed toolkit adds ``densechange`` to the top-level namespace and nothing else.

Checked from a folder outside the repository, in a fresh interpreter, so that the repository's own
folders on the current path cannot stand in for what the installation provides.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from densechange.engine.commands import COMMANDS, dispatch, main, usage
from densechange.engine.errors import ConfigError

OLD_NAMES = ("pretrain", "finetune", "datasets", "checkpoints", "engine", "models")
CONSOLE = Path(sys.executable).parent / "densechange"

PROBE = """
import importlib.metadata as md, importlib.util, json
dist = md.distribution("densechange")
tops = sorted(name for name, dists in md.packages_distributions().items() if "densechange" in dists)
import datasets, densechange.datasets
# where the stages resolve, found without importing them (torch and timm would cost seconds)
origins = [importlib.util.find_spec(n).origin for n in ("densechange.pretrain.train", "densechange.finetune",
                                                         "densechange.models")]
print(json.dumps({
    "origins": origins,
    "top_level": dist.read_text("top_level.txt").split(),
    "distributed_tops": tops,
    "old_names_found": [n for n in %r if n != "datasets" and importlib.util.find_spec(n) is not None],
    "other_datasets": getattr(datasets, "WHO", None),
    "ours": densechange.datasets.__name__,
}))
"""


def test_installed_toolkit_provides_only_densechange(tmp_path):
    # A stand-in for another library called `datasets` (Hugging Face's import name) on the path.
    (tmp_path / "other" / "datasets").mkdir(parents=True)
    (tmp_path / "other" / "datasets" / "__init__.py").write_text('WHO = "another library"\n')
    env = {"PYTHONPATH": str(tmp_path / "other"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", PROBE % (OLD_NAMES,)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["top_level"] == ["densechange"]
    assert found["distributed_tops"] == ["densechange"]
    assert found["old_names_found"] == []
    assert found["other_datasets"] == "another library"  # `import datasets` is the other library's
    assert found["ours"] == "densechange.datasets"
    src = Path(__file__).resolve().parents[1] / "src" / "densechange"
    assert found["origins"] == [str(src / "pretrain" / "train.py"), str(src / "finetune" / "__init__.py"),
                                str(src / "models" / "__init__.py")]


def test_the_command_lists_every_stage_and_tool():
    expected = {"pretrain", "finetune", "predict", "evaluate", "export", "compare", "probe", "check", "tile",
                "stack", "weights"}
    assert expected <= set(COMMANDS)
    text = usage()
    for name in COMMANDS:
        assert f"\n  {name} " in text, name


def test_unknown_command_is_a_config_error_and_exit_2(capsys):
    with pytest.raises(ConfigError, match="unknown command 'pretrian'.*pretrain"):
        dispatch(["pretrian"])
    with pytest.raises(SystemExit) as stop:
        main(["pretrian"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown command 'pretrian'") and "Traceback" not in err


def test_console_script_runs_a_subcommand(tmp_path):
    """The real console script: `densechange weights list` from outside the repository."""
    assert CONSOLE.is_file(), f"console script not installed at {CONSOLE}"
    done = subprocess.run([str(CONSOLE), "weights", "list"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "resnet18_imagenet" in done.stdout
    help_ = subprocess.run([str(CONSOLE), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert help_.returncode == 0 and "usage: densechange COMMAND" in help_.stdout


def test_every_package_folder_is_packaged():
    """setup.cfg finds the packages under src/ (``packages = find:``): a folder of modules without an
    ``__init__.py`` would work from the checkout and vanish from a wheel."""
    from setuptools import find_packages

    src = Path(__file__).resolve().parents[1] / "src"
    found = {src.joinpath(*name.split(".")) for name in find_packages(src)}
    with_modules = {p.parent for p in (src / "densechange").rglob("*.py")}
    assert with_modules <= found, f"not packaged: {sorted(str(p) for p in with_modules - found)}"
    assert any(p.name == "models" for p in found)