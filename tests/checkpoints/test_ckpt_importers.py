"""Importers: real key layouts of torchvision, timm, torchgeo and SaDL files load strictly and
reproduce the source model's features."""

import warnings

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from densechange.checkpoints import CheckpointError, build_encoder, importers, load_encoder, read_metadata

from densechange.models import Encoder
from densechange.checkpoints.convert import convert
from densechange.checkpoints.importers import detect_layout, import_state_dict, read_state_dict


def _randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics so that equal outputs really mean equal weights."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def tv_resnet18() -> nn.Module:
    torch.manual_seed(1)
    return _randomise_bn(torchvision.models.resnet18(weights=None))


def _tv_levels(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    out = []
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
        x = layer(x)
        out.append(x)
    return out


def _assert_equal_levels(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b)
    for p, q in zip(a, b):
        assert p.shape == q.shape
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)


def test_torchvision_layout_is_detected_and_fc_dropped(tv_resnet18):
    state = tv_resnet18.state_dict()
    assert detect_layout(state) == "torchvision"
    mapped = importers.from_torchvision(state)
    assert "backbone.fc.weight" not in mapped and "backbone.conv1.weight" in mapped
    assert len(mapped) == len(state) - 2
    assert all(k.startswith("backbone.") for k in mapped)


@pytest.mark.numeric
def test_torchvision_file_gives_the_same_features(tmp_path, tv_resnet18):
    path = tmp_path / "resnet18-tv.pth"
    torch.save(tv_resnet18.state_dict(), path)
    encoder, norm = build_encoder(str(path))
    assert norm == {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        _assert_equal_levels(encoder.eval().forward_features(x), _tv_levels(tv_resnet18, x))


def test_ddp_prefix_and_container_are_unwrapped(tmp_path, tv_resnet18):
    path = tmp_path / "wrapped.pth"
    ddp = {f"module.{k}": v for k, v in tv_resnet18.state_dict().items()}
    torch.save({"epoch": 7, "state_dict": ddp, "optimizer": {"lr": 0.1}}, path)
    state = read_state_dict(path)
    assert set(state) == set(tv_resnet18.state_dict())


def test_wrong_backbone_lists_missing_and_unexpected(tmp_path, tv_resnet18):
    path = tmp_path / "resnet18.pth"
    torch.save(tv_resnet18.state_dict(), path)
    with pytest.raises(CheckpointError, match=r"encoder 'resnet34'; missing: backbone\.layer1\.2\.conv1\.weight"):
        build_encoder(str(path), backbone="resnet34")
    bigger = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), bigger)
    with pytest.raises(CheckpointError, match=r"unexpected: backbone\.layer1\.2\.conv1\.weight.*\(96 in all\)"):
        build_encoder(str(bigger), backbone="resnet18")


def test_timm_resnet_full_model(tmp_path):
    torch.manual_seed(2)
    model = _randomise_bn(timm.create_model("resnet18"))
    path = tmp_path / "timm_resnet18.pth"
    torch.save(model.state_dict(), path)
    x = torch.randn(1, 3, 64, 64)
    for source in ("detect", "timm"):
        state = importers.import_file(path, None if source == "detect" else "timm",
                                      Encoder("resnet18").backbone.state_dict().keys())
        encoder = Encoder("resnet18")
        encoder.load_state_dict({**encoder.state_dict(), **state})
        with torch.no_grad():
            ref = model.forward_intermediates(x, indices=[1, 2, 3, 4], intermediates_only=True)
            _assert_equal_levels(encoder.eval().forward_features(x), ref)


@pytest.mark.numeric
@pytest.mark.parametrize("features_only", [False, True])
def test_timm_convnext_full_and_features_only(tmp_path, features_only):
    torch.manual_seed(3)
    full = timm.create_model("convnext_atto").eval()
    with torch.no_grad():
        for p in full.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    state = full.state_dict()
    if features_only:
        feats = timm.create_model("convnext_atto", features_only=True)
        feats.load_state_dict({k: state[k.replace("_", ".", 1)] for k in feats.state_dict()})  # stages_0 <- stages.0
        state = feats.state_dict()
        assert "stages_0.blocks.0.conv_dw.weight" in state
    else:
        assert "stages.0.blocks.0.conv_dw.weight" in state and "head.fc.weight" in state
    path = tmp_path / "convnext.pth"
    torch.save(state, path)
    encoder, norm = build_encoder(str(path), backbone="convnext_atto")
    assert encoder.out_indices == (0, 1, 2, 3)
    assert norm == {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}  # timm's cfg
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = full.forward_intermediates(x, intermediates_only=True)
        _assert_equal_levels(encoder.eval().forward_features(x), ref)


