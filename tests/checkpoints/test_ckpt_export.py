"""Encoders that work anywhere: export to timm, torchvision, TorchGeo and smp, the model card, the registry entry.

One short pretraining run (ResNet-18, the family every target has) is exported, reloaded by each
library's own model and compared with this toolkit's features in fp32; its card and registry
entry are written, and the encoder is downloaded back by name from a server on 127.0.0.1.
"""
from __future__ import annotations

import functools
import http.server
import importlib.util
import json
import re
import shlex
import shutil
import threading
from pathlib import Path

import pytest
import timm
import torch
import yaml
from torch import nn

from densechange.checkpoints import CheckpointError, build_encoder, load_encoder

from densechange.models import Encoder
from densechange.checkpoints.card import CARD_NAME, card_for_file
from densechange.cli.weights import EXPORT_TARGETS
from densechange.checkpoints.exporters import TARGETS, TOLERANCE, export_encoder, full_model_names
from densechange.checkpoints.format import read_metadata
from densechange.engine.commands import dispatch
from densechange.pretrain.train import main as pretrain_main

PRETRAIN = ["data.root=synthetic", "data.synthetic_images=4", "data.tile_size=64", "model.backbone=resnet18",
            "model.init=random", "model.proj_hidden=32", "model.proj_dim=16",
            "model.pred_hidden=16", "trainer.batch_size=2", "trainer.max_steps=2", "trainer.num_workers=0",
            "trainer.device=cpu", "trainer.precision=fp32", "trainer.log_every=1"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    """encoder.safetensors of a two-step SaDL run (its MODEL_CARD.md beside it)."""
    run = tmp_path_factory.mktemp("sadl") / "run"
    assert pretrain_main([*PRETRAIN, f"run.dir={run}"]) == 0
    return run / "encoder.safetensors"


def images(in_chans: int = 3, size: int = 64) -> torch.Tensor:
    return torch.rand(2, in_chans, size, size, generator=torch.Generator().manual_seed(1))


def max_difference(ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> float:
    assert [t.shape for t in ours] == [t.shape for t in theirs]
    return max(float((a - b).abs().max()) for a, b in zip(ours, theirs))


def test_timm_loads_the_export_the_way_users_load_weights(pretrained, tmp_path, capsys, cli):
    out = tmp_path / "encoder_timm.safetensors"
    assert cli(["weights", "export", str(pretrained), str(out), "to=timm"]) == 0
    assert "the timm model loads them strictly" in capsys.readouterr().out
    encoder = load_encoder(pretrained).eval()
    model = timm.create_model("resnet18", pretrained=True, num_classes=0,
                              pretrained_cfg_overlay=dict(file=str(out))).eval()
    strict = timm.create_model("resnet18", num_classes=0)
    from safetensors.torch import load_file

    strict.load_state_dict(load_file(str(out)), strict=True)  # every tensor of the full model, none extra
    x = images()
    with torch.no_grad():
        theirs = model.forward_intermediates(x, indices=[1, 2, 3, 4], intermediates_only=True)
        assert max_difference(encoder.forward_features(x), theirs) <= 1e-5  # fp32


def test_torchvision_loads_the_export_strictly(pretrained, tmp_path):
    torchvision = pytest.importorskip("torchvision")
    out = tmp_path / "encoder_tv.pth"
    done = export_encoder(load_encoder(pretrained), out, "torchvision")
    assert done.max_difference <= TOLERANCE and any("neck is left out" in n for n in done.notes)
    model = torchvision.models.resnet18(weights=None)
    model.fc = nn.Identity()
    model.load_state_dict(torch.load(out, weights_only=True), strict=True)
    model.eval()
    x = images()
    with torch.no_grad():
        y = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        levels = []
        for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
            y = layer(y)
            levels.append(y)
        assert max_difference(load_encoder(pretrained).eval().forward_features(x), levels) <= 1e-5  # fp32


def test_four_band_torchvision_export_says_how_to_build_conv1(tmp_path):
    torch.manual_seed(0)
    done = export_encoder(Encoder("resnet18", in_chans=4, neck_channels=16), tmp_path / "e.pth", "torchvision")
    assert any("nn.Conv2d(4, 64, 7, 2, 3, bias=False)" in n for n in done.notes)
    assert torch.load(tmp_path / "e.pth", weights_only=True)["conv1.weight"].shape == (64, 4, 7, 7)


def test_feature_wrapper_names_become_full_model_names():
    state = {"stages_0.blocks.0.weight": torch.zeros(1), "stem.0.weight": torch.zeros(1), "layer1.0.conv1.weight": torch.zeros(1)}
    full = {"stages.0.blocks.0.weight", "stem.0.weight", "layer1.0.conv1.weight"}
    assert set(full_model_names(state, full)) == full


def test_a_timm_backbone_with_a_head_norm_is_exported_and_says_what_it_leaves_out(tmp_path):
    torch.manual_seed(0)
    encoder = Encoder("test_convnext", neck_channels=16, out_indices=None)
    done = export_encoder(encoder, tmp_path / "c.safetensors", "timm")
    assert done.max_difference <= TOLERANCE
    assert any("head.norm.weight" in n for n in done.notes)
    model = timm.create_model("test_convnext", pretrained=True, num_classes=0,
                              pretrained_cfg_overlay=dict(file=str(tmp_path / "c.safetensors"))).eval()
    x = images()
    with torch.no_grad():
        theirs = model.forward_intermediates(x, indices=list(encoder.out_indices), intermediates_only=True)
        assert max_difference(encoder.eval().forward_features(x), theirs) <= 1e-5  # fp32


def test_refusals_are_clear_and_write_nothing(tmp_path, monkeypatch):
    torch.manual_seed(0)
    encoder = Encoder("test_resnet", neck_channels=16)
    with pytest.raises(CheckpointError, match="no torchvision counterpart.*export to timm instead"):
        export_encoder(encoder, tmp_path / "a.pth", "torchvision")
    with pytest.raises(CheckpointError, match="unknown export target 'keras'.*timm, torchvision, torchgeo, smp"):
        export_encoder(encoder, tmp_path / "a.pth", "keras")
    # A target whose features disagree with ours is caught before anything is written.
    import densechange.checkpoints.exporters as exporters

    real = exporters._timm_plan

    def drifted(enc):
        plan = real(enc)
        with torch.no_grad():
            next(plan.model.parameters()).add_(0.5)
        return plan

    monkeypatch.setitem(exporters.PLANS, "timm", drifted)
    with pytest.raises(CheckpointError, match="differ from this encoder's by .*nothing was written"):
        export_encoder(encoder, tmp_path / "drift.safetensors", "timm")
    assert list(tmp_path.iterdir()) == []


def test_cli_targets_are_the_exporters_targets():
    assert EXPORT_TARGETS == TARGETS


def test_smp_fpn_takes_the_encoder_and_the_neck(pretrained, tmp_path):
    smp = pytest.importorskip("segmentation_models_pytorch", reason="segmentation_models_pytorch is not installed "
                              "(pip install 'densechange[interop]')")
    encoder = load_encoder(pretrained).eval()
    done = export_encoder(encoder, tmp_path / "smp.pth", "smp")
    assert done.max_difference <= TOLERANCE
    model = smp.FPN(encoder_name="resnet18", encoder_weights=None, in_channels=3, decoder_pyramid_channels=256).eval()
    missing, unexpected = model.load_state_dict(torch.load(tmp_path / "smp.pth", weights_only=True), strict=False)
    assert unexpected == [] and not [k for k in missing if k.startswith("encoder.")]
    assert not [k for k in missing if k.startswith(("decoder.p5", "decoder.p4.skip", "decoder.p3.skip", "decoder.p2.skip"))]
    x = images()
    with torch.no_grad():
        c2, c3, c4, c5 = model.encoder(x)[-4:]
        d = model.decoder
        p5 = d.p5(c5)
        p4 = d.p4(p5, c4)
        p3 = d.p3(p4, c3)
        p2 = d.p2(p3, c2)
        assert max_difference(encoder.forward_pyramid(x), [p2, p3, p4, p5]) <= 1e-5  # fp32


def test_torchgeo_builds_the_model_that_loads_the_export(pretrained, tmp_path):
    torchgeo_models = pytest.importorskip("torchgeo.models", reason="torchgeo is not installed "
                                          "(pip install 'densechange[interop]')")
    encoder = load_encoder(pretrained).eval()
    export_encoder(encoder, tmp_path / "tg.pth", "torchgeo")
    model = torchgeo_models.resnet18(weights=None, in_chans=3, num_classes=0).eval()
    model.load_state_dict(torch.load(tmp_path / "tg.pth", weights_only=True), strict=True)
    x = images()
    with torch.no_grad():
        theirs = model.forward_intermediates(x, indices=[1, 2, 3, 4], intermediates_only=True)
        assert max_difference(encoder.forward_features(x), theirs) <= 1e-5  # fp32


def test_model_card_is_written_by_pretraining_and_rebuilt_from_the_file(pretrained, tmp_path, capsys, cli):
    written = (pretrained.parent / CARD_NAME).read_text()
    assert card_for_file(pretrained) == written  # from the file's metadata and bytes alone
    meta = read_metadata(pretrained)
    front = yaml.safe_load(written.split("---\n")[1])
    assert front["library_name"] == "densechange" and front["datasets"] == ["synthetic"]
    assert "sadl" in front["tags"] and "resnet18" in front["tags"]
    scores = {m["type"]: m["value"] for m in front["model-index"][0]["results"][0]["metrics"]}
    assert scores["proj_std"] == pytest.approx(meta["proj_std"], abs=1e-6)
    assert meta["steps"] == 2 and meta["images_seen"] == 4 and meta["data"]["images"] == 4
    for fact in ("steps: 2", "images seen: 4", "4 images of 3 bands", "precision fp32", meta["code_version"]):
        assert fact in written, fact
    from densechange.checkpoints.download import sha256_file

    assert sha256_file(pretrained) in written
    assert cli(["weights", "card", str(pretrained), f"out={tmp_path / 'card.md'}", "license=cc-by-4.0"]) == 0
    assert "license: cc-by-4.0" in (tmp_path / "card.md").read_text()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_registry_entry_downloads_the_encoder_back_by_name(pretrained, tmp_path, capsys, cli):
    served = tmp_path / "www"
    served.mkdir()
    (served / "sadl_r18.safetensors").write_bytes(pretrained.read_bytes())
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/sadl_r18.safetensors"
        assert cli(["weights", "entry", str(pretrained), f"url={url}", "name=my_sadl", "licence=CC-BY-4.0"]) == 0
        entry = json.loads(capsys.readouterr().out)
        meta = read_metadata(pretrained)
        assert entry["name"] == "my_sadl" and entry["url"] == url and entry["size"] == pretrained.stat().st_size
        assert entry["backbone"] == "resnet18" and entry["mean"] == meta["mean"] and entry["importer"] == "densechange"
        registry = tmp_path / "registry.json"
        registry.write_text(json.dumps({"version": 1, "entries": [entry]}))
        encoder, norm = build_encoder("my_sadl", registry=str(registry), cache_dir=tmp_path / "cache")
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert norm == {"mean": meta["mean"], "std": meta["std"]}
    original = load_encoder(pretrained).state_dict()
    assert all(torch.equal(v, original[k]) for k, v in encoder.state_dict().items())  # bit-exact
    assert cli(["weights", "entry", str(pretrained), "url=ftp://x/y"]) == 2
    assert "url must start with" in capsys.readouterr().err


PAGE = (Path(__file__).resolve().parents[2] / "docs" / "weights.md").read_text()
SECTION = PAGE[PAGE.index("## Your encoder in other libraries"):].split("\n## ", 1)[0]
LIBRARY = {"timm": "timm", "torchvision": "torchvision", "torchgeo": "torchgeo", "smp": "segmentation_models_pytorch"}


def installed(target: str) -> bool:
    return importlib.util.find_spec(LIBRARY[target]) is not None


def test_page_commands_and_loading_code_run(pretrained, tmp_path, monkeypatch):
    """The section's commands run, and each library's lines load the file they wrote (where it is installed)."""
    (tmp_path / "runs" / "sadl").mkdir(parents=True)
    shutil.copy(pretrained, tmp_path / "runs" / "sadl" / "encoder.safetensors")
    monkeypatch.chdir(tmp_path)
    bash = "\n".join(re.findall(r"```bash\n(.*?)```", SECTION, re.S)).replace("\\\n", " ")
    commands = [shlex.split(line.split("#")[0]) for line in bash.splitlines() if line.strip()]
    ran = []
    for argv in commands:
        assert argv[:2] == ["densechange", "weights"], argv
        target = next((a.split("=", 1)[1] for a in argv if a.startswith("to=")), None)
        if target and not installed(target):
            continue
        assert dispatch(argv[1:]) == 0, argv
        ran.append(target or argv[2])
    assert {"timm", "torchvision", "card", "entry"} <= set(ran)
    python = re.search(r"```python\n(.*?)```", SECTION, re.S).group(1)
    paragraphs = python.strip().split("\n\n")[1:]  # the first is the imports
    loaded = []
    for code in paragraphs:
        target = next(t for t in ("timm", "torchvision", "torchgeo", "smp") if code.startswith(f"m = {t}."))
        if not installed(target):
            continue
        names = {"torch": torch, "timm": timm}
        if target == "torchvision":
            import torchvision
            names["torchvision"] = torchvision
        if target == "torchgeo":
            import torchgeo.models
            names["torchgeo"] = importlib.import_module("torchgeo")
        if target == "smp":
            names["smp"] = importlib.import_module("segmentation_models_pytorch")
        exec(code, names)  # noqa: S102 - the page's own lines
        assert isinstance(names["m"], nn.Module)
        loaded.append(target)
    assert {"timm", "torchvision"} <= set(loaded)
