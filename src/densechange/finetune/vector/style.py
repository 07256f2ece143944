"""The QGIS style a GeoPackage carries, so the layer opens coloured by mean change probability.

QGIS keeps styles in the GeoPackage's ``layer_styles`` table (one QML document per row, the row with
``useAsDefault`` applied when the layer is opened) and registers the table in ``gpkg_contents`` as
attributes. The QML is built as an element tree: a graduated renderer on ``prob_mean`` from yellow to
red, or one colour when the polygons carry no probability.
"""
from __future__ import annotations

import contextlib
import datetime
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

CLASSES = ((0.0, 0.6, "255,255,178"), (0.6, 0.7, "254,204,92"), (0.7, 0.8, "253,141,60"),
           (0.8, 0.9, "240,59,32"), (0.9, 1.0001, "189,0,38"))
"""Mean-probability classes (lower, upper, RGB) of the graduated renderer."""
SINGLE = "227,26,28"

_TABLE = """CREATE TABLE IF NOT EXISTS layer_styles (
    id INTEGER PRIMARY KEY AUTOINCREMENT, f_table_catalog TEXT(256), f_table_schema TEXT(256),
    f_table_name TEXT(256), f_geometry_column TEXT(256), styleName TEXT(30), styleQML TEXT, styleSLD TEXT,
    useAsDefault BOOLEAN, description TEXT, owner TEXT(30), ui TEXT(30), update_time DATETIME)"""


def _fill(parent: ET.Element, name: str, rgb: str) -> None:
    symbol = ET.SubElement(parent, "symbol", type="fill", name=name, alpha="0.75", clip_to_extent="1", force_rhr="0")
    layer = ET.SubElement(symbol, "layer", {"class": "SimpleFill", "enabled": "1", "locked": "0", "pass": "0"})
    values = {"color": f"{rgb},255", "outline_color": "35,35,35,255", "outline_style": "solid",
              "outline_width": "0.26", "outline_width_unit": "MM", "style": "solid"}
    options = ET.SubElement(layer, "Option", type="Map")
    for key, value in values.items():
        ET.SubElement(options, "Option", type="QString", name=key, value=value)
        ET.SubElement(layer, "prop", k=key, v=value)  # the form QGIS before 3.26 reads


def qml(graduated: bool) -> str:
    """The QML document: graduated on ``prob_mean`` when the polygons carry it, else one colour."""
    root = ET.Element("qgis", version="3.28.0", styleCategories="Symbology")
    if graduated:
        renderer = ET.SubElement(root, "renderer-v2", type="graduatedSymbol", attr="prob_mean",
                                 graduatedMethod="GraduatedColor", symbollevels="0", enableorderby="0",
                                 forceraster="0")
        ranges = ET.SubElement(renderer, "ranges")
        symbols = ET.SubElement(renderer, "symbols")
        for i, (lower, upper, rgb) in enumerate(CLASSES):
            label = f"mean probability {lower:.1f} - {min(upper, 1.0):.1f}"
            ET.SubElement(ranges, "range", lower=f"{lower}", upper=f"{upper}", symbol=str(i), label=label,
                          render="true")
            _fill(symbols, str(i), rgb)
    else:
        renderer = ET.SubElement(root, "renderer-v2", type="singleSymbol", symbollevels="0", enableorderby="0",
                                 forceraster="0")
        _fill(ET.SubElement(renderer, "symbols"), "0", SINGLE)
    return "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n" + ET.tostring(root, encoding="unicode")


def add_style(gpkg: Path, layer: str, geometry_column: str, graduated: bool) -> None:
    """Write the layer's default QGIS style into the GeoPackage's ``layer_styles`` table."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    with contextlib.closing(sqlite3.connect(gpkg)) as db, db:
        db.execute(_TABLE)
        db.execute("INSERT INTO layer_styles (f_table_catalog, f_table_schema, f_table_name, f_geometry_column, "
                   "styleName, styleQML, styleSLD, useAsDefault, description, owner, ui, update_time) "
                   "VALUES ('', '', ?, ?, ?, ?, '', 1, ?, '', NULL, ?)",
                   (layer, geometry_column, layer, qml(graduated), "change polygons by mean probability", now))
        db.execute("INSERT OR REPLACE INTO gpkg_contents (table_name, data_type, identifier, description, last_change) "
                   "VALUES ('layer_styles', 'attributes', 'layer_styles', '', ?)", (now,))

