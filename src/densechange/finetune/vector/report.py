"""A one-file HTML report of a vectorised change map: what a person reads before opening a GIS.

It shows a quicklook of both dates with the change polygons drawn over them, the totals (changed
area, polygons per size class), the histogram of the change probability, the model's card summary
and the run's settings. The page is ``report.html`` (package data) filled by :class:`string.Template`;
every image is a PNG embedded as base64, so the file travels alone. The quicklooks are decimated
reads and the polygons are read back from the written layer a batch at a time, so the report costs
no more memory than the polygons did.
"""
from __future__ import annotations

import base64
import html
import io
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any, Iterable, Mapping

import numpy as np
import rasterio
import shapely
from PIL import Image, ImageDraw
from rasterio.enums import Resampling

from densechange.atomic import write_atomically
from densechange.datasets.io.sources import GDAL_READ_OPTIONS, check_sources
from densechange.finetune.vector.vectorize import Summary

SIDE = 480  # quicklook's longer side in pixels
OUTLINE = (255, 40, 40)
CARD_KEYS = ("kind", "name", "architecture", "encoder", "decoder", "in_chans", "dataset", "method", "metrics",
             "created", "code_version", "format_version")


def _png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _rows(items: Mapping[str, Any]) -> str:
    row = Template("<tr><th>$key</th><td>$value</td></tr>")
    return "\n".join(row.substitute(key=html.escape(str(k)), value=html.escape(str(v))) for k, v in items.items())


def _stretch(bands: np.ndarray) -> np.ndarray:
    """Each band from its 2nd to 98th percentile onto 0..255 (NaN: black)."""
    out = np.zeros(bands.shape, np.uint8)
    for i, band in enumerate(bands):
        seen = band[np.isfinite(band)]
        if seen.size:
            lo, hi = np.percentile(seen, (2, 98))
            out[i] = np.clip((np.nan_to_num(band, nan=lo) - lo) / max(hi - lo, 1e-12) * 255, 0, 255).astype(np.uint8)
    return out


def _size(shape: tuple[int, int]) -> tuple[int, int]:
    h, w = shape
    scale = SIDE / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def quicklook(path: Path, shape: tuple[int, int]) -> Image.Image:
    """An RGB quicklook of a raster (its first three bands, or its one band as grey), decimated by GDAL."""
    check_sources(path)  # a VRT named here reads only its own folder (datasets.io.sources)
    with rasterio.Env(**GDAL_READ_OPTIONS), rasterio.open(path) as src:
        bands = min(src.count, 3)
        data = src.read(list(range(1, bands + 1)), out_shape=(bands, *_size(shape)),
                        resampling=Resampling.average, masked=True).astype(np.float32).filled(np.nan)
    data = _stretch(data)
    if bands < 3:
        data = np.repeat(data[:1], 3, axis=0)
    return Image.fromarray(np.moveaxis(data, 0, -1), "RGB")


def _outlines(summary: Summary, layer: str) -> Iterable[np.ndarray]:
    """Every ring of the written polygons in the scene's pixel coordinates, read a batch at a time."""
    from pyogrio.raw import read

    inverse = ~summary.transform
    a, b, c, d, e, f = inverse[:6]
    start = 0
    while True:
        _, _, geometry, _ = read(summary.out, layer=layer, columns=[], skip_features=start, max_features=4096)
        if geometry is None or len(geometry) == 0:
            return
        for g in shapely.from_wkb(geometry):
            for ring in shapely.get_rings(shapely.get_parts(g)):
                xy = shapely.get_coordinates(ring)
                yield np.stack([a * xy[:, 0] + b * xy[:, 1] + c, d * xy[:, 0] + e * xy[:, 1] + f], axis=1)
        start += len(geometry)


def _overlay(base: Image.Image, summary: Summary, layer: str) -> Image.Image:
    image = base.copy()
    draw = ImageDraw.Draw(image)
    scale = image.width / summary.shape[1]
    for ring in _outlines(summary, layer):
        points = [tuple(p) for p in ring * scale]
        if len(points) > 1:
            draw.line(points, fill=OUTLINE, width=1)
    return image


