"""densechange stats: per-band mean and std on the training scale, no-data left out, checked against numpy."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from omegaconf import OmegaConf
from rasterio.transform import Affine

from densechange.datasets import DatasetError
from densechange.datasets.tools import stats as stats_module
from densechange.datasets.tools.stats import RunningMoments, dataset_stats, raster_stats

GEO = dict(crs="EPSG:32632", transform=Affine(10.0, 0.0, 300000.0, 0.0, -10.0, 5000000.0))


def _write(path: Path, arr: np.ndarray, nodata: float | None = None, tiled: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(driver="GTiff", height=arr.shape[0], width=arr.shape[1], count=arr.shape[2], dtype=arr.dtype.name,
                   nodata=nodata, **GEO)
    if tiled:
        profile.update(tiled=True, blockxsize=64, blockysize=64)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.moveaxis(arr, -1, 0))
    return path


def _s2_like(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """4 bands of uint16 reflectance-like values, each band its own level; a corner of no-data (0)."""
    levels = np.array([800, 1200, 2500, 4000])
    arr = (levels + rng.normal(0, 300, (h, w, 4))).clip(1, 65535).astype(np.uint16)
    arr[: h // 5, : w // 4] = 0
    return arr


def _numpy_stats(arrays: list[np.ndarray], nodata: float | None, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std over the valid pixels, scaled as training scales them (float32 division by the dtype maximum)."""
    pixels = np.concatenate([a.reshape(-1, a.shape[2]) for a in arrays])
    if nodata is not None:
        pixels = pixels[~(pixels == nodata).all(axis=1)]
    scaled = (pixels.astype(np.float32) / np.float32(scale)).astype(np.float64)
    return scaled.mean(axis=0), scaled.std(axis=0)


