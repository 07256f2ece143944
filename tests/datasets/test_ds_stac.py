"""STAC items read as one raster: bands chosen by common name, assets at two resolutions on the finest grid.

``stac_scene`` writes a Sentinel-2-like item: red and nir at 10 m (60 x 80), swir16 at 20 m (30 x 40),
and a three-band "visual" asset that also holds red (with other pixels, so a wrong choice shows).
"""
import json
import time

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.transform import Affine

from densechange.datasets import DatasetError
from densechange.datasets.io.raster import open_raster
from densechange.datasets.io.remote import RemoteSettings, gdal_path, reading, scrub
from densechange.datasets.io.stac import item_raster
from tests.fileserver import FileServer

CRS = rasterio.crs.CRS.from_epsg(32633)
TEN_M = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4650000.0)
FINE, COARSE = (60, 80), (30, 40)


def _write(path, bands: np.ndarray, transform) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=bands.shape[2], height=bands.shape[1], count=bands.shape[0],
                       dtype=bands.dtype, crs=CRS, transform=transform) as dst:
        dst.write(bands)


def stac_scene(folder, name: str, seed: int) -> dict[str, np.ndarray]:
    """Assets under ``folder/name/`` and the item ``folder/name.json`` with relative hrefs; returns the bands."""
    rng = np.random.default_rng(seed)
    bands = {"red": rng.integers(0, 4000, (1, *FINE), dtype=np.uint16),
             "nir": rng.integers(0, 4000, (1, *FINE), dtype=np.uint16),
             "swir16": rng.integers(0, 4000, (1, *COARSE), dtype=np.uint16)}
    for key, data in bands.items():
        _write(folder / name / f"{key}.tif", data, TEN_M if data.shape[1:] == FINE else TEN_M @ Affine.scale(2))
    _write(folder / name / "visual.tif", np.full((3, *FINE), 7, np.uint16), TEN_M)
    tiff = "image/tiff; application=geotiff; profile=cloud-optimized"
    item = {
        "type": "Feature", "stac_version": "1.0.0", "id": name, "links": [],
        "stac_extensions": ["https://stac-extensions.github.io/eo/v1.1.0/schema.json",
                            "https://stac-extensions.github.io/raster/v1.1.0/schema.json"],
        "geometry": {"type": "Polygon", "coordinates": [[[15, 42], [15.01, 42], [15.01, 42.01], [15, 42]]]},
        "bbox": [15, 42, 15.01, 42.01], "properties": {"datetime": "2023-06-01T10:00:00Z"},
        "assets": {
            "visual": {"href": f"./{name}/visual.tif", "type": tiff, "eo:bands": [
                {"name": "B04", "common_name": "red"}, {"name": "B03", "common_name": "green"},
                {"name": "B02", "common_name": "blue"}]},
            "red": {"href": f"./{name}/red.tif", "type": tiff, "eo:bands": [{"name": "B04", "common_name": "red"}]},
            "nir": {"href": f"{name}/nir.tif", "type": tiff, "raster:bands": [{"data_type": "uint16"}],
                    "eo:bands": [{"name": "B08", "common_name": "nir"}]},
            "swir16": {"href": f"{name}/swir16.tif", "type": tiff, "eo:bands": [{"name": "B11", "common_name": "swir16"}]},
            "thumbnail": {"href": f"{name}/thumb.png", "type": "image/png", "roles": ["thumbnail"]},
        },
    }
    (folder / f"{name}.json").write_text(json.dumps(item))
    return bands


def expected(folder, name: str) -> np.ndarray:
    """red, nir, and swir16 resampled bilinearly onto the 10 m grid by GDAL's own reader: ``(3, 60, 80)``."""
    with rasterio.open(folder / name / "swir16.tif") as src:
        swir = src.read(out_shape=(1, *FINE), resampling=Resampling.bilinear)
    with rasterio.open(folder / name / "red.tif") as red, rasterio.open(folder / name / "nir.tif") as nir:
        return np.concatenate([red.read(), nir.read(), swir])


def test_bands_by_common_name_on_the_finest_grid(tmp_path):
    stac_scene(tmp_path, "t1", 0)
    raster = item_raster(str(tmp_path / "t1.json"), ["red", "nir", "SWIR16"], RemoteSettings())
    with open_raster(raster) as src:
        assert src.shape == FINE and src.transform == TEN_M and src.crs == CRS and src.count == 3
        assert [d.split(" ")[0] for d in src.descriptions] == ["red", "nir", "swir16"]
        np.testing.assert_array_equal(src.read(), expected(tmp_path, "t1"))  # the single-band red, not visual's


