"""densechange predict on URLs and STAC items, against a real HTTP server on 127.0.0.1 (tests.fileserver).

Range reads fetch only the tiles under the predicted region, a scene read over HTTP predicts as the
same local files do, STAC items (served or local) predict as their bands stacked into a local
GeoTIFF, and a 404, a server that stops answering and a cut response each end the run with a
DatasetError naming the URL without its secret query, within seconds.
"""
import logging
import time

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from rasterio.io import MemoryFile
from rasterio.windows import Window

from densechange.datasets import DatasetError, read_image
from densechange.datasets.io.images import write_mask
from densechange.finetune import predict
from densechange.finetune.checkpoint import save_change_model
from tests.datasets.test_ds_stac import CRS, FINE, TEN_M, expected, stac_scene
from tests.fileserver import FileServer
from tests.finetune.test_ft_predict import GEO, small_model

SECRET = "s3cr3t-Token"
WINDOW = ["window.size=64", "window.overlap=32", "device=cpu", "progress=false"]
LARGE_WINDOW = ["window.size=128", "window.overlap=32", "device=cpu", "progress=false"]
SIDE, TILE, TEXTURE = 8192, 512, 1024  # an 8192² COG of 512² tiles, noise in its top-left 1024², zero elsewhere


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.safetensors"
    save_change_model(path, small_model(in_chans=1))
    return path


def _cog(seed: int) -> bytes:
    """The bytes of a one-band 8192² COG (no overviews): incompressible noise in one corner, zeros elsewhere."""
    rng = np.random.default_rng(seed)
    profile = dict(driver="GTiff", width=SIDE, height=SIDE, count=1, dtype="uint8", tiled=True, blockxsize=TILE,
                   blockysize=TILE, compress="deflate", crs=GEO.crs, transform=GEO.affine)
    with MemoryFile() as tiled, MemoryFile() as cog:
        with tiled.open(**profile) as dst:
            dst.write(rng.integers(0, 256, (1, TEXTURE, TEXTURE), dtype=np.uint8), window=Window(0, 0, TEXTURE, TEXTURE))
        rasterio.shutil.copy(tiled.name, cog.name, driver="COG", compress="DEFLATE", overviews="NONE", blocksize=TILE)
        return cog.read()


def _tile_bytes(data: bytes, row: int, col: int) -> int:
    with MemoryFile(data) as memory, memory.open() as src:
        return int(src.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=1))


def test_a_region_of_a_large_cog_fetches_only_its_tiles(tmp_path, checkpoint):
    cogs = {"t1.tif": _cog(0), "t2.tif": _cog(1)}
    region = [TILE, TILE, TILE, TILE]  # tile (1, 1): inside the noise, which spans tiles (0..1, 0..1)
    with FileServer() as srv:
        srv.files.update(cogs)
        out = tmp_path / "remote.tif"
        assert predict.main([f"checkpoint={checkpoint}", f"a={srv.url('t1.tif')}", f"b={srv.url('t2.tif')}",
                             f"out={out}", f"region={region}", *LARGE_WINDOW]) == 0
    for name, data in cogs.items():
        under = _tile_bytes(data, 1, 1)
        noise = sum(_tile_bytes(data, r, c) for r in (0, 1) for c in (0, 1))
        assert 2 * under < noise < len(data)  # the test tells the tile from the noise and the file
        assert under <= srv.sent[name] <= 2 * under, (name, srv.sent[name], under)
    # the region predicts as a crop of both dates does, and is placed where it lies
    crops = {}
    for name, data in cogs.items():
        with MemoryFile(data) as memory, memory.open() as src:
            crops[name] = src.read(1, window=Window(TILE, TILE, TILE, TILE))
        write_mask(tmp_path / name, crops[name], GEO.for_window(TILE, TILE))
    local = tmp_path / "local.tif"
    assert predict.main([f"checkpoint={checkpoint}", f"a={tmp_path / 't1.tif'}", f"b={tmp_path / 't2.tif'}",
                         f"out={local}", *LARGE_WINDOW]) == 0
    with rasterio.open(out) as remote_map, rasterio.open(local) as local_map:
        assert remote_map.shape == (TILE, TILE) and remote_map.transform == local_map.transform
        assert remote_map.transform == GEO.affine @ GEO.affine.translation(TILE, TILE)
        # the same pixels through the same kernels: allow ties at the decision threshold only
        agree = (remote_map.read(1) == local_map.read(1)).mean()
    assert agree >= 0.999


