"""``densechange weights``: verify, inspect and convert (download and list: test_ckpt_download)."""

import hashlib
import subprocess
import sys
from pathlib import Path

import torch
import torchvision

from densechange.checkpoints import load_encoder, read_metadata
from densechange.cli.weights import IMPORTER_NAMES
from densechange.checkpoints.importers import IMPORTERS

REPO = Path(__file__).resolve().parents[2]


def test_cli_importer_choices_match_the_importers():
    assert sorted(IMPORTER_NAMES) == sorted(IMPORTERS)


def test_verify(tmp_path, capsys, cli):
    path = tmp_path / "w.bin"
    path.write_bytes(b"densechange")
    digest = hashlib.sha256(b"densechange").hexdigest()
    assert cli(["weights", "verify", str(path)]) == 0
    assert capsys.readouterr().out == f"sha256 {digest}  {path}\n"
    assert cli(["weights", "verify", str(path), f"sha256={digest[:8]}"]) == 0
    assert capsys.readouterr().out.startswith("OK")
    assert cli(["weights", "verify", str(path), "sha256=" + "0" * 64]) == 1
    assert f"MISMATCH sha256 {digest}" in capsys.readouterr().out
    assert cli(["weights", "verify", str(path), "name=resnet18_imagenet"]) == 1
    assert "expected f37072fd..." in capsys.readouterr().out
    assert cli(["weights", "verify", str(tmp_path / "none.bin")]) == 2
    assert "no file at" in capsys.readouterr().err


def test_convert_and_inspect_through_the_console_script(tmp_path):
    """The suite's one ``densechange weights`` in a process of its own."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    src = tmp_path / "resnet18-tv.pth"
    torch.save(model.state_dict(), src)
    dst = tmp_path / "resnet18.safetensors"
    run = subprocess.run([str(Path(sys.executable).parent / "densechange"), "weights", "convert", str(src), str(dst),
                          "source_layout=torchvision"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == str(dst)
    encoder = load_encoder(dst)
    assert torch.equal(encoder.backbone.layer4[1].conv2.weight, model.layer4[1].conv2.weight)
    meta = read_metadata(dst)
    assert meta["import"]["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()


def test_inspect_foreign_and_bad_files(tmp_path, capsys, cli):
    src = tmp_path / "tv.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), src)
    assert cli(["weights", "inspect", str(src)]) == 0
    out = capsys.readouterr().out
    assert '"layout": "torchvision"' in out and "tensors: 122" in out
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 3)
    assert cli(["weights", "inspect", str(bad)]) == 2
    assert "bad.safetensors" in capsys.readouterr().err


def test_convert_with_explicit_normalisation(tmp_path, capsys, cli):
    import timm

    src = tmp_path / "geo.pth"
    torch.save(timm.create_model("resnet18", in_chans=4).state_dict(), src)
    dst = tmp_path / "geo.safetensors"
    assert cli(["weights", "convert", str(src), str(dst), "source_layout=torchgeo"]) == 2
    assert "mean=[...] std=[...]" in capsys.readouterr().err
    args = ["weights", "convert", str(src), str(dst), "source_layout=torchgeo", "mean=[0,0,0,0]", "std=[1,1,1,2]"]
    assert cli(args) == 0
    meta = read_metadata(dst)
    assert meta["in_chans"] == 4 and meta["std"] == [1.0, 1.0, 1.0, 2.0]