def test_timm_key_of_an_existing_module_is_reported():
    keys = Encoder("convnext_atto", out_indices=None).backbone.state_dict().keys()
    state = {**timm.create_model("convnext_atto").state_dict(), "stages.0.bogus.weight": torch.zeros(1)}
    mapped = import_state_dict(state, "timm", keys)
    assert "backbone.stages.0.bogus.weight" in mapped  # kept so that the strict load names it
    assert not any(k.startswith("backbone.head") for k in mapped)


def test_torchgeo_multiband_without_fc(tmp_path):
    torch.manual_seed(4)
    model = _randomise_bn(timm.create_model("resnet18", in_chans=13))
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}  # as GASSL ships it
    path = tmp_path / "resnet18_sentinel2_all_moco.pth"
    torch.save(state, path)
    assert detect_layout(state) == "torchvision"
    mapped = importers.from_torchgeo(state)
    assert len(mapped) == len(state)
    encoder, norm = build_encoder(str(path), in_chans=13)
    assert norm is None  # a torchgeo file alone does not say how it was normalised
    x = torch.randn(1, 13, 64, 64)
    with torch.no_grad():
        ref = model.forward_intermediates(x, indices=[1, 2, 3, 4], intermediates_only=True)
        _assert_equal_levels(encoder.eval().forward_features(x), ref)
    with pytest.warns(UserWarning, match="13 input bands, the data has 3"):
        rgb, _ = build_encoder(str(path), in_chans=3)
    w13 = state["conv1.weight"]
    assert torch.allclose(rgb.backbone.conv1.weight, w13[:, :3] * (13 / 3))


class _RefFPNBlock(nn.Module):
    """Key layout of FPNBlock in the SaDL reference (models/FPN.py)."""

    def __init__(self, skip_channels: int) -> None:
        super().__init__()
        self.skip_conv = nn.Conv2d(skip_channels, 256, kernel_size=1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="nearest") + self.skip_conv(skip)