@pytest.mark.numeric
def test_whole_scene_over_http_equals_local_files(tmp_path, checkpoint):
    rng = np.random.default_rng(2)
    for name in ("a.tif", "b.tif"):
        write_mask(tmp_path / name, (rng.random((150, 170)) * 255).astype(np.uint8), GEO)
    with FileServer() as srv:
        for name in ("a.tif", "b.tif"):
            srv.files[name] = (tmp_path / name).read_bytes()
        remote = [f"a={srv.url('a.tif')}?token={SECRET}", f"b={srv.url('b.tif')}?token={SECRET}"]
        assert predict.main([f"checkpoint={checkpoint}", *remote, f"out={tmp_path / 'remote.tif'}",
                             "probability=true", *WINDOW]) == 0
        assert {q for _, _, _, q in srv.requests} == {f"token={SECRET}"}  # the query reaches the server
    assert predict.main([f"checkpoint={checkpoint}", f"a={tmp_path / 'a.tif'}", f"b={tmp_path / 'b.tif'}",
                         f"out={tmp_path / 'local.tif'}", "probability=true", *WINDOW]) == 0
    remote_change, local_change = read_image(tmp_path / "remote.tif"), read_image(tmp_path / "local.tif")
    remote_prob = read_image(tmp_path / "remote_probability.tif").astype(int)
    local_prob = read_image(tmp_path / "local_probability.tif").astype(int)
    # same pixels, same kernels: probabilities within one rounding step, decisions equal but at ties
    assert np.abs(remote_prob - local_prob).max() <= 1
    differ = remote_change != local_change
    assert np.all(np.abs(local_prob[differ] - 127) <= 1)
    assert read_image(tmp_path / "remote.tif").shape[:2] == (150, 170)


def _fails(checkpoint, tmp_path, srv, name, caplog, *keys):
    """Run predict on ``name`` (served with a secret query) and return its error and the seconds it took."""
    srv.files["b.tif"] = srv.files.get("b.tif", srv.files.get(name, b""))
    caplog.set_level(logging.DEBUG)
    start = time.perf_counter()
    with pytest.raises(DatasetError) as err:
        predict.main([f"checkpoint={checkpoint}", f"a={srv.url(name)}?token={SECRET}", f"b={srv.url('b.tif')}",
                      f"out={tmp_path / 'change.tif'}", *WINDOW, *keys])
    seconds = time.perf_counter() - start
    message = str(err.value)
    assert srv.url(name) + "?token=***" in message, message
    assert SECRET not in message and SECRET not in caplog.text
    assert err.value.__cause__ is None and err.value.__suppress_context__  # GDAL's own message held the secret
    assert not (tmp_path / "change.tif").exists()
    return message, seconds


@pytest.fixture
def scene_bytes(tmp_path):
    rng = np.random.default_rng(3)
    profile = dict(driver="GTiff", width=512, height=512, count=1, dtype="uint8", tiled=True, blockxsize=256,
                   blockysize=256, compress="deflate", crs=GEO.crs, transform=GEO.affine)
    with MemoryFile() as memory:
        with memory.open(**profile) as dst:
            dst.write(rng.integers(0, 256, (1, 512, 512), dtype=np.uint8))
        return memory.read()


def test_missing_file_is_a_clear_error(tmp_path, checkpoint, caplog, scene_bytes):
    with FileServer() as srv:
        srv.files["b.tif"] = scene_bytes
        message, seconds = _fails(checkpoint, tmp_path, srv, "gone.tif", caplog)
    assert "404" in message and seconds < 10


def test_server_that_stops_answering_fails_within_the_timeout(tmp_path, checkpoint, caplog, scene_bytes):
    with FileServer() as srv:
        srv.files["a.tif"] = srv.files["b.tif"] = scene_bytes
        srv.stall["a.tif"] = 30
        message, seconds = _fails(checkpoint, tmp_path, srv, "a.tif", caplog, "remote.timeout_s=1")
    assert 1 <= seconds < 10  # given up after a second of silence, not after the server's 30
    assert "the server sent nothing for 1 s" in message