def histogram_png(counts: np.ndarray, width: int = 480, height: int = 200) -> Image.Image:
    """Bars of log(1 + count) per probability bin, with 0, 0.5 and 1 marked on the axis."""
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    axis, top = height - 20, 10
    heights = np.log1p(counts.astype(np.float64))
    heights = heights / heights.max() if heights.max() > 0 else heights
    bar = (width - 20) / len(counts)
    for i, h in enumerate(heights):
        x0 = 10 + i * bar
        draw.rectangle([x0, axis - h * (axis - top), x0 + bar - 1, axis], fill=(200, 60, 40))
    draw.line([10, axis, width - 10, axis], fill="black")
    for value in (0.0, 0.5, 1.0):
        x = 10 + value * (width - 20)
        draw.line([x, axis, x, axis + 4], fill="black")
        draw.text((x - 8, axis + 5), f"{value:g}", fill="black")
    return image


def card_summary(checkpoint: str | None) -> dict[str, Any]:
    """The model's name and the card's main entries (a toolkit checkpoint), or its file name."""
    if not checkpoint:
        return {"model": "not given"}
    path = Path(checkpoint)
    found: dict[str, Any] = {"file": path.name}
    if path.suffix == ".safetensors" and path.is_file():
        from densechange.checkpoints.format import read_metadata

        meta = read_metadata(path)
        for key in CARD_KEYS:
            if key in meta:
                text = str(meta[key])
                found[key] = text if len(text) <= 160 else text[:157] + "..."
    return found


def _figure(image: Image.Image, caption: str) -> str:
    figure = Template('<figure><img alt="$caption" src="data:image/png;base64,$data" width="$w" height="$h">'
                      "<figcaption>$caption</figcaption></figure>")
    return figure.substitute(caption=html.escape(caption), data=_png(image), w=image.width, h=image.height)


def render(summary: Summary, layer: str, dates: Mapping[str, str | None], checkpoint: str | None,
           settings: Mapping[str, Any]) -> str:
    """The report's HTML for a run that wrote ``summary.out``."""
    panels = []
    for label, path in dates.items():
        if path:
            panels.append(_figure(_overlay(quicklook(Path(path), summary.shape), summary, layer),
                                  f"{label}: {Path(path).name}, change polygons in red"))
    if not panels:
        blank = Image.new("RGB", _size(summary.shape)[::-1], (30, 30, 30))
        panels.append(_figure(_overlay(blank, summary, layer), "change polygons"))
    metric = summary.area_m2 is not None
    totals = {
        "polygons": f"{summary.features:,}",
        "changed area": f"{summary.area_m2:,.1f} m² ({summary.area_m2 / 1e4:,.3f} ha)" if metric
        else f"{summary.changed_pixels:,} pixels (no CRS)",
        "changed pixels": f"{summary.changed_pixels:,}",
        "CRS": summary.crs or "none (pixel coordinates)",
        "polygon file": summary.out.name,
    }
    histogram = (_figure(histogram_png(summary.histogram), "pixels per change probability (log scale)")
                 if summary.histogram is not None else "<p>No probability raster was read.</p>")
    page = Template(resources.files(__package__).joinpath("report.html").read_text(encoding="utf-8"))
    return page.substitute(
        title=html.escape(f"Change report: {summary.out.name}"),
        subtitle=html.escape(" vs ".join(Path(p).name for p in dates.values() if p) or "change map only"),
        panels="\n".join(panels), totals=_rows(totals),
        classes="\n".join(Template("<tr><td>$k</td><td>$v</td></tr>").substitute(k=html.escape(k), v=f"{v:,}")
                          for k, v in summary.size_classes.items()),
        histogram=histogram, model=_rows(card_summary(checkpoint)), settings=_rows(settings))


def write_report(out: Path, summary: Summary, layer: str, dates: Mapping[str, str | None],
                 checkpoint: str | None, settings: Mapping[str, Any]) -> None:
    """Write the report to ``out`` atomically."""
    document = render(summary, layer, dates, checkpoint, settings)
    write_atomically(out, lambda tmp: tmp.write_text(document, encoding="utf-8"), suffix=".html")
