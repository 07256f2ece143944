"""Backbone families in the encoder: CNNs, Swin and plain ViTs at any crop size, their metadata and timm weights.

timm's tiny test models (and a Swin built with a small config) stand in for the real ones: the
code paths are the same (feature wrappers, channels-last Swin levels, the ViT's one stride-16
map and its simple pyramid), and the suite stays fast. Numbers are compared in fp32.
"""
from __future__ import annotations

import copy
import functools
import http.server
import json
import threading

import pytest
import timm
import torch

from densechange.checkpoints import CheckpointError, build_encoder, load_encoder, save_encoder

from densechange.models import Encoder, ModelError
from densechange.checkpoints.format import read_metadata

TINY_SWIN = {"embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1]}
FAMILIES = {
    "test_resnet": {},
    "test_convnext": {},
    "test_efficientnet": {},
    "test_vit": {},
    "swin_tiny_patch4_window7_224": TINY_SWIN,
}


def encoder(name: str, **kw) -> Encoder:
    torch.manual_seed(0)
    return Encoder(name, neck_channels=16, out_indices=None, backbone_args=FAMILIES.get(name), **kw).eval()


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_family_gives_strides_4_to_32_at_any_allowed_size(name, tmp_path):
    enc = encoder(name)
    assert enc.out_strides == [4, 8, 16, 32]
    for h, w in ((64, 96), (128, 64)):  # not square, and not the models' 224/160 creation size
        levels = enc.forward_pyramid(torch.rand(1, 3, h, w))
        assert [tuple(t.shape[-2:]) for t in levels] == [(h // s, w // s) for s in (4, 8, 16, 32)]
    # The checkpoint rebuilds the same network, weights bit-exact, from its metadata alone.
    save_encoder(tmp_path / "e.safetensors", enc, mean=[0.5] * 3, std=[0.5] * 3)
    again = load_encoder(tmp_path / "e.safetensors").eval()
    assert all(torch.equal(v, enc.state_dict()[k]) for k, v in again.state_dict().items())
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(again(x), enc(x))


def test_vit_pyramid_is_recorded_and_sizes_are_checked():
    enc = encoder("test_vit")
    assert enc.pyramid is not None and enc.size_multiple == 16
    meta = enc.metadata()
    assert meta["neck"]["pyramid"] == {"type": "simple", "source_stride": 16, "channels": [16, 32, 64, 64]}
    with pytest.raises(ModelError, match=r"72x72.*multiples of its patch size 16 \(e.g. 64 or 80\)"):
        enc(torch.rand(1, 3, 72, 72))
    tampered = {**meta, "neck": {**meta["neck"], "pyramid": {"type": "simple", "source_stride": 8, "channels": [1]}}}
    with pytest.raises(ModelError, match="records the pyramid"):
        Encoder.from_metadata(tampered)
    with pytest.raises(ModelError, match="stride 8.*patch-16 ViTs"):
        Encoder("test_vit", out_indices=None, backbone_args={"patch_size": 8})


@pytest.mark.parametrize("args", [{}, {"dynamic_img_pad": True}, {"no_embed_class": True, "reg_tokens": 2}])
def test_a_vit_fixed_to_one_size_gives_the_dynamic_outputs_there(args):
    """ONNX exports take a copy with the position table resampled once (timm's resampling is not in opset 17)."""
    torch.manual_seed(0)
    enc = Encoder("test_vit", neck_channels=16, out_indices=None, backbone_args=args).eval()
    assert enc.resamples_positions and not encoder("test_resnet").resamples_positions
    fixed = copy.deepcopy(enc)
    fixed.fix_input_size(64, 96)
    prefix = 0 if args.get("no_embed_class") else 1 + args.get("reg_tokens", 0)
    assert fixed.backbone.model.pos_embed.shape[1] == prefix + 4 * 6  # a 4x6 patch grid
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        assert all(torch.equal(f, d) for f, d in zip(fixed.forward_pyramid(x), enc.forward_pyramid(x)))  # fp32, exact
    assert enc.backbone.model.pos_embed.shape[1] == prefix + 100  # the original keeps its 10x10 table


def test_swin_levels_are_read_channels_first_and_match_timm():
    enc = encoder("swin_tiny_patch4_window7_224")
    assert enc.channels_last_output and enc.feature_channels == [16, 32, 64, 128]
    full = timm.create_model("swin_tiny_patch4_window7_224", num_classes=0, dynamic_img_size=True, **TINY_SWIN).eval()
    from densechange.checkpoints.exporters import full_model_names

    backbone = {k[len("backbone."):]: v for k, v in enc.state_dict().items() if k.startswith("backbone.")}
    full.load_state_dict(full_model_names(backbone, set(full.state_dict())), strict=False)
    x = torch.rand(1, 3, 96, 64)
    with torch.no_grad():
        theirs = full.forward_intermediates(x, indices=[0, 1, 2, 3], intermediates_only=True)
        ours = enc.forward_features(x)
    assert max(float((a - b).abs().max()) for a, b in zip(ours, theirs)) <= 1e-5  # fp32


def test_timm_vit_weights_import_with_resized_position_embeddings(tmp_path):
    """A full timm ViT state dict saved at another image size (another patch grid) loads; only pos_embed is resampled."""
    from timm.layers import resample_abs_pos_embed

    torch.manual_seed(1)
    source = timm.create_model("test_vit", num_classes=0, img_size=96)  # 6x6 grid; ours is built at 160 (10x10)
    state = source.state_dict()
    torch.save(state, tmp_path / "vit.pth")
    with pytest.warns(UserWarning, match="pos_embed resampled from a 6x6 to a 10x10 patch grid"):
        enc, _ = build_encoder(str(tmp_path / "vit.pth"), backbone="test_vit")
    ours = {k[len("backbone.model."):]: v for k, v in enc.state_dict().items() if k.startswith("backbone.model.")}
    for key, value in ours.items():
        if key == "pos_embed":
            expected = resample_abs_pos_embed(state[key], new_size=[10, 10], old_size=[6, 6], num_prefix_tokens=1)
            assert torch.allclose(value, expected, atol=1e-6)  # fp32
        else:
            assert torch.equal(value, state[key]), key
    assert "norm.weight" in state and "norm.weight" not in ours  # the final norm is not part of the features


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_a_registry_entry_for_multispectral_vit_weights_downloads_with_its_band_statistics(tmp_path):
    """timm-named ViT weights of 4 bands, published with per-band mean/std, fetched by name from 127.0.0.1."""
    torch.manual_seed(2)
    served = tmp_path / "www"
    served.mkdir()
    state = timm.create_model("test_vit", num_classes=0, in_chans=4).state_dict()
    torch.save(state, served / "vit4.pth")
    from densechange.checkpoints.download import sha256_file

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(served)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        entry = {"name": "vit4_test", "url": f"http://127.0.0.1:{httpd.server_address[1]}/vit4.pth",
                 "sha256": sha256_file(served / "vit4.pth"), "backbone": "test_vit", "in_chans": 4,
                 "bands": ["B2", "B3", "B4", "B8"], "mean": [0.1, 0.2, 0.3, 0.4], "std": [0.05, 0.06, 0.07, 0.08],
                 "importer": "timm"}
        registry = tmp_path / "registry.json"
        registry.write_text(json.dumps({"version": 1, "entries": [entry]}))
        enc, norm = build_encoder("vit4_test", in_chans=4, registry=str(registry), cache_dir=tmp_path / "cache")
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert norm == {"mean": entry["mean"], "std": entry["std"]}
    assert torch.equal(enc.state_dict()["backbone.model.patch_embed.proj.weight"], state["patch_embed.proj.weight"])
    assert enc.pyramid is not None and enc(torch.rand(1, 4, 64, 64)).shape == (1, 256, 16, 16)


def test_backbone_args_round_trip_through_the_checkpoint(tmp_path):
    enc = encoder("swin_tiny_patch4_window7_224")
    save_encoder(tmp_path / "s.safetensors", enc, mean=[0.5] * 3, std=[0.5] * 3)
    assert read_metadata(tmp_path / "s.safetensors")["backbone_args"] == TINY_SWIN
    with pytest.raises(ModelError, match="does not take the arguments"):
        Encoder("test_resnet", backbone_args={"depths": [1]})
