"""Whole scenes streamed block by block: equal to the in-memory blend, georeferenced, no-data kept, safe to kill."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from densechange.models import Encoder
from densechange.datasets import SyntheticImageMaskDataset
from densechange.finetune import predict
from densechange.finetune.checkpoint import save_change_model
from densechange.finetune.inference.predictor import ChangePredictor
from densechange.finetune.deepcl.model import ChangeHeadSpec, ChangeModel
from densechange.finetune.inference.scene import Scene, windows_to_run
from densechange.finetune.inference.sources import PairSource
from densechange.finetune.inference.streaming import FLOAT_NODATA, SceneOutputs, predict_scene
from densechange.finetune.inference.windows import WindowSettings

REPO = Path(__file__).resolve().parents[2]
UTM = rasterio.crs.CRS.from_epsg(32633)
ORIGIN = from_origin(500000.0, 4650000.0, 0.5, 0.5)


def small_model(seed: int = 0) -> ChangeModel:
    torch.manual_seed(seed)
    encoder = Encoder("test_resnet", neck_channels=16)
    return ChangeModel(encoder, mean=[0.5] * 3, std=[0.5] * 3, heads=ChangeHeadSpec(embed_dim=8, decoder_channels=8)).eval()


def write(path: Path, arr: np.ndarray, crs=UTM, transform=ORIGIN, **options) -> Path:
    h, w, c = arr.shape
    profile = dict(driver="GTiff", height=h, width=w, count=c, dtype=arr.dtype.name, tiled=True, blockxsize=128,
                   blockysize=128, compress="deflate")
    if crs is not None:
        profile.update(crs=crs, transform=transform)
    profile.update(options)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.moveaxis(arr, -1, 0))
    return path


def smooth_noise(h: int, w: int, seed: int) -> np.ndarray:
    """uint8 RGB with structure at several scales (pure noise would make every window look alike)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, h // 32 + 2, w // 32 + 2, generator=g)
    img = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)[0]
    img = 0.7 * img + 0.3 * torch.rand(3, h, w, generator=g)
    return (img.permute(1, 2, 0).numpy() * 255).astype(np.uint8)


@pytest.mark.numeric
def test_streaming_equals_the_in_memory_blend(tmp_path):
    model = small_model()
    h, w = 900, 620  # windows of 128 with overlap 32 divide neither side
    a, b = smooth_noise(h, w, 1), smooth_noise(h, w, 2)
    pa, pb = write(tmp_path / "a.tif", a), write(tmp_path / "b.tif", b)
    predictor = ChangePredictor(model, WindowSettings(128, 32, 4, 6))
    whole = predictor(torch.from_numpy(a).permute(2, 0, 1).float() / 255, torch.from_numpy(b).permute(2, 0, 1).float() / 255)
    with PairSource(pa, pb) as pair:
        scene = Scene.of_files(pair, predictor.windows, predictor.stride, 2, 2)
        grid = scene.grid
        ran, regions = [], []
        probability = torch.full((h, w), float("nan"))
        distance = torch.zeros(h, w)
        for (r0, r1, c0, c1), result, valid in predictor.blocks(scene, lambda: ran.append(1)):
            assert valid is None
            regions.append((r0, r1, c0, c1))
            probability[r0:r1, c0:c1] = torch.softmax(result["logits"], 0)[1]
            distance[r0:r1, c0:c1] = result["distance"]
    assert len({r[:2] for r in regions}) > 3 and len({r[2:] for r in regions}) > 2  # many blocks, both directions
    assert not probability.isnan().any()  # the blocks cover the scene
    assert len(ran) == windows_to_run(scene.blocks, grid) == len(grid)  # every window runs once
    expected = torch.softmax(whole["logits"], 0)[1]
    assert (probability - expected).abs().max() < 1e-5  # fp32: the same windows, batched and blended by block
    assert (distance - whole["distance"]).abs().max() < 1e-5
    decided = (expected - 0.5).abs() > 1e-5  # a pixel that close to the threshold may be decided either way
    assert torch.equal((probability > 0.5)[decided], (expected > 0.5)[decided])
    # and through the files: the written change map is the in-memory argmax
    out = SceneOutputs(tmp_path / "change.tif", tmp_path / "dist.tif", tmp_path / "prob.tif")
    predict_scene(predictor, pa, pb, out, blocks=(2, 3), progress=False)
    with rasterio.open(out.change) as src:
        change = src.read(1)
        assert src.profile["tiled"] and src.profile["compress"] == "deflate"
    assert np.array_equal((change == 255)[decided.numpy()], (expected > 0.5).numpy()[decided.numpy()])
    with rasterio.open(out.probability) as src:
        assert np.abs(src.read(1).astype(int) - (expected * 254).round().numpy()).max() <= 1


