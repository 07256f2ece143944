"""densechange predict: GeoTIFF in and out, folder mode, any size through windows."""
import numpy as np
import rasterio
import torch

from densechange.models import Encoder
from densechange.datasets import read_georef, read_image
from densechange.datasets.io.images import write_image, write_mask
from densechange.datasets.io.raster import Georef
from densechange.finetune import predict
from densechange.finetune.checkpoint import save_change_model
from densechange.finetune.inference.predictor import ChangePredictor
from densechange.finetune.inference.windows import WindowSettings
from densechange.finetune.deepcl.model import ChangeHeadSpec, ChangeModel

GEO = Georef(crs=rasterio.crs.CRS.from_epsg(32633).to_wkt(), transform=(0.5, 0.0, 500000.0, 0.0, -0.5, 4649776.0))


def small_model(in_chans=3, metric_branch=True):
    torch.manual_seed(0)
    encoder = Encoder("test_resnet", in_chans=in_chans, neck_channels=16)
    return ChangeModel(encoder, mean=[0.5] * in_chans, std=[0.5] * in_chans, heads=ChangeHeadSpec(embed_dim=8, decoder_channels=8),
                       metric_branch=metric_branch).eval()


def test_geotiff_keeps_its_georeferencing(tmp_path):
    ckpt = tmp_path / "model.safetensors"
    save_change_model(ckpt, small_model(in_chans=1))
    rng = np.random.default_rng(0)
    a = (rng.random((150, 170)) * 255).astype(np.uint8)
    b = (rng.random((150, 170)) * 255).astype(np.uint8)
    write_mask(tmp_path / "a.tif", a, GEO)
    write_mask(tmp_path / "b.tif", b, GEO)
    out, dist = tmp_path / "change.tif", tmp_path / "distance.tif"
    assert predict.main([f"checkpoint={ckpt}", f"a={tmp_path / 'a.tif'}", f"b={tmp_path / 'b.tif'}",
                         f"out={out}", f"distance={dist}", "window.size=64", "window.overlap=32",
                         "device=cpu"]) == 0
    for path in (out, dist):
        georef = read_georef(path)
        assert georef.transform == GEO.transform and rasterio.crs.CRS.from_wkt(georef.crs).to_epsg() == 32633
        assert georef.nodata is None  # the inputs have no no-data, so neither has the output
    change = read_image(out)[..., 0]
    assert change.shape == (150, 170) and set(np.unique(change)) <= {0, 255}


def test_folder_mode_matches_names(tmp_path):
    ckpt = tmp_path / "model.safetensors"
    save_change_model(ckpt, small_model())
    rng = np.random.default_rng(1)
    for name in ("x1", "x2"):
        for d in ("t1", "t2"):
            write_image(tmp_path / d / f"{name}.png", (rng.random((40, 56, 3)) * 255).astype(np.uint8))
    write_image(tmp_path / "t1" / "only_in_a.png", np.zeros((40, 56, 3), np.uint8))
    assert predict.main([f"checkpoint={ckpt}", f"a={tmp_path / 't1'}", f"b={tmp_path / 't2'}",
                         f"out={tmp_path / 'out'}", "device=cpu"]) == 0
    # the maps, and the run's records: what is finished (to resume from) and what the process did
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["manifest.jsonl", "predict.jsonl", "x1.png", "x2.png"]


def test_large_pair_goes_through_windows_and_matches_direct_prediction_inside(tmp_path):
    model = small_model()
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(3, 200, 264, generator=g), torch.rand(3, 200, 264, generator=g)
    calls = []
    predictor = ChangePredictor(model, WindowSettings(128, 64, 8, 2))
    forward = predictor.forward_windows
    predictor.forward_windows = lambda x, y: calls.append(x.shape[0]) or forward(x, y)
    out = predictor(a, b)
    assert out["logits"].shape == (2, 200, 264) and out["distance"].shape == (200, 264)
    # padded to 224 x 288 (multiples of 32): rows start at 0, 64, 96 and columns at 0, 64, 128, 160
    assert max(calls) <= 2 and sum(calls) == 3 * 4
    with torch.no_grad():
        whole = model(a[None], b[None])["logits"][0]
    agree = (out["logits"].argmax(0) == whole.argmax(0)).float().mean()
    assert agree > 0.9  # a CNN's receptive field exceeds the margin: close, not identical
