"""A dataset's VRTs read only the files inside the dataset: no raw bands, no network, no file elsewhere."""
from __future__ import annotations

import http.server
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.errors import RasterioError

from densechange.cli.datasets import check, tile
from densechange.datasets.errors import DatasetError
from densechange.datasets.io.images import read_image
from densechange.datasets.io.sources import GDAL_READ_OPTIONS, SourcePolicy, allow_network_sources, check_sources
from densechange.datasets.synthetic.samples import write_change_dataset
from densechange.datasets.tools.check import check_dataset

SECRET = b"root:x:0:0:root:/root:/bin/bash\n" * 64  # 2,112 bytes: 8 rows of 264 at one band


def _band(source: str, relative: bool = True, band: int = 1) -> str:
    return (f'<VRTRasterBand dataType="Byte" band="{band}"><SimpleSource><SourceFilename relativeToVRT="{int(relative)}">'
            f'{source}</SourceFilename><SourceBand>{band}</SourceBand></SimpleSource></VRTRasterBand>')


def _vrt(bands: str, size: int = 64) -> str:
    return f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}">{bands}</VRTDataset>'


def _raw_band(path: Path, width: int) -> str:
    return _vrt(f'<VRTRasterBand dataType="Byte" band="1" subClass="VRTRawRasterBand"><SourceFilename '
                f'relativeToVRT="0">{path}</SourceFilename><ImageOffset>0</ImageOffset><PixelOffset>1</PixelOffset>'
                f'<LineOffset>{width}</LineOffset></VRTRasterBand>', width)


def _dataset(tmp_path: Path) -> Path:
    """A change dataset of two 64² pairs whose first A image is replaced by a VRT (written by the test)."""
    root = write_change_dataset(tmp_path / "ds", 2, 64, 0)
    (root / "A" / "synthetic_00000.png").rename(root / "raw.png")
    return root


def _grey_tif(path: Path, value: int, size: int = 64, bands: int = 1) -> None:
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=bands, dtype="uint8") as dst:
        dst.write(np.full((bands, size, size), value, np.uint8))


def _errors(report, path: Path) -> list[str]:
    return [p.message for p in report.problems if p.severity == "error" and p.path == str(path)]


def test_raw_band_on_a_secret_file_is_refused_by_check_and_tile(tmp_path):
    secret = tmp_path / "passwd"
    secret.write_bytes(SECRET)
    root = _dataset(tmp_path)
    vrt = root / "A" / "synthetic_00000.vrt"
    vrt.write_text(_raw_band(secret, 64))
    report = check_dataset(root, "change")
    (message,) = _errors(report, vrt)
    assert "raw raster band" in message and report.fatal
    with pytest.raises(DatasetError, match="VRTRawRasterBand"):
        tile([str(root), str(tmp_path / "tiles"), "format=png", "size=32"])
    assert not (tmp_path / "tiles").exists()


def test_source_outside_the_dataset_is_refused_and_inside_is_read(tmp_path):
    root = _dataset(tmp_path)
    _grey_tif(tmp_path / "elsewhere.tif", 7)
    vrt = root / "A" / "synthetic_00000.vrt"
    vrt.write_text(_vrt(_band(str(tmp_path / "elsewhere.tif"), relative=False)))
    (message,) = _errors(check_dataset(root, "change"), vrt)
    assert "elsewhere.tif" in message and "outside the dataset folder" in message
    vrt.write_text(_vrt(_band("../../elsewhere.tif")))  # relativeToVRT, climbing out
    (message,) = _errors(check_dataset(root, "change"), vrt)
    assert "'../../elsewhere.tif'" in message
    (root / "A" / "link.tif").symlink_to(tmp_path / "elsewhere.tif")  # a link inside, leading out
    vrt.write_text(_vrt(_band("link.tif")))
    assert "outside the dataset folder" in _errors(check_dataset(root, "change"), vrt)[0]
    _grey_tif(root / "inside.tif", 9, bands=3)  # beside the role folders, inside the dataset
    vrt.write_text(_vrt("".join(_band("../inside.tif", band=i) for i in (1, 2, 3))))
    report = check_dataset(root, "change")
    assert not _errors(report, vrt) and report.samples == 2
    assert (read_image(vrt) == 9).all()


