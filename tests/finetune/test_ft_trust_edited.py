"""``trust_edited`` reaches every file a command loads: the encoder a run starts from, the state it resumes, the
checkpoint an export reads. Without it each edited file is refused; with it each loads with a warning."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file as st_save_file

from densechange.checkpoints import save_encoder
from densechange.checkpoints.format import META_KEY
from densechange.models import Encoder

REFUSED = "metadata was changed after the file was written"
TRUSTED = "edited after the file was written; loading it because trust_edited"


def _edit(path, edit) -> None:
    """Rewrite the metadata of ``path`` in place, its metadata digest left as it was (an edit, not a forgery)."""
    with safe_open(str(path), framework="pt") as f:
        header, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    meta = json.loads(header[META_KEY])
    edit(meta)
    header[META_KEY] = json.dumps(meta)
    st_save_file(tensors, str(path), metadata=header)


def test_model_encoder_of_a_finetuning_run(tmp_path, tiny_overrides, cli, capsys):
    encoder = tmp_path / "encoder.safetensors"
    torch.manual_seed(0)
    save_encoder(encoder, Encoder("test_resnet", neck_channels=16), mean=[0.4, 0.45, 0.5], std=[0.2, 0.25, 0.3])
    _edit(encoder, lambda meta: meta.update(std=[0.3, 0.3, 0.3]))
    base = [o for o in tiny_overrides if not o.startswith(("model.encoder", "trainer.epochs"))]
    argv = ["finetune", *base, f"model.encoder={encoder}", "trainer.epochs=1", "val.triptychs=0"]
    assert cli([*argv, f"run.dir={tmp_path / 'refused'}"]) == 2
    assert REFUSED in " ".join(capsys.readouterr().err.split()) and not (tmp_path / "refused").exists()
    with pytest.warns(UserWarning, match=TRUSTED):
        assert cli([*argv, f"run.dir={tmp_path / 'trusted'}", "trust_edited=true"]) == 0
    assert (tmp_path / "trusted" / "final.safetensors").is_file()
    assert "trust_edited: true" in (tmp_path / "trusted" / "config.yaml").read_text()


def test_trainer_resume_and_export(tiny_run, tiny_overrides, tmp_path, cli, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    _edit(run_dir / "last.safetensors", lambda meta: meta.setdefault("note", "edited"))
    argv = ["finetune", *tiny_overrides, f"run.dir={run_dir}", "trainer.epochs=3", "trainer.resume=auto"]
    assert cli(argv) == 2
    assert REFUSED in " ".join(capsys.readouterr().err.split())
    with pytest.warns(UserWarning, match=TRUSTED):
        assert cli([*argv, "trust_edited=true"]) == 0
    best = tmp_path / "best.safetensors"
    shutil.copy(tiny_run / "best.safetensors", best)
    _edit(best, lambda meta: meta.setdefault("note", "edited"))
    out = tmp_path / "model.onnx"
    assert cli(["export", f"checkpoint={best}", f"out={out}"]) == 2
    assert REFUSED in " ".join(capsys.readouterr().err.split()) and not out.exists()
    with pytest.warns(UserWarning, match=TRUSTED):
        assert cli(["export", f"checkpoint={best}", f"out={out}", "trust_edited=true"]) == 0
    assert out.stat().st_size > 0