def test_item_over_http_resolves_relative_hrefs(tmp_path):
    stac_scene(tmp_path, "t1", 0)
    with FileServer() as srv:
        for path in tmp_path.rglob("*.*"):
            srv.files[path.relative_to(tmp_path).as_posix()] = path.read_bytes()
        settings = RemoteSettings(retries=0, timeout_s=5)
        raster = item_raster(srv.url("t1.json") + "?sig=abc", ["nir", "B04"], settings)
        assert str(raster) == srv.url("t1.json") + "?sig=***"
        with reading(settings), open_raster(raster) as src:
            pixels = src.read()
        fetched = {name for name, _, _, _ in srv.requests}
    np.testing.assert_array_equal(pixels, expected(tmp_path, "t1")[[1, 0]])
    assert fetched == {"t1.json", "t1/nir.tif", "t1/red.tif"}  # nothing of the assets not asked for


def test_missing_band_lists_the_bands_the_item_has(tmp_path):
    stac_scene(tmp_path, "t1", 0)
    with pytest.raises(DatasetError, match=r"no band named 'rededge1'.*swir16/B11 \(asset swir16\)") as err:
        item_raster(str(tmp_path / "t1.json"), ["red", "rededge1"], RemoteSettings())
    for name in ("red/B04 (asset red)", "nir/B08", "green/B03 (asset visual)"):
        assert name in str(err.value)


def test_item_without_band_metadata_lists_its_assets(tmp_path):
    stac_scene(tmp_path, "t1", 0)
    item = json.loads((tmp_path / "t1.json").read_text())
    for asset in item["assets"].values():
        asset.pop("eo:bands", None)
        asset.pop("raster:bands", None)
    (tmp_path / "bare.json").write_text(json.dumps(item))
    with pytest.raises(DatasetError, match=r"no band metadata.*its assets: visual, red, nir, swir16, thumbnail"):
        item_raster(str(tmp_path / "bare.json"), ["red"], RemoteSettings())


def test_item_level_bands_referenced_by_index(tmp_path):
    stac_scene(tmp_path, "t1", 0)
    item = json.loads((tmp_path / "t1.json").read_text())
    item["properties"]["eo:bands"] = [{"name": "B04", "common_name": "red"}, {"name": "B08", "common_name": "nir"}]
    item["assets"] = {"b4": {"href": "t1/red.tif", "eo:bands": [0]}, "b8": {"href": "t1/nir.tif", "eo:bands": [1]}}
    (tmp_path / "old.json").write_text(json.dumps(item))
    with open_raster(item_raster(str(tmp_path / "old.json"), ["nir", "red"], RemoteSettings())) as src:
        np.testing.assert_array_equal(src.read(), expected(tmp_path, "t1")[[1, 0]])


def test_not_an_item_and_no_bands(tmp_path):
    (tmp_path / "x.json").write_text('{"type": "FeatureCollection", "features": []}')
    with pytest.raises(DatasetError, match="not a STAC item"):
        item_raster(str(tmp_path / "x.json"), ["red"], RemoteSettings())
    with pytest.raises(DatasetError, match=r"name the bands.*bands=\[red,green,blue,nir\]"):
        item_raster(str(tmp_path / "x.json"), None, RemoteSettings())


def test_urls_map_to_gdal_file_systems_and_messages_lose_their_secrets():
    assert gdal_path("https://h/a.tif?x=1") == "/vsicurl/https://h/a.tif?x=1"
    assert gdal_path("s3://bucket/k/a.tif") == "/vsis3/bucket/k/a.tif"
    assert gdal_path("gs://bucket/a.tif") == "/vsigs/bucket/a.tif"
    assert scrub("a.tif?X-Amz-Signature=abc&v=2, band 1; https://u:p@h/b.tif?t=z") == \
        "a.tif?X-Amz-Signature=***&v=***, band 1; https://***@h/b.tif?t=***"


def test_item_fetch_retries_a_busy_server_and_names_a_missing_item(tmp_path):
    stac_scene(tmp_path, "t1", 0)
    settings = RemoteSettings(retries=2, retry_delay_s=0.01, timeout_s=1)
    with FileServer() as srv:
        for path in tmp_path.rglob("*.*"):
            srv.files[path.relative_to(tmp_path).as_posix()] = path.read_bytes()
        srv.unavailable["t1.json"] = 2
        with reading(settings), open_raster(item_raster(srv.url("t1.json"), ["red"], settings)) as src:
            np.testing.assert_array_equal(src.read(), expected(tmp_path, "t1")[:1])
        with pytest.raises(DatasetError, match=r"/gone\.json\?k=\*\*\*: cannot read the STAC item \(HTTP 404\)"):
            item_raster(srv.url("gone.json") + "?k=secret", ["red"], settings)
        srv.stall["t1.json"] = 10
        start = time.perf_counter()
        with pytest.raises(DatasetError, match="cannot read the STAC item.*remote.timeout_s"):
            item_raster(srv.url("t1.json"), ["red"], settings)
        assert time.perf_counter() - start < 5
    assert srv.ranges("t1.json")[:3] == [None, None, None]  # two 503 answers, then the item
