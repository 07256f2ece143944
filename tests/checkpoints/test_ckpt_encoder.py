"""Encoder + FPN: shapes and strides from feature_info, exact save/load, rebuild from metadata."""

import pytest
import torch

from densechange.checkpoints import CheckpointError, build_encoder, load_encoder, save_encoder

from densechange.models import Encoder, ModelError
from densechange.checkpoints.factory import adapt_input_conv
from densechange.checkpoints.format import read_metadata, save_file


@pytest.fixture(scope="module")
def resnet18() -> Encoder:
    """The default architecture, for its feature shapes."""
    torch.manual_seed(0)
    return Encoder("resnet18").eval()


@pytest.fixture(scope="module")
def small() -> Encoder:
    """timm's smallest ResNet (the same layer names as ResNet-18) for the checkpoint mechanics."""
    torch.manual_seed(0)
    return Encoder("test_resnet").eval()


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        assert torch.equal(sa[key], sb[key]), key


def test_resnet18_pyramid_shapes_and_strides(resnet18):
    assert resnet18.feature_channels == [64, 128, 256, 512]
    assert resnet18.out_strides == [4, 8, 16, 32]
    assert resnet18.out_channels == 256
    assert [n for n, _ in resnet18.named_children()] == ["backbone", "neck"]
    assert all(k.startswith(("backbone.", "neck.lateral.")) for k in resnet18.state_dict())
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        feats = resnet18.forward_features(x)
        pyramid = resnet18.forward_pyramid(x)
        finest = resnet18(x)
    expected = [(2, c, 64 // s, 96 // s) for c, s in zip([64, 128, 256, 512], [4, 8, 16, 32])]
    assert [tuple(f.shape) for f in feats] == expected
    assert [tuple(p.shape) for p in pyramid] == [(2, 256, 64 // s, 96 // s) for s in [4, 8, 16, 32]]
    assert torch.equal(finest, pyramid[0])


def test_odd_input_sizes_stay_aligned(resnet18):
    with torch.no_grad():
        pyramid = resnet18.forward_pyramid(torch.randn(1, 3, 65, 75))
    assert [tuple(p.shape[-2:]) for p in pyramid] == [(17, 19), (9, 10), (5, 5), (3, 3)]


@pytest.mark.parametrize(
    "name, out_indices, channels",
    [("convnext_atto", (0, 1, 2, 3), [40, 80, 160, 320]), ("mobilenetv3_small_050", (1, 2, 3, 4), [8, 16, 24, 288])],
)
def test_neck_is_sized_from_feature_info(name, out_indices, channels):
    enc = Encoder(name, out_indices=out_indices, neck_channels=32, in_chans=5).eval()
    assert enc.feature_channels == channels
    assert enc.out_strides == [4, 8, 16, 32]
    assert [conv.in_channels for conv in enc.neck.lateral] == channels
    with torch.no_grad():
        pyramid = enc.forward_pyramid(torch.randn(1, 5, 64, 64))
    assert [tuple(p.shape) for p in pyramid] == [(1, 32, 16, 16), (1, 32, 8, 8), (1, 32, 4, 4), (1, 32, 2, 2)]


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(ModelError, match="resnet_nope"):
        Encoder("resnet_nope")


def test_save_load_round_trip_is_bit_exact(tmp_path, small):
    path = tmp_path / "enc.safetensors"
    config = {"trainer": {"epochs": 2}, "data": {"root": "/data"}}
    save_encoder(path, small, mean=[0.5, 0.5, 0.5], std=[0.25, 0.5, 1.0], config=config, extra={"epoch": 2})
    loaded = load_encoder(path).eval()
    _assert_same_weights(small, loaded)
    meta = read_metadata(path)
    assert meta["kind"] == "encoder"
    assert {k: meta[k] for k in small.metadata()} == small.metadata()
    assert meta["mean"] == [0.5, 0.5, 0.5] and meta["std"] == [0.25, 0.5, 1.0]
    assert meta["config"] == config and meta["epoch"] == 2
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(small(x), loaded(x))


def test_encoder_from_metadata_alone_equals_original(small):
    rebuilt = Encoder.from_metadata(small.metadata())
    assert rebuilt.metadata() == small.metadata()
    shapes = {k: v.shape for k, v in small.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes
    rebuilt.load_state_dict(small.state_dict(), strict=True)
    rebuilt.eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), small(x))


def test_build_encoder_from_our_file_returns_its_normalisation(tmp_path, small):
    path = tmp_path / "enc.safetensors"
    save_encoder(path, small, mean=[0.1, 0.2, 0.3], std=[0.4, 0.5, 0.6])
    encoder, norm = build_encoder(str(path), backbone="convnext_atto")  # the file's architecture wins
    assert norm == {"mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6]}
    _assert_same_weights(small, encoder)


def test_random_source_has_no_normalisation():
    encoder, norm = build_encoder("random", in_chans=2, neck_channels=64)
    assert norm is None
    assert encoder.in_chans == 2 and encoder.out_channels == 64
    assert build_encoder("none")[1] is None


def test_adapt_input_conv_hand_values():
    w = torch.arange(2 * 3, dtype=torch.float32).view(2, 3, 1, 1)  # [[0,1,2],[3,4,5]]
    one = adapt_input_conv(w, 1)
    assert one.view(2).tolist() == [3.0, 12.0]
    four = adapt_input_conv(w, 4)
    assert four.view(2, 4).tolist() == [[0.0, 0.75, 1.5, 0.0], [2.25, 3.0, 3.75, 2.25]]


def test_build_encoder_adapts_bands_and_warns(tmp_path, resnet18):
    path = tmp_path / "enc.safetensors"
    save_encoder(path, resnet18, mean=[0.1, 0.2, 0.3], std=[0.4, 0.5, 0.6])
    with pytest.warns(UserWarning, match="3 input bands, the data has 4"):
        encoder, norm = build_encoder(str(path), in_chans=4)
    assert norm == {"mean": [0.1, 0.2, 0.3, 0.1], "std": [0.4, 0.5, 0.6, 0.4]}
    w3 = resnet18.backbone.conv1.weight
    w4 = encoder.backbone.conv1.weight
    assert torch.allclose(w4, torch.cat([w3, w3[:, :1]], 1) * 0.75)
    assert torch.equal(encoder.backbone.layer1[0].conv1.weight, resnet18.backbone.layer1[0].conv1.weight)
    with pytest.warns(UserWarning, match="summing"):
        grey, norm1 = build_encoder(str(path), in_chans=1)
    assert torch.allclose(grey.backbone.conv1.weight, w3.sum(1, keepdim=True))
    assert norm1["mean"] == [pytest.approx(0.2)]


def test_change_model_checkpoint_gives_its_encoder(tmp_path, small):
    path = tmp_path / "cd.safetensors"
    tensors = {f"encoder.{k}": v for k, v in small.state_dict().items()}
    tensors["head.weight"] = torch.ones(2, 4)
    meta = {"kind": "change-model", "encoder": small.metadata(), "mean": [0.5] * 3, "std": [0.5] * 3}
    save_file(path, tensors, meta)
    _assert_same_weights(small, load_encoder(path))
    assert build_encoder(str(path))[1] == {"mean": [0.5] * 3, "std": [0.5] * 3}


def test_train_state_is_not_an_encoder(tmp_path):
    path = tmp_path / "state.safetensors"
    save_file(path, {"step": torch.tensor(3)}, {"kind": "train-state"})
    with pytest.raises(CheckpointError, match="'train-state' checkpoint"):
        load_encoder(path)


def test_mismatched_weights_list_missing_and_unexpected(tmp_path, small):
    path = tmp_path / "enc.safetensors"
    state = dict(small.state_dict())
    state["backbone.extra.weight"] = torch.zeros(1)
    del state["neck.lateral.0.bias"]
    save_file(path, state, {"kind": "encoder", **small.metadata()})
    with pytest.raises(CheckpointError, match=r"missing: neck\.lateral\.0\.bias.*unexpected: backbone\.extra\.weight"):
        load_encoder(path)


def test_save_encoder_checks_normalisation_length(tmp_path, small):
    with pytest.raises(CheckpointError, match=r"1 / 1 values but the encoder takes data.in_chans=3 input bands"):
        save_encoder(tmp_path / "e.safetensors", small, mean=[0.5], std=[0.5])


def test_cli_inspect_prints_metadata_and_summary(tmp_path, small, capsys, cli):
    path = tmp_path / "enc.safetensors"
    save_encoder(path, small, mean=[0.5] * 3, std=[0.5] * 3)
    assert cli(["weights", "inspect", str(path)]) == 0
    out = capsys.readouterr().out
    n_tensors = len(small.state_dict())
    n_values = sum(t.numel() for t in small.state_dict().values())
    assert '"backbone": "test_resnet"' in out
    assert f"tensors: {n_tensors}  parameters (incl. buffers): {n_values:,}" in out
    assert "float32" in out and "int64" in out
    assert cli(["weights", "inspect", str(tmp_path / "missing.safetensors")]) == 2
    assert "no checkpoint file" in capsys.readouterr().err