def test_nested_vrt_and_archive_sources_are_followed(tmp_path):
    root = _dataset(tmp_path)
    _grey_tif(tmp_path / "elsewhere.tif", 7)
    (root / "inner.vrt").write_text(_vrt(_band(str(tmp_path / "elsewhere.tif"), relative=False)))
    vrt = root / "A" / "synthetic_00000.vrt"
    vrt.write_text(_vrt(_band("../inner.vrt")))
    (message,) = _errors(check_dataset(root, "change"), vrt)
    assert "through inner.vrt" in message and "elsewhere.tif" in message
    (root / "inner.vrt").write_text(_vrt(_band("A/synthetic_00000.vrt")))  # a loop of two VRTs
    (message,) = _errors(check_dataset(root, "change"), vrt)
    assert "refers back to itself" in message
    with zipfile.ZipFile(tmp_path / "outside.zip", "w") as z:
        z.write(tmp_path / "elsewhere.tif", "e.tif")
    vrt.write_text(_vrt(_band(f"/vsizip/{tmp_path / 'outside.zip'}/e.tif", relative=False)))
    (message,) = _errors(check_dataset(root, "change"), vrt)
    assert "outside.zip" in message and "outside the dataset folder" in message
    vrt.write_text(_vrt(_band("/vsimem/x.tif", relative=False)))
    assert "vsimem is not a local file" in _errors(check_dataset(root, "change"), vrt)[0]


class _Counting(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self.hits.append(self.path)
        self.send_error(404)

    do_HEAD = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    _Counting.hits = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("prefix", ["/vsicurl/", ""])
def test_network_source_is_refused_without_a_request(tmp_path, server, prefix):
    root = _dataset(tmp_path)
    vrt = root / "A" / "synthetic_00000.vrt"
    reference = f"{prefix}{server}/scene.tif"
    vrt.write_text(_vrt(_band(reference, relative=False)))
    report = check_dataset(root, "change")
    (message,) = _errors(report, vrt)
    assert reference in message and "network source" in message and "data.allow_network_sources" in message
    assert _Counting.hits == []
    check_sources(vrt, SourcePolicy(roots=(root.resolve(),), network=True))  # the explicit option lets it through


def test_allow_network_sources_lets_check_read_the_url(tmp_path, server, capsys):
    root = _dataset(tmp_path)
    vrt = root / "A" / "synthetic_00000.vrt"
    vrt.write_text(_vrt(_band(f"/vsicurl/{server}/scene.tif", relative=False)))
    try:
        assert check([str(root), "data.allow_network_sources=true"]) == 1  # the server answers 404
    finally:
        allow_network_sources(False)
    out = capsys.readouterr().out
    assert "network source" not in out and f"{vrt}: cannot" in out
    assert any(hit.endswith("/scene.tif") for hit in _Counting.hits)
    assert check([str(root)]) == 1 and "network sources are off" in capsys.readouterr().out


def test_gdal_reads_with_raw_bands_python_and_service_drivers_off(tmp_path):
    secret = tmp_path / "passwd"
    secret.write_bytes(SECRET)
    (tmp_path / "raw.vrt").write_text(_raw_band(secret, 64))
    if tuple(int(p) for p in rasterio.__gdal_version__.split(".")[:2]) >= (3, 12):  # GDAL's own switch, from 3.12
        with rasterio.Env(**GDAL_READ_OPTIONS), pytest.raises(RasterioError):
            rasterio.open(tmp_path / "raw.vrt").read(1)
    with pytest.raises(DatasetError, match="raw raster band"):  # the XML check, whatever the GDAL
        read_image(tmp_path / "raw.vrt")
    with rasterio.Env() as env:
        drivers = env.drivers()
    assert "GTiff" in drivers and "VRT" in drivers and not {"WMS", "WMTS", "STACTA", "GTI"} & set(drivers)
    assert GDAL_READ_OPTIONS == {"GDAL_VRT_ENABLE_RAWRASTERBAND": "NO", "GDAL_VRT_ENABLE_PYTHON": "NO"}


def test_a_service_description_is_refused(tmp_path):
    root = _dataset(tmp_path)
    wms = root / "A" / "synthetic_00000.tif"
    wms.write_text('<GDAL_WMS><Service name="TMS"><ServerUrl>http://127.0.0.1:9/${z}/${x}/${y}.png</ServerUrl>'
                   "</Service></GDAL_WMS>")
    (message,) = _errors(check_dataset(root, "change"), wms)
    assert "reaches the network" in message
    (root / "B" / "notes.json").write_text('{"source": "https://example.invalid/x.tif"}')  # no suffix GDAL claims
    report = check_dataset(root, "change")
    assert "1 files of unsupported formats are skipped: notes.json" in {p.message for p in report.problems}


def test_a_vrt_named_on_its_own_reads_its_folder(tmp_path):
    """Outside every dataset folder, a VRT may reference the files of its own folder and below."""
    _grey_tif(tmp_path / "a.tif", 3)
    (tmp_path / "sub").mkdir()
    good, bad = tmp_path / "sub" / "good.vrt", tmp_path / "sub" / "bad.vrt"
    _grey_tif(tmp_path / "sub" / "b.tif", 4)
    good.write_text(_vrt(_band("b.tif")))
    bad.write_text(_vrt(_band("../a.tif")))
    assert (read_image(good) == 4).all()
    with pytest.raises(DatasetError, match="outside the dataset folder"):
        read_image(bad)