def test_outputs_keep_crs_transform_and_nodata_and_mark_missing_data(tmp_path):
    a, b = smooth_noise(300, 260, 3), smooth_noise(300, 260, 4)
    a[:40] = 200  # no-data rows in A
    b[:, :30] = 200  # no-data columns in B
    pa, pb = write(tmp_path / "a.tif", a, nodata=200), write(tmp_path / "b.tif", b, nodata=200)
    predictor = ChangePredictor(small_model(), WindowSettings(128, 32, 4, 4))
    out = SceneOutputs(tmp_path / "c.tif", tmp_path / "d.tif", tmp_path / "p.tif", cog=True)
    stats = predict_scene(predictor, pa, pb, out, progress=False)
    missing = np.zeros((300, 260), bool)
    missing[:40] = True
    missing[:, :30] = True
    assert stats["valid"] == pytest.approx(1 - missing.mean())
    with rasterio.open(pa) as src:
        crs, transform = src.crs, src.transform
    with rasterio.open(out.change) as src:
        assert (src.crs, src.transform, src.nodata) == (crs, transform, 200.0)
        change = src.read(1)
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    assert (change[missing] == 200).all() and set(np.unique(change[~missing])) <= {0, 255}
    for path in (out.distance, out.probability):
        with rasterio.open(path) as src:
            values = src.read(1)
            assert src.nodata == FLOAT_NODATA and (values[missing] == FLOAT_NODATA).all()
            assert (values[~missing] < FLOAT_NODATA).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "b.tif", "c.tif", "d.tif", "p.tif"]  # no leftovers


def test_a_date_on_another_grid_is_predicted_on_the_first_dates_grid(tmp_path, tiny_run):
    """B shows A's ground 37 px further east, in another CRS: resampled onto A's grid, it is A again."""
    scene = SyntheticImageMaskDataset(1, size=320, seed=5).arrays(0)[0]  # an aerial-like scene, no change between dates
    a = scene[:256, :256]
    shift = 37
    pa = write(tmp_path / "a.tif", a)
    other = rasterio.crs.CRS.from_proj4("+proj=tmerc +lat_0=0 +lon_0=15 +k=0.9996 +x_0=400000 +y_0=0 +datum=WGS84 "
                                        "+units=m +no_defs")  # transverse Mercator with another false easting
    pb = write(tmp_path / "b.tif", scene[:256, shift : shift + 256], crs=other,
               transform=from_origin(400000.0 + shift * 0.5, 4650000.0, 0.5, 0.5))
    outside = np.zeros(a.shape[:2], bool)
    outside[:, :shift] = True  # A's first 37 columns lie west of B's footprint
    with PairSource(pa, pb) as pair:
        assert pair.note and "resampled bilinearly" in pair.note
        _, b_on_a, valid = pair.read(0, 0, 256, 256)
    assert np.array_equal(valid, ~outside) and np.array_equal(b_on_a[~outside], a[~outside])  # B lands on A's pixels
    predictor, _ = ChangePredictor.from_checkpoint(tiny_run / "best.safetensors", WindowSettings(64, 16, 4), device="cpu")
    stats = predict_scene(predictor, pa, pb, SceneOutputs(tmp_path / "change.tif", probability=tmp_path / "p.tif"),
                          progress=False)
    predict_scene(predictor, pa, pa, SceneOutputs(tmp_path / "same.tif", probability=tmp_path / "same_p.tif"), progress=False)
    with rasterio.open(tmp_path / "change.tif") as src:
        change, nodata = src.read(1), src.nodata
        assert src.crs == UTM and src.transform == ORIGIN and (src.height, src.width) == a.shape[:2]
    with rasterio.open(tmp_path / "p.tif") as src, rasterio.open(tmp_path / "same_p.tif") as same:
        p, p_same = src.read(1), same.read(1)
    with rasterio.open(tmp_path / "same.tif") as same:
        unchanged = same.read(1)
    assert (change[outside] == nodata).all() and not (change[~outside] == nodata).any()
    far = np.zeros_like(outside)
    far[:, shift + 64 :] = True  # beyond the receptive field of the no-data strip
    assert np.array_equal(change[far], unchanged[far]) and np.abs(p[far].astype(int) - p_same[far]).max() <= 1
    assert stats["changed"] <= (unchanged == 255).mean() + 0.02  # unchanged content comes out unchanged
    assert stats["changed"] == (change[~outside] == 255).mean()  # the fraction reported is that of the written map
    assert stats["valid"] == pytest.approx((~outside).mean())


def test_footprints_that_do_not_meet_and_plain_rasters_of_two_sizes_are_errors(tmp_path):
    a = smooth_noise(64, 64, 1)
    pa = write(tmp_path / "a.tif", a)
    far = write(tmp_path / "far.tif", a, transform=from_origin(600000.0, 4650000.0, 0.5, 0.5))
    predictor = ChangePredictor(small_model(), WindowSettings(64, 16, 4))
    with pytest.raises(Exception, match="do not overlap"):
        predict_scene(predictor, pa, far, SceneOutputs(tmp_path / "c.tif"), progress=False)
    p1, p2 = write(tmp_path / "p1.tif", a, crs=None), write(tmp_path / "p2.tif", a[:50], crs=None)
    with pytest.raises(Exception, match="same pixel grid"):
        predict_scene(predictor, p1, p2, SceneOutputs(tmp_path / "c.tif"), progress=False)
    assert not (tmp_path / "c.tif").exists()