class _RefBackbone(nn.Module):
    """The reference ``Backbone(structure='fpn')``: ``resnet`` + ``neck.p5/p4/p3/p2``."""

    def __init__(self) -> None:
        super().__init__()
        self.resnet = torchvision.models.resnet18(weights=None)
        self.neck = nn.Module()
        self.neck.p5 = nn.Conv2d(512, 256, kernel_size=1)
        self.neck.p4, self.neck.p3, self.neck.p2 = _RefFPNBlock(256), _RefFPNBlock(128), _RefFPNBlock(64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c2, c3, c4, c5 = _tv_levels(self.resnet, x)
        p5 = self.neck.p5(c5)
        p4 = self.neck.p4(p5, c4)
        p3 = self.neck.p3(p4, c3)
        return self.neck.p2(p3, c2)


@pytest.fixture(scope="module")
def sadl_reference() -> _RefBackbone:
    torch.manual_seed(5)
    ref = _RefBackbone()
    _randomise_bn(ref.resnet)
    return ref.eval()


@pytest.mark.numeric
def test_sadl_export_gives_the_reference_p2(tmp_path, sadl_reference):
    state = sadl_reference.state_dict()
    assert {"neck.p5.weight", "neck.p4.skip_conv.weight", "resnet.layer4.1.bn2.running_var"} <= set(state)
    path = tmp_path / "sadl_export.pth"
    torch.save(state, path)
    mapped = importers.from_sadl(state)
    assert torch.equal(mapped["neck.lateral.3.weight"], state["neck.p5.weight"])
    assert torch.equal(mapped["neck.lateral.0.bias"], state["neck.p2.skip_conv.bias"])
    assert not any(k.startswith("backbone.fc") for k in mapped)
    encoder, norm = build_encoder(str(path))
    assert norm == {"mean": [0.5] * 3, "std": [0.5] * 3}
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(encoder.eval()(x), sadl_reference(x), rtol=0, atol=1e-5)


def test_sadl_training_checkpoint(tmp_path, sadl_reference):
    inner = {f"online_encoder.net.{k}": v for k, v in sadl_reference.state_dict().items()}
    inner["online_encoder.projector.net.0.weight"] = torch.zeros(2048, 256)
    inner["online_predictor.net.0.weight"] = torch.zeros(256, 1024)
    path = tmp_path / "last_ckpt.pt"
    torch.save({"epoch_id": 3, "best_val_loss": 1.0, "model_state_dict": inner}, path)
    assert detect_layout(read_state_dict(path)) == "sadl"
    encoder, _ = build_encoder(str(path))
    assert torch.equal(encoder.neck.lateral[2].weight, sadl_reference.neck.p4.skip_conv.weight)
    assert torch.equal(encoder.backbone.layer3[0].conv1.weight, sadl_reference.resnet.layer3[0].conv1.weight)


def test_densechange_layout_saved_with_torch_save(tmp_path):
    enc = Encoder("resnet18", neck_channels=32)
    path = tmp_path / "ours.pth"
    torch.save(enc.state_dict(), path)
    assert detect_layout(read_state_dict(path)) == "densechange"
    loaded, _ = build_encoder(str(path))
    assert loaded.out_channels == 32  # read from the neck weights
    assert all(torch.equal(a, b) for a, b in zip(enc.state_dict().values(), loaded.state_dict().values()))


def test_convert_writes_our_format(tmp_path, tv_resnet18, sadl_reference):
    src = tmp_path / "tv.pth"
    torch.save(tv_resnet18.state_dict(), src)
    dst = convert(src, tmp_path / "tv.safetensors", from_="torchvision")
    meta = read_metadata(dst)
    assert meta["kind"] == "encoder" and meta["backbone"] == "resnet18"
    assert meta["import"]["from"] == "torchvision" and meta["import"]["neck"] == "initialised"
    assert meta["mean"] == [0.485, 0.456, 0.406]
    enc = load_encoder(dst)
    assert torch.equal(enc.backbone.layer2[1].bn1.running_var, tv_resnet18.layer2[1].bn1.running_var)

    src = tmp_path / "sadl.pth"
    torch.save(sadl_reference.state_dict(), src)
    enc = load_encoder(convert(src, tmp_path / "sadl.safetensors"))
    assert read_metadata(tmp_path / "sadl.safetensors")["import"]["neck"] == "imported"
    assert torch.equal(enc.neck.lateral[1].weight, sadl_reference.neck.p3.skip_conv.weight)


def test_convert_torchgeo_needs_normalisation(tmp_path):
    src = tmp_path / "geo.pth"
    torch.save(timm.create_model("resnet18").state_dict(), src)
    with pytest.raises(CheckpointError, match=r"mean=\[\.\.\.\] std=\[\.\.\.\]"):
        convert(src, tmp_path / "geo.safetensors", from_="torchgeo")
    convert(src, tmp_path / "geo.safetensors", from_="torchgeo", mean=[0.1] * 3, std=[0.2] * 3)
    assert read_metadata(tmp_path / "geo.safetensors")["std"] == [0.2] * 3


def test_unreadable_foreign_files_are_named(tmp_path, tv_resnet18):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file" * 10)
    with pytest.raises(CheckpointError, match="garbage.pth"):
        read_state_dict(garbage)
    full = tmp_path / "full.pth"
    torch.save(tv_resnet18.state_dict(), full)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cut.pth.*truncated or corrupt"):
        build_encoder(str(cut))
    pickled = tmp_path / "module.pth"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(nn.Linear(2, 2), pickled)  # a whole module: loading it would run pickled code
    with pytest.raises(CheckpointError, match="weights-only"):
        read_state_dict(pickled)
    with pytest.raises(CheckpointError, match="unknown importer 'caffe'"):
        import_state_dict(tv_resnet18.state_dict(), "caffe")


def test_plain_safetensors_weights_are_imported(tmp_path, tv_resnet18):
    from safetensors.torch import save_file as st_save

    path = tmp_path / "model.safetensors"  # how timm publishes weights on the Hugging Face hub
    st_save({k: v.contiguous() for k, v in tv_resnet18.state_dict().items()}, str(path))
    encoder, norm = build_encoder(str(path))
    assert norm["mean"] == [0.485, 0.456, 0.406]
    assert torch.equal(encoder.backbone.layer3[1].bn2.running_mean, tv_resnet18.layer3[1].bn2.running_mean)
