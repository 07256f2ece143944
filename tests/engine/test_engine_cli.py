"""The command wrapper: the toolkit's errors are one paragraph and exit 2; anything else is a bug with its traceback."""
import errno
import importlib.util
import runpy
import sys

import pytest
import torch
import torch.nn.functional as F

from densechange.checkpoints import CheckpointError
from densechange.atomic import OutputError
from densechange.datasets import DatasetError
from densechange.engine.cli import BUG_LINE, run_cli
from densechange.engine.commands import COMMANDS, usage
from densechange.engine.commands import main as densechange
from densechange.engine.errors import TOOLKIT_ERRORS, ConfigError, TrainingError
from densechange.models import ModelError


@pytest.mark.parametrize("error", [ConfigError, TrainingError, DatasetError, CheckpointError, ModelError, OutputError])
def test_toolkit_errors_are_one_paragraph_and_exit_2(error, capsys):
    def main():
        raise error("tile_3.png:   mask is 10x10    but the image is 12x12")

    with pytest.raises(SystemExit) as stop:
        run_cli(main)
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert err == "error: tile_3.png: mask is 10x10 but the image is 12x12\n"


def test_a_value_error_from_inside_torch_keeps_its_traceback(capsys):
    def main():
        logits, target = torch.zeros(2, 3), torch.zeros(2, dtype=torch.long)
        return F.cross_entropy(logits, target, reduction="everything")  # torch raises ValueError

    with pytest.raises(SystemExit) as stop:
        run_cli(main)
    err = capsys.readouterr().err
    assert stop.value.code == 1
    assert "Traceback (most recent call last)" in err and "ValueError" in err and "torch" in err
    assert err.rstrip().endswith(BUG_LINE)


def test_plain_file_not_found_is_a_bug_not_a_user_error():
    assert not issubclass(FileNotFoundError, TOOLKIT_ERRORS) and not issubclass(ValueError, TOOLKIT_ERRORS)


@pytest.mark.parametrize("command, args", [
    ("pretrain", lambda tmp: [f"data.root={tmp / 'nowhere'}", f"run.dir={tmp / 'run'}"]),
    ("predict", lambda tmp: [f"checkpoint={tmp / 'none.safetensors'}", f"a={tmp / 'x.png'}",
                             f"b={tmp / 'y.png'}", f"out={tmp / 'c.png'}"]),
])
def test_commands_give_exit_2_and_no_traceback_for_a_wrong_path(tmp_path, capsys, command, args):
    """``densechange COMMAND ARGS`` through the console script's own function, in this process."""
    with pytest.raises(SystemExit) as stop:
        densechange([command, *args(tmp_path)])
    err = capsys.readouterr().err
    assert stop.value.code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err and str(tmp_path) in err


def test_the_densechange_command_lists_its_subcommands_and_refuses_others(capsys):
    with pytest.raises(SystemExit) as stop:
        densechange([])
    assert stop.value.code == 2 and capsys.readouterr().out == usage() + "\n"
    with pytest.raises(SystemExit) as stop:
        densechange(["--help"])
    listing = capsys.readouterr().out
    assert stop.value.code == 0 and all(f"\n  {name} " in listing for name in COMMANDS)
    with pytest.raises(SystemExit) as stop:
        densechange(["pretrian", "data.root=synthetic"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith("error: unknown command 'pretrian'") and "pretrain" in err


@pytest.mark.parametrize("module, prog", [
    ("densechange.pretrain", "densechange pretrain"), ("densechange.finetune", "densechange finetune"),
    ("densechange.finetune.predict", "densechange predict"), ("densechange.finetune.evaluate", "densechange evaluate"),
    ("densechange.finetune.export", "densechange export"), ("densechange.finetune.compare", "densechange compare"),
    ("densechange.pretrain.probe", "densechange probe"),
])
def test_the_module_forms_run_the_commands(module, prog, capsys, monkeypatch):
    """``python -m MODULE --help`` (the form torchrun launches), its file run as ``__main__`` in this process."""
    spec = importlib.util.find_spec(module)
    path = importlib.util.find_spec(f"{module}.__main__").origin if spec.submodule_search_locations else spec.origin
    monkeypatch.setattr(sys, "argv", [path, "--help"])
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(path, run_name="__main__")
    out = capsys.readouterr().out
    assert stop.value.code == 0 and out.startswith(f"usage: {prog}"), out[:200]


@pytest.mark.parametrize("code, cause", [(errno.ENOSPC, "No space left on device"), (errno.EROFS, "Read-only file system")])
def test_a_full_or_read_only_disk_under_any_writer_is_one_paragraph(code, cause, tmp_path, capsys):
    """Writers outside densechange.atomic (a tile, a config.yaml) meet a full disk too: exit 2, the file and the cause."""
    target = tmp_path / "tiles" / "t_0_0.tif"

    def main():
        raise OSError(code, cause, str(target))

    with pytest.raises(SystemExit) as stop:
        run_cli(main)
    assert stop.value.code == 2
    err = " ".join(capsys.readouterr().err.split())  # the paragraph is wrapped at 100 columns
    assert err.startswith(f"error: cannot write {target}: {cause}") and "Traceback" not in err


def test_a_permission_error_keeps_its_traceback(capsys):
    """EACCES can be a bug (writing where the toolkit should not): only full and read-only disks are the machine's."""
    def main():
        raise PermissionError(errno.EACCES, "Permission denied", "/somewhere")

    with pytest.raises(SystemExit) as stop:
        run_cli(main)
    assert stop.value.code == 1
    assert "Traceback" in capsys.readouterr().err