def test_a_killed_prediction_leaves_no_file_under_the_final_name(tmp_path):
    ckpt = tmp_path / "model.safetensors"
    save_change_model(ckpt, small_model())
    a, b = smooth_noise(2400, 2400, 7), smooth_noise(2400, 2400, 8)
    pa, pb = write(tmp_path / "a.tif", a), write(tmp_path / "b.tif", b)
    out = tmp_path / "out" / "change.tif"
    # the suite's one ``densechange predict`` in a process of its own, through the console script
    cmd = [str(Path(sys.executable).parent / "densechange"), "predict", f"checkpoint={ckpt}", f"a={pa}", f"b={pb}",
           f"out={out}", "window.size=128", "window.overlap=32", "window.margin=4", "device=cpu", "progress=false"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.parent.glob(".change.tif.partial-*")):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.05)
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists() and list(out.parent.glob(".change.tif.partial-*"))


def test_predict_command_writes_probability_beside_the_change_map(tmp_path):
    ckpt = tmp_path / "model.safetensors"
    save_change_model(ckpt, small_model())
    pa, pb = write(tmp_path / "a.tif", smooth_noise(100, 120, 1)), write(tmp_path / "b.tif", smooth_noise(100, 120, 2))
    assert predict.main([f"checkpoint={ckpt}", f"a={pa}", f"b={pb}", f"out={tmp_path / 'c.tif'}",
                         "probability=true", "window.size=64", "window.overlap=16", "window.margin=4", "device=cpu"]) == 0
    with rasterio.open(tmp_path / "c_probability.tif") as src:
        assert src.read(1).shape == (100, 120) and src.crs == UTM


@pytest.mark.parametrize("precision, tolerance", [pytest.param("fp32", 1e-5, marks=pytest.mark.numeric), ("bf16", 2e-2)])
def test_the_optimised_predictor_streams_its_in_memory_blend(tmp_path, precision, tolerance):
    """Folded norms, channels-last windows and the reading thread: still the in-memory blend, within the precision's rounding."""
    h, w = 700, 520
    a, b = smooth_noise(h, w, 3), smooth_noise(h, w, 4)
    pa, pb = write(tmp_path / "a.tif", a), write(tmp_path / "b.tif", b)
    predictor = ChangePredictor(small_model(), WindowSettings(128, 32, 4, 5), precision=precision,
                                optimise=True)
    assert predictor.folding.folded > 0 and predictor.channels_last
    whole = predictor(torch.from_numpy(a).permute(2, 0, 1).float() / 255, torch.from_numpy(b).permute(2, 0, 1).float() / 255)
    out = SceneOutputs(tmp_path / "change.tif", probability=tmp_path / "prob.tif")
    predict_scene(predictor, pa, pb, out, blocks=(3, 2), progress=False)
    expected = torch.softmax(whole["logits"], 0)[1].numpy()
    with rasterio.open(out.probability) as src:
        got = src.read(1).astype(np.float32) / 254
    assert np.abs(got - expected).max() <= tolerance + 0.5 / 254  # the file stores round(254 p)


@pytest.mark.numeric
@pytest.mark.parametrize("window, overlap, per_block", [(128, 32, 1), (128, 96, 1), (64, 32, 3), (128, 32, 9)])
def test_any_block_size_streams_the_in_memory_blend(tmp_path, window, overlap, per_block):
    """One window row per block, an overlap reaching past the next window row, a block larger than the scene."""
    h, w = 330, 290
    a, b = smooth_noise(h, w, 5), smooth_noise(h, w, 6)
    pa, pb = write(tmp_path / "a.tif", a), write(tmp_path / "b.tif", b)
    predictor = ChangePredictor(small_model(), WindowSettings(window, overlap, 4, 3))
    whole = predictor(torch.from_numpy(a).permute(2, 0, 1).float() / 255, torch.from_numpy(b).permute(2, 0, 1).float() / 255)
    logits = torch.full((2, h, w), float("nan"))
    ran = []
    with PairSource(pa, pb) as pair:
        scene = Scene.of_files(pair, predictor.windows, predictor.stride, per_block, per_block)
        grid = scene.grid
        for (r0, r1, c0, c1), result, _ in predictor.blocks(scene, lambda: ran.append(1)):
            assert logits[:, r0:r1, c0:c1].isnan().all()  # each pixel is finished once
            logits[:, r0:r1, c0:c1] = result["logits"]
    assert len(ran) == len(grid)
    assert (logits - whole["logits"]).abs().max() < 1e-5  # fp32