def test_every_pixel_read_matches_numpy_and_no_data_is_left_out(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = [_s2_like(rng, h, w) for h, w in ((70, 90), (50, 50), (33, 77))]
    paths = [_write(tmp_path / "image" / f"s{i}.tif", a, nodata=0, tiled=i == 0) for i, a in enumerate(arrays)]
    result = raster_stats(paths, pixels=10**6, window=32)
    mean, std = _numpy_stats(arrays, 0, 65535.0)
    assert result.exact and result.rasters == 3 and result.dtypes == ("uint16",)
    assert result.pixels == sum(a.shape[0] * a.shape[1] - (a.shape[0] // 5) * (a.shape[1] // 4) for a in arrays)
    np.testing.assert_allclose(result.mean, mean, rtol=1e-10)
    np.testing.assert_allclose(result.std, std, rtol=1e-9)
    # Counting the no-data corner would pull every mean down: the exclusion is what makes these numbers.
    with_nodata = _numpy_stats(arrays, None, 65535.0)[0]
    assert (with_nodata < np.array(result.mean) - 1e-4).all()


def test_a_seeded_sample_is_close_repeatable_and_read_by_windows(tmp_path: Path, monkeypatch) -> None:
    rng = np.random.default_rng(1)
    arrays = [_s2_like(rng, 300, 400), _s2_like(rng, 200, 160)]
    paths = [_write(tmp_path / f"big{i}.tif", a, nodata=0, tiled=True) for i, a in enumerate(arrays)]
    reads: list[tuple[int, int]] = []
    real = stats_module.RasterWindows.read

    def counting(self, top, left, height, width):
        reads.append((height, width))
        return real(self, top, left, height, width)

    monkeypatch.setattr(stats_module.RasterWindows, "read", counting)
    first = raster_stats(paths, pixels=20_000, window=32, seed=5)
    assert not first.exact and len(reads) == 20 and all(h <= 32 and w <= 32 for h, w in reads)
    # Windows go to each raster in proportion to its area: 120,000 vs 32,000 pixels.
    again = raster_stats(paths, pixels=20_000, window=32, seed=5)
    other = raster_stats(paths, pixels=20_000, window=32, seed=6)
    assert first == again and first.mean != other.mean
    mean, std = _numpy_stats(arrays, 0, 65535.0)
    np.testing.assert_allclose(first.mean, mean, atol=0.05 * std.min())
    np.testing.assert_allclose(first.std, std, rtol=0.05)
    assert 0.7 * 20_480 < first.pixels <= 20_480  # 20 windows of 32², minus the no-data that fell in them


def test_running_moments_merge_like_one_pass() -> None:
    values = np.random.default_rng(2).normal(3, 2, (1000, 3))
    moments = RunningMoments(3)
    for chunk in np.array_split(values, [1, 7, 400, 401]):
        moments.add(chunk)
    np.testing.assert_allclose(moments.mean, values.mean(0), rtol=1e-12)
    np.testing.assert_allclose(moments.std, values.std(0), rtol=1e-12)


def test_change_datasets_count_both_dates_and_png_is_scaled_by_255(make_dataset) -> None:
    from PIL import Image

    fx = make_dataset("levir-cd")
    result = dataset_stats(fx.root, split="train")
    images = [np.asarray(Image.open(fx.root / "train" / d / f"{n}.png")) for d in ("A", "B") for n in fx.splits["train"]]
    mean, std = _numpy_stats(images, None, 255.0)
    assert result.exact and result.rasters == 4
    np.testing.assert_allclose(result.mean, mean, rtol=1e-10)
    np.testing.assert_allclose(result.std, std, rtol=1e-9)


def test_float_rasters_keep_their_values_and_nan_is_no_data(tmp_path: Path) -> None:
    arr = np.random.default_rng(3).normal(0.2, 0.05, (40, 40, 2)).astype(np.float32)
    arr[0, :10] = np.nan
    result = raster_stats([_write(tmp_path / "f.tif", arr)], window=16)
    finite = arr.reshape(-1, 2)[np.isfinite(arr.reshape(-1, 2)).all(1)].astype(np.float64)
    np.testing.assert_allclose(result.mean, finite.mean(0), rtol=1e-6)
    assert result.pixels == 1600 - 10


def test_cli_prints_overrides_that_omegaconf_reads(tmp_path: Path, capsys: pytest.CaptureFixture, cli) -> None:
    rng = np.random.default_rng(4)
    for name in ("a", "b"):
        arr = _s2_like(rng, 40, 40)
        _write(tmp_path / "ds" / "image" / f"{name}.tif", arr, nodata=0)
        _write(tmp_path / "ds" / "mask" / f"{name}.tif", np.zeros((40, 40, 1), np.uint8))
    assert cli(["stats", str(tmp_path / "ds")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[1] == "data.in_chans=4" and "layout image-mask" in lines[0] and "every pixel" in lines[0]
    parsed = OmegaConf.from_dotlist(lines[-1].split())
    exact = dataset_stats(tmp_path / "ds")
    np.testing.assert_allclose(list(parsed.data.mean), exact.mean, atol=1e-4)
    np.testing.assert_allclose(list(parsed.data.std), exact.std, atol=1e-4)
    # Images without masks have statistics too.
    for mask in (tmp_path / "ds" / "mask").iterdir():
        mask.unlink()
    assert cli(["stats", str(tmp_path / "ds"), "pixels=500", "window=8"]) == 0
    assert "seeded sample" in capsys.readouterr().out


def test_errors_name_the_file(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.tif", np.ones((8, 8, 3), np.uint8))
    b = _write(tmp_path / "b.tif", np.ones((8, 8, 4), np.uint8))
    with pytest.raises(DatasetError, match=r"b.tif has 4 bands but .*a.tif has 3"):
        raster_stats([a, b])
    empty = _write(tmp_path / "empty.tif", np.zeros((8, 8, 3), np.uint8), nodata=0)
    with pytest.raises(DatasetError, match="every sampled pixel is no-data"):
        raster_stats([empty])


def test_real_levir_samples_match_numpy_over_both_dates() -> None:
    """The 11 LEVIR-CD sample pairs of the shared test data (read when present, never copied)."""
    from PIL import Image

    root = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "levir-cd-256"
    if not root.is_dir():
        pytest.skip("levir-cd-256 sample data not available")
    result = dataset_stats(root, split="train")
    images = [np.asarray(Image.open(p)) for d in ("A", "B") for p in sorted((root / d).glob("*.png"))]
    mean, std = _numpy_stats(images, None, 255.0)
    assert result.exact and result.rasters == len(images) == 22
    np.testing.assert_allclose(result.mean, mean, rtol=1e-10)
    np.testing.assert_allclose(result.std, std, rtol=1e-9)
