"""``densechange vectorize``: the area sum, the attributes, the formats, the style, bad input, the report."""
from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin

pyogrio = pytest.importorskip("pyogrio")
from pyogrio.raw import read  # noqa: E402

from densechange import atomic  # noqa: E402
from densechange.atomic import OutputError  # noqa: E402
from densechange.datasets import DatasetError  # noqa: E402
from densechange.engine.commands import dispatch  # noqa: E402
from densechange.engine.errors import ConfigError  # noqa: E402
from densechange.finetune.vector.attributes import FIELDS  # noqa: E402
from densechange.finetune.vector.write import available  # noqa: E402

PIXEL = 0.5  # metres
AREA_RTOL = 1e-9  # float64 shoelace sums of coordinates near 5e5 and 4e6: exact to far below this


def scene(folder: Path, seed: int = 0, crs: str | None = "EPSG:32631", size: tuple[int, int] = (90, 110)) -> dict:
    """A change map with blobs, holes and single pixels, its probability and distance, and two dates."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[:h, :w]
    change = np.zeros((h, w), np.uint8)
    for _ in range(12):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(2, 12)
        change[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 255
    change[(yy - 45) ** 2 + (xx - 55) ** 2 <= 16] = 0  # a hole
    change[rng.random((h, w)) < 0.01] = 255
    change[:3, :5] = 1  # no-data
    probability = np.where(change == 255, rng.integers(128, 255, (h, w)), rng.integers(0, 127, (h, w))).astype(np.uint8)
    probability[change == 1] = 255
    distance = rng.integers(0, 255, (h, w)).astype(np.uint8)
    profile = dict(driver="GTiff", height=h, width=w, count=1, dtype="uint8",
                   transform=from_origin(500000.0, 4000000.0, PIXEL, PIXEL))
    if crs:
        profile["crs"] = crs
    paths = {"change": folder / "change.tif", "probability": folder / "change_probability.tif",
             "distance": folder / "change_distance.tif"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rasterio's NotGeoreferencedWarning for crs=None
        for key, data, nodata in (("change", change, 1), ("probability", probability, 255), ("distance", distance, 255)):
            with rasterio.open(paths[key], "w", nodata=nodata, **profile) as dst:
                dst.write(data, 1)
        for date in ("a", "b"):
            paths[date] = folder / f"{date}.tif"
            with rasterio.open(paths[date], "w", **{**profile, "count": 3}) as dst:
                dst.write((rng.random((3, h, w)) * 255).astype(np.uint8))
    return {**paths, "mask": change == 255, "prob": probability, "dist": distance}


def layer(path: Path, name: str | None = None) -> tuple[dict, np.ndarray, dict[str, np.ndarray]]:
    meta, _, geometry, columns = read(path, layer=name or path.stem)
    return meta, shapely.from_wkb(geometry), dict(zip(meta["fields"], columns))


def vectorize(*args: str) -> int:
    return dispatch(["vectorize", *map(str, args)])


def test_polygon_areas_add_up_to_the_changed_pixels(tmp_path):
    s = scene(tmp_path)
    vectorize(s["change"], tmp_path / "out.gpkg", "block=32")
    meta, geometry, columns = layer(tmp_path / "out.gpkg")
    assert meta["crs"] == "EPSG:32631" and list(meta["fields"]) == [n for n, _ in FIELDS]
    changed = int(s["mask"].sum())
    assert columns["pixels"].sum() == changed
    assert columns["area_m2"].sum() == pytest.approx(changed * PIXEL ** 2, rel=AREA_RTOL)
    assert shapely.area(geometry).sum() == pytest.approx(changed * PIXEL ** 2, rel=AREA_RTOL)
    assert (columns["id"] == np.arange(1, len(geometry) + 1)).all()


def test_attributes_are_each_region_statistics(tmp_path):
    s = scene(tmp_path, seed=1)
    vectorize(s["change"], tmp_path / "out.gpkg", f"a={s['a']}", f"b={s['b']}", "block=40")
    _, geometry, columns = layer(tmp_path / "out.gpkg")
    transform = from_origin(500000.0, 4000000.0, PIXEL, PIXEL)
    for i in range(0, len(geometry), max(1, len(geometry) // 6)):
        box = rasterio.features.geometry_mask([geometry[i]], s["mask"].shape, transform, invert=True)
        inside = box & s["mask"]  # the region's changed pixels (holes are outside the polygon)
        assert columns["pixels"][i] == inside.sum()
        assert columns["prob_mean"][i] == pytest.approx(s["prob"][inside].mean() / 254, rel=1e-6)
        assert columns["prob_max"][i] == pytest.approx(s["prob"][inside].max() / 254, rel=1e-6)
        assert columns["dist_mean"][i] == pytest.approx(s["dist"][inside].mean() * 2 / 254, rel=1e-6)
        assert columns["perimeter_m"][i] == pytest.approx(geometry[i].length, rel=AREA_RTOL)
    assert set(columns["date_a"]) == {"a.tif"} and set(columns["date_b"]) == {"b.tif"}


def test_streamed_and_whole_files_are_equal_with_the_options(tmp_path):
    s = scene(tmp_path, seed=2)
    options = ("connectivity=8", "min_pixels=3", "min_area=2", "holes=5", "simplify=0.4")
    vectorize(s["change"], tmp_path / "whole.gpkg", "block=4096", *options)
    vectorize(s["change"], tmp_path / "blocks.gpkg", "block=16", *options)
    _, g1, c1 = layer(tmp_path / "whole.gpkg")
    _, g2, c2 = layer(tmp_path / "blocks.gpkg")
    assert len(g1) == len(g2) > 0
    o1, o2 = np.argsort(shapely.to_wkb(g1)), np.argsort(shapely.to_wkb(g2))
    assert all(shapely.equals_exact(a, b, tolerance=0) for a, b in zip(g1[o1], g2[o2]))
    for name, _ in FIELDS[1:]:  # the ids follow the order regions complete in
        np.testing.assert_allclose(c1[name][o1].astype(float) if name[:4] != "date" else 0,
                                   c2[name][o2].astype(float) if name[:4] != "date" else 0, rtol=1e-12)
    assert (c1["pixels"] >= 3).all() and (c1["area_m2"] >= 2).all()


def test_a_geographic_crs_gives_geodesic_areas(tmp_path):
    from pyproj import Geod

    mask = np.zeros((20, 20), np.uint8)
    mask[3:9, 4:15] = 255
    mask[12, 2] = 255
    transform = from_origin(10.0, 50.0, 0.001, 0.001)
    with rasterio.open(tmp_path / "c.tif", "w", driver="GTiff", height=20, width=20, count=1, dtype="uint8",
                       crs="EPSG:4326", transform=transform) as dst:
        dst.write(mask, 1)
    vectorize(tmp_path / "c.tif", tmp_path / "c.gpkg")
    _, _, columns = layer(tmp_path / "c.gpkg")
    geod = Geod(ellps="WGS84")
    expected = 0.0
    for row, col in zip(*np.nonzero(mask)):
        x0, y0 = transform @ (col, row)
        x1, y1 = transform @ (col + 1, row + 1)
        expected += abs(geod.geometry_area_perimeter(shapely.box(x0, y1, x1, y0))[0])
    assert columns["area_m2"].sum() == pytest.approx(expected, rel=1e-6)  # pixel boxes against whole polygons
    assert 70 * 110 * 67 * 0.95 < columns["area_m2"].sum() < 70 * 111 * 72 * 1.05  # 67 pixels of about 72 x 111 m


def test_the_geopackage_opens_styled_in_qgis(tmp_path):
    s = scene(tmp_path)
    vectorize(s["change"], tmp_path / "out.gpkg")
    with sqlite3.connect(tmp_path / "out.gpkg") as db:
        rows = db.execute("SELECT f_table_name, f_geometry_column, useAsDefault, styleQML FROM layer_styles").fetchall()
        contents = db.execute("SELECT data_type FROM gpkg_contents WHERE table_name='layer_styles'").fetchall()
    assert contents == [("attributes",)]
    assert len(rows) == 1 and rows[0][:3] == ("out", "geom", 1)
    assert 'type="graduatedSymbol"' in rows[0][3] and 'attr="prob_mean"' in rows[0][3]


@pytest.mark.parametrize("ext", [".fgb", ".geojson"])
def test_the_extension_picks_the_format(tmp_path, ext):
    s = scene(tmp_path)
    vectorize(s["change"], tmp_path / f"out{ext}", "probability=false")
    meta, geometry, columns = layer(tmp_path / f"out{ext}")
    assert meta["crs"] == "EPSG:32631" and len(geometry) > 0
    assert columns["pixels"].sum() == s["mask"].sum() and np.isnan(columns["prob_mean"].astype(float)).all()


def test_an_empty_map_gives_an_empty_layer_with_the_full_schema(tmp_path):
    s = scene(tmp_path)
    with rasterio.open(s["change"], "r+") as dst:
        dst.write(np.zeros((dst.height, dst.width), np.uint8), 1)
    for ext in (".gpkg", ".fgb"):
        vectorize(s["change"], tmp_path / f"empty{ext}")
        info = pyogrio.read_info(tmp_path / f"empty{ext}", layer="empty")
        assert list(info["fields"]) == [n for n, _ in FIELDS] and info["geometry_type"] == "MultiPolygon"
        assert info["crs"] == "EPSG:32631" and info["features"] in (0, -1)
        assert len(read(tmp_path / f"empty{ext}", layer="empty")[2]) == 0


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or p.suffix in (".gpkg", ".fgb"))


def test_a_probability_raster_without_threshold_is_refused(tmp_path):
    s = scene(tmp_path)
    with pytest.raises(DatasetError, match="threshold="):
        vectorize(s["probability"], tmp_path / "out.gpkg")
    assert leftovers(tmp_path) == []
    vectorize(s["probability"], tmp_path / "out.gpkg", "threshold=0.5", "probability=false")
    _, _, columns = layer(tmp_path / "out.gpkg")
    assert columns["pixels"].sum() == ((s["prob"] >= 127) & (s["prob"] < 255)).sum()
    assert (columns["prob_mean"] >= 0.5).all()


def test_a_raster_without_crs_gives_pixel_coordinates_and_a_warning(tmp_path):
    s = scene(tmp_path, crs=None)
    with pytest.warns(UserWarning, match="no CRS"):
        vectorize(s["change"], tmp_path / "out.gpkg")
    meta, geometry, columns = layer(tmp_path / "out.gpkg")
    assert meta["crs"] is None and np.isnan(columns["area_m2"].astype(float)).all()
    assert shapely.area(geometry).sum() == s["mask"].sum()  # pixel units
    assert tuple(shapely.total_bounds(geometry)) <= (0, 0, 110, 90) and shapely.total_bounds(geometry).min() >= 0
    with pytest.raises(ConfigError, match="min_pixels"), pytest.warns(UserWarning):
        vectorize(s["change"], tmp_path / "out2.gpkg", "min_area=4")


def test_an_unknown_extension_lists_the_formats(tmp_path):
    s = scene(tmp_path)
    with pytest.raises(ConfigError, match=r"\.gpkg \(GPKG\).*\.fgb"):
        vectorize(s["change"], tmp_path / "out.kml")
    if ".parquet" not in available():
        with pytest.raises(ConfigError, match="no Parquet driver"):
            vectorize(s["change"], tmp_path / "out.parquet")
    assert leftovers(tmp_path) == []


def test_a_read_only_folder_is_an_output_error(tmp_path, monkeypatch):
    s = scene(tmp_path)
    folder = tmp_path / "locked"
    folder.mkdir()
    if os.geteuid() == 0:  # root writes anywhere: the system's refusal is simulated where it happens
        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied")
        monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)
    else:
        folder.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="locked/out.gpkg.*Permission denied"):
            vectorize(s["change"], folder / "out.gpkg")
    finally:
        folder.chmod(0o755)
    assert list(folder.iterdir()) == []


def test_the_report_embeds_its_images(tmp_path):
    import base64
    import io
    import re

    from PIL import Image

    s = scene(tmp_path)
    vectorize(s["change"], tmp_path / "out.gpkg", f"a={s['a']}", f"b={s['b']}", f"report={tmp_path / 'r.html'}")
    page = (tmp_path / "r.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 3  # A and B with the polygons, the histogram
    sizes = [Image.open(io.BytesIO(base64.b64decode(i))).size for i in images]
    assert sizes[:2] == [(480, round(90 * 480 / 110))] * 2
    _, geometry, _ = layer(tmp_path / "out.gpkg")
    assert f"<tr><th>polygons</th><td>{len(geometry):,}</td></tr>" in page
    assert "connectivity" in page and "$" not in page.replace("$$", "")


CHROMIUM = next((c for c in ("chromium", "chromium-browser", "google-chrome") if shutil.which(c)), None)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium)")
def test_the_report_renders_in_headless_chromium(tmp_path):
    from PIL import Image

    s = scene(tmp_path)
    vectorize(s["change"], tmp_path / "out.gpkg", f"a={s['a']}", f"b={s['b']}", f"report={tmp_path / 'r.html'}")
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--window-size=1200,1600", (tmp_path / "r.html").as_uri()], check=True, timeout=120,
                   capture_output=True)
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float64)
    assert pixels.std() > 10  # not a blank page: the text and the quicklooks are drawn
    assert (np.abs(pixels - [255, 40, 40]).sum(axis=2) < 60).sum() > 50  # the red polygon outlines show


@pytest.mark.skipif(shutil.which("ogrinfo") is None, reason="no ogrinfo on PATH (Debian: apt-get install gdal-bin)")
def test_ogrinfo_reads_the_geopackage(tmp_path):
    s = scene(tmp_path)
    vectorize(s["change"], tmp_path / "out.gpkg")
    listing = subprocess.run(["ogrinfo", "-ro", str(tmp_path / "out.gpkg")], capture_output=True, text=True,
                             check=True).stdout
    assert "out (Multi Polygon)" in listing and "layer_styles" in listing
    summary = subprocess.run(["ogrinfo", "-ro", "-so", str(tmp_path / "out.gpkg"), "out"], capture_output=True,
                             text=True, check=True).stdout
    _, geometry, _ = layer(tmp_path / "out.gpkg")
    assert f"Feature Count: {len(geometry)}" in summary and "32631" in summary


def test_predict_writes_the_polygons_of_its_map(tmp_path):
    import torch

    from densechange.finetune.checkpoint import save_change_model
    from densechange.finetune.deepcl.model import ChangeHeadSpec, ChangeModel
    from densechange.models import Encoder

    s = scene(tmp_path)
    torch.manual_seed(0)
    model = ChangeModel(Encoder("resnet18", neck_channels=16), mean=[0.5] * 3, std=[0.5] * 3,
                        heads=ChangeHeadSpec(embed_dim=8, decoder_channels=8)).eval()
    save_change_model(tmp_path / "model.safetensors", model)
    dispatch(["predict", f"checkpoint={tmp_path / 'model.safetensors'}", f"a={s['a']}", f"b={s['b']}",
              f"out={tmp_path / 'map.tif'}", "window.size=64", "window.overlap=16", "window.margin=4", "device=cpu",
              "progress=false", f"vector.out={tmp_path / 'map.gpkg'}", "vector.block=32",
              f"vector.report={tmp_path / 'map.html'}"])
    with rasterio.open(tmp_path / "map.tif") as src:
        changed = int((src.read(1) == 255).sum())
    _, geometry, columns = layer(tmp_path / "map.gpkg")
    assert columns["pixels"].sum() == changed
    assert columns["area_m2"].sum() == pytest.approx(changed * PIXEL ** 2, rel=AREA_RTOL)
    if changed:
        assert (columns["prob_mean"] >= 0.5).all()  # the probability, written to a scratch file and removed
    assert set(columns["date_a"]) <= {"a.tif"} and "model.safetensors" in (tmp_path / "map.html").read_text()
    assert sorted(p.name for p in tmp_path.iterdir() if "map" in p.name) == ["map.gpkg", "map.html", "map.tif"]
