"""DeepCL finetuning over the backbone families, and prediction with the transformers.

One matrix test trains each family for a step from random init. For Swin and the plain ViT, a
GeoTIFF scene streamed block by block equals the in-memory blend (fp32) and the ONNX export is
verified against PyTorch. The ViT exports at one fixed size (its position table resampled once for
the window), and ONNX Runtime gives PyTorch's maps on a scene, on an image smaller than the window
(padded to it) and refuses other windows.
"""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F
from rasterio.transform import from_origin

from densechange.engine.errors import ConfigError
from densechange.finetune import predict
from densechange.finetune.checkpoint import load_change_model
from densechange.finetune.inference.predictor import ChangePredictor
from densechange.finetune.inference.scene import Scene
from densechange.finetune.inference.sources import PairSource
from densechange.finetune.inference.windows import WindowSettings
from densechange.finetune.train import main
from tests.tolerances import ONNX_FP32_ATOL

ONNX_READY = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


def write_tif(path, arr: np.ndarray) -> None:
    with rasterio.open(path, "w", driver="GTiff", height=arr.shape[1], width=arr.shape[2], count=3, dtype="uint8",
                       crs="EPSG:32633", transform=from_origin(500000, 4650000, 0.5, 0.5), tiled=True,
                       blockxsize=64, blockysize=64) as dst:
        dst.write(arr)


def streamed_equals_in_memory(model, tmp_path) -> None:
    rng = np.random.default_rng(0)
    h, w = 200, 232
    a, b = (rng.integers(0, 256, (3, h, w), dtype=np.uint8) for _ in range(2))
    write_tif(tmp_path / "a.tif", a)
    write_tif(tmp_path / "b.tif", b)
    predictor = ChangePredictor(model, WindowSettings(64, 32, 4, 4), precision="fp32")
    whole = predictor(torch.from_numpy(a).float() / 255, torch.from_numpy(b).float() / 255)
    probability = torch.zeros(h, w)
    with PairSource(tmp_path / "a.tif", tmp_path / "b.tif") as pair:
        scene = Scene.of_files(pair, predictor.windows, predictor.stride, 2, 2)
        assert len(scene.grid.ys) > 2 and len(scene.grid.xs) > 2  # blocks of 2 x 2 windows: several each way
        for (r0, r1, c0, c1), result, _ in predictor.blocks(scene):
            probability[r0:r1, c0:c1] = torch.softmax(result["logits"], 0)[1]
    assert (probability - torch.softmax(whole["logits"], 0)[1]).abs().max() < 1e-5  # fp32


def onnx_vit_matches_pytorch(model, checkpoint, tmp_path) -> None:
    from densechange.finetune.onnx.export import export_checkpoint
    from densechange.finetune.onnx.metadata import read_metadata
    from densechange.finetune.onnx.runtime import OnnxPredictor

    import onnx

    done = export_checkpoint(checkpoint, tmp_path / "vit.onnx", window=64, overlap=32, margin=4)
    assert done.max_difference <= ONNX_FP32_ATOL
    proto = onnx.load(str(tmp_path / "vit.onnx"))
    assert read_metadata(proto)["fixed_size"] == 64
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim[1:]] == [3, 64, 64]
    onnx_run = OnnxPredictor.from_file(tmp_path / "vit.onnx", device="cpu", batch_size=4)
    assert onnx_run.windows == WindowSettings(64, 32, 4, 4)  # the file's own when none are given
    torch_run = ChangePredictor(model, WindowSettings(64, 32, 4, 4), precision="fp32")
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(3, 200, 232, generator=g), torch.rand(3, 200, 232, generator=g)
    assert (onnx_run(a, b)["logits"] - torch_run(a, b)["logits"]).abs().max() <= ONNX_FP32_ATOL  # sliding windows
    small_a, small_b = a[:, :20, :30], b[:, :20, :30]  # padded to the stride (32), then by ONNX to its 64
    got = onnx_run(small_a, small_b)
    pad = (0, 34, 0, 44)
    want = torch_run(F.pad(small_a[None], pad, mode="replicate")[0], F.pad(small_b[None], pad, mode="replicate")[0])
    assert got["logits"].shape == (2, 20, 30) and got["distance"].shape == (20, 30)
    assert (got["logits"] - want["logits"][:, :20, :30]).abs().max() <= ONNX_FP32_ATOL
    with pytest.raises(ConfigError, match="takes 64x64 windows only.*window.size=64 .*window.overlap=32 window.margin=4"):
        OnnxPredictor.from_file(tmp_path / "vit.onnx", device="cpu", size=128, overlap=32, margin=4)
    # the command at the file's window, overlap and margin gives the checkpoint's probabilities
    common = [f"a={tmp_path / 'a.tif'}", f"b={tmp_path / 'b.tif'}", "precision=fp32", "progress=false"]
    windows = ["window.size=64", "window.overlap=32", "window.margin=4"]
    for source, name in ((tmp_path / "vit.onnx", "onnx"), (checkpoint, "torch")):
        assert predict.main([f"checkpoint={source}", *windows, f"out={tmp_path / f'{name}.tif'}",
                             f"probability={tmp_path / f'{name}_p.tif'}", *common]) == 0
    with rasterio.open(tmp_path / "onnx_p.tif") as x, rasterio.open(tmp_path / "torch_p.tif") as y:
        assert np.abs(x.read(1).astype(int) - y.read(1)).max() <= 1  # probabilities quantised to 1/254


def test_each_family_finetunes_and_the_transformers_predict(backbone_family, tmp_path, tiny_overrides):
    backbone, extra = backbone_family
    run = tmp_path / "run"
    overrides = [o for o in tiny_overrides if not o.startswith(("trainer.epochs", "model.encoder"))]
    assert main([*overrides, "model.encoder=random", f"model.backbone={backbone}", *extra,
                 "trainer.epochs=1", "trainer.max_steps=1", "trainer.precision=fp32", f"run.dir={run}"]) == 0
    model, meta = load_change_model(run / "final.safetensors")
    assert model.encoder.backbone_name == backbone and meta["encoder"]["backbone"] == backbone
    if backbone not in ("test_vit", "swin_tiny_patch4_window7_224"):
        return
    model = model.float().eval()
    streamed_equals_in_memory(model, tmp_path)
    if not ONNX_READY:
        return
    from densechange.finetune.onnx.export import export_checkpoint

    if backbone == "test_vit":
        onnx_vit_matches_pytorch(model, run / "final.safetensors", tmp_path)
    else:
        done = export_checkpoint(run / "final.safetensors", tmp_path / "swin.onnx", window=64, overlap=32, margin=4)
        assert done.max_difference <= ONNX_FP32_ATOL
