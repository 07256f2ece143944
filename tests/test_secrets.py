"""A secret in the environment, referenced from a config, ends up in no file a run writes, and in no message.

Tiny pretraining and finetuning runs fetch their encoder from a registry on 127.0.0.1 whose URL
carries a token from the environment (``${oc.env:...}``) and a literal token; the run folder lives
under a path from the environment. Every file the runs, the model card and the ONNX export write,
and the download cache, is then read byte for byte for the secrets.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from densechange.checkpoints import save_encoder
from densechange.models import Encoder
from densechange.redact import redact_text, redact_url
from tests.fileserver import FileServer

TOKEN = "tok-5e9f1c2a77b4"  # in the environment
LITERAL = "lit-0b8d3e61f2aa"  # written into the config itself
PLACE = "home-4c7a90de"  # a folder name that comes from the environment

PRETRAIN = ["data.root=synthetic", "data.synthetic_images=4", "data.tile_size=64", "aug.size=64",
            "model.backbone=test_resnet", "model.proj_hidden=32", "model.proj_dim=16", "model.pred_hidden=16",
            "model.points_per_class=4", "trainer.batch_size=2", "trainer.num_workers=0", "trainer.epochs=1",
            "trainer.device=cpu", "trainer.precision=fp32"]
FINETUNE = ["data.root=synthetic", "data.synthetic_pairs=4", "data.synthetic_val_pairs=2", "data.synthetic_size=64",
            "model.backbone=test_resnet", "model.embed_dim=8", "model.decoder_channels=8", "trainer.epochs=1",
            "trainer.batch_size=2", "trainer.num_workers=0", "trainer.device=cpu", "trainer.precision=fp32",
            "val.triptychs=1", "val.window.size=64", "val.window.overlap=16", "val.window.margin=4"]


def test_redaction_masks_query_values_and_user_info():
    assert redact_url("https://me:pw@h.org:8443/r.json?token=abc&v=2#top") == "https://***@h.org:8443/r.json?token=***&v=***#top"
    assert redact_url("https://h.org/r.json") == "https://h.org/r.json"
    assert redact_text("failed (see http://h/x?k=v).") == "failed (see http://h/x?k=***)."
    assert redact_url("https://h/r?t=${oc.env:T}&u=x", keep_references=True) == "https://h/r?t=${oc.env:T}&u=***"


def _grep(folder: Path, secrets: list[str]) -> list[str]:
    """``file: secret`` for every secret found in any file under ``folder``."""
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        found += [f"{path.relative_to(folder)}: {s}" for s in secrets if s.encode() in data]
    return found


@pytest.mark.slow
def test_no_secret_reaches_an_artefact(tmp_path, monkeypatch, cli, capsys):
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    weights = tmp_path / "src" / "enc.safetensors"
    save_encoder(weights, Encoder("test_resnet", neck_channels=16), mean=[0.5] * 3, std=[0.25] * 3)
    data = weights.read_bytes()
    root = tmp_path / PLACE
    monkeypatch.setenv("DC_TEST_TOKEN", TOKEN)
    monkeypatch.setenv("DC_TEST_ROOT", str(root))
    monkeypatch.setenv("DENSECHANGE_CACHE", str(root / "cache"))
    with FileServer() as server:
        entry = {"name": "tiny_enc", "url": server.url("enc.safetensors"), "sha256": hashlib.sha256(data).hexdigest(),
                 "backbone": "test_resnet", "in_chans": 3, "importer": "densechange", "neck_channels": 16,
                 "mean": [0.5] * 3, "std": [0.25] * 3}
        server.files["enc.safetensors"] = data
        server.files["reg.json"] = json.dumps({"version": 1, "entries": [entry]}).encode()
        registry = (f"model.registry=['{server.url('reg.json')}?token=${{oc.env:DC_TEST_TOKEN}}&lit={LITERAL}',"
                    f"'http://127.0.0.1:{server.port}/reg.json?key={LITERAL}']")
        assert cli(["pretrain", *PRETRAIN, "model.init=tiny_enc", registry, "trainer.max_steps=1",
                    "run.dir=${oc.env:DC_TEST_ROOT}/pretrain"]) == 0
        assert cli(["finetune", *FINETUNE, "model.encoder=tiny_enc", registry,
                    "run.dir=${oc.env:DC_TEST_ROOT}/finetune"]) == 0
        assert {q for _, _, _, q in server.requests} >= {f"token={TOKEN}&lit={LITERAL}", f"key={LITERAL}"}
    assert cli(["export", f"checkpoint={root / 'finetune' / 'final.safetensors'}", f"out={root / 'model.onnx'}"]) == 0
    assert cli(["weights", "card", root / "pretrain" / "encoder.safetensors", f"out={root / 'card.md'}"]) == 0
    assert cli(["pretrain", *PRETRAIN, "model.init=tiny_enc", registry, "--print-config"]) == 0
    shown = capsys.readouterr()
    written = sorted(p.name for p in root.rglob("*") if p.is_file())
    assert {"config.yaml", "encoder.safetensors", "MODEL_CARD.md", "final.safetensors", "best.safetensors",
            "last.safetensors", "model.onnx", "card.md"} <= set(written), written
    assert _grep(root, [TOKEN, LITERAL, str(root)]) == []
    assert TOKEN not in shown.out + shown.err and LITERAL not in shown.out + shown.err
    recorded = (root / "finetune" / "config.yaml").read_text()
    assert "?token=${oc.env:DC_TEST_TOKEN}&lit=***" in recorded and "?key=***" in recorded
    assert "dir: ${oc.env:DC_TEST_ROOT}/finetune" in recorded