def test_retries_ride_out_a_busy_server(tmp_path, checkpoint, caplog, scene_bytes):
    with FileServer() as srv:
        srv.files["a.tif"] = srv.files["b.tif"] = scene_bytes
        srv.unavailable["a.tif"] = 2  # two 503 answers, then the file
        _fails(checkpoint, tmp_path, srv, "a.tif", caplog, "remote.retries=0")
        srv.unavailable["a.tif"] = 2
        assert predict.main([f"checkpoint={checkpoint}", f"a={srv.url('a.tif')}", f"b={srv.url('b.tif')}",
                             f"out={tmp_path / 'change.tif'}", "remote.retries=2", "remote.retry_delay_s=0.05",
                             *WINDOW]) == 0
    assert read_image(tmp_path / "change.tif").shape[:2] == (512, 512)


def test_cut_response_is_a_clear_error(tmp_path, checkpoint, caplog, scene_bytes):
    with FileServer() as srv:
        srv.files["a.tif"] = srv.files["b.tif"] = scene_bytes
        srv.truncate_at["a.tif"] = len(scene_bytes) // 2  # the header arrives, the tiles past the middle never do
        message, seconds = _fails(checkpoint, tmp_path, srv, "a.tif", caplog, "remote.retries=0")
    assert "reading its pixels failed" in message and seconds < 10


def test_region_outside_the_scene_is_refused(tmp_path, checkpoint):
    write_mask(tmp_path / "a.tif", np.zeros((100, 120), np.uint8), GEO)
    with pytest.raises(DatasetError, match=r"region=\[90, 0, 20, 10\].*100 x 120"):
        predict.main([f"checkpoint={checkpoint}", f"a={tmp_path / 'a.tif'}", f"b={tmp_path / 'a.tif'}",
                      f"out={tmp_path / 'c.tif'}", "region=[90,0,20,10]", *WINDOW])


@pytest.mark.numeric
def test_stac_items_over_http_and_from_files_predict_as_their_bands_stacked_locally(tmp_path):
    ckpt = tmp_path / "model3.safetensors"
    save_change_model(ckpt, small_model(in_chans=3))
    for seed, name in enumerate(("t1", "t2")):
        stac_scene(tmp_path, name, seed)
        with rasterio.open(tmp_path / name / "red.tif") as red:
            profile = dict(red.profile, count=3)
        with rasterio.open(tmp_path / f"{name}_stacked.tif", "w", **profile) as dst:  # red, nir, swir16 on 10 m
            dst.write(expected(tmp_path, name))
    bands = ["bands=[red,nir,swir16]", *WINDOW]
    runs = {"local": [f"a={tmp_path / 't1_stacked.tif'}", f"b={tmp_path / 't2_stacked.tif'}"],
            "files": [f"a={tmp_path / 't1.json'}", f"b={tmp_path / 't2.json'}", *bands]}
    with FileServer() as srv:
        for path in tmp_path.rglob("*.*"):
            srv.files[path.relative_to(tmp_path).as_posix()] = path.read_bytes()
        runs["http"] = [f"a={srv.url('t1.json')}", f"b={srv.url('t2.json')}", *bands]
        for run, inputs in runs.items():
            assert predict.main([f"checkpoint={ckpt}", *inputs, f"out={tmp_path / run}.tif", "probability=true",
                                 *WINDOW]) == 0
        assert not any(name.endswith("visual.tif") for name, _, _, _ in srv.requests)
    local = read_image(tmp_path / "local_probability.tif")[..., 0].astype(int)
    for run in ("files", "http"):
        # the same pixels through the same kernels: probabilities within a rounding step, decisions equal but at ties
        prob = read_image(tmp_path / f"{run}_probability.tif")[..., 0].astype(int)
        assert prob.shape == local.shape == FINE and np.abs(prob - local).max() <= 1
        differ = read_image(tmp_path / f"{run}.tif") != read_image(tmp_path / "local.tif")
        assert np.all(np.abs(local[differ[..., 0]] - 127) <= 1)
        assert differ.mean() < 0.01
    with rasterio.open(tmp_path / "http.tif") as out:
        assert out.transform == TEN_M and out.crs == CRS


def test_bands_name_stac_items_only(tmp_path, checkpoint):
    write_mask(tmp_path / "a.tif", np.zeros((64, 64), np.uint8), GEO)
    with pytest.raises(DatasetError, match="not a STAC item.*leave it unset"):
        predict.main([f"checkpoint={checkpoint}", f"a={tmp_path / 'a.tif'}", f"b={tmp_path / 'a.tif'}",
                      f"out={tmp_path / 'c.tif'}", "bands=[red]", *WINDOW])
