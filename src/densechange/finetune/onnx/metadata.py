"""What an exported ONNX file says about itself: the toolkit's keys and the QGIS Deepness plugin's keys.

Every value is stored as JSON text in the model's ``metadata_props`` (``json.loads`` reads any
of them back), the convention of the Deepness plugin, whose loader parses each key it knows with
``json.loads``.

Deepness keys: the plugin reads ``model_type``, ``class_names``, ``resolution`` (cm per pixel),
``tile_size``, ``tiles_overlap`` (percent of the tile), the segmentation, regression and
detection settings and ``standardization_mean`` / ``standardization_std``
(PUTvision/qgis-plugin-deepness, ``src/deepness/processing/models/model_base.py``, the
``get_metadata_*`` methods; the documentation page ``docs/source/creators/creators_add_metadata_to_model.rst``
lists the same keys but spells the tile size ``tiles_size``, a name the loader does not read).
The plugin scales uint8 tiles to [0, 1] itself and standardises only when the two
``standardization_*`` keys are present; our graph normalises inside, so they are never written.

Example:
    >>> set_metadata(proto, {"window": 256, "class_names": {"0": "unchanged", "1": "changed"}})
    >>> read_metadata(proto)["window"]
    256
"""
from __future__ import annotations

import json
from typing import Any

from densechange.checkpoints import CheckpointError

INPUT_SCALE = ("pixel value / the dtype's maximum for integer rasters (uint8: / 255, uint16: / 65535), "
               "float rasters as stored; the mean/std normalisation is inside the graph")
TOOLKIT_KEYS = ("toolkit", "toolkit_version", "input_form", "inputs", "outputs", "bands", "input_bands",
                "input_scale", "mean", "std", "window", "overlap", "margin", "stride", "class_names",
                "source_checkpoint", "source_sha256", "checkpoint_metadata")

# name -> the JSON types the plugin's loader accepts for it (model_base.py casts with str/int/float/bool)
DEEPNESS_KEYS: dict[str, tuple[type, ...]] = {
    "model_type": (str,),
    "class_names": (dict, list),
    "resolution": (int, float),
    "tile_size": (int,),
    "tiles_overlap": (int,),
    "seg_thresh": (int, float),
    "seg_small_segment": (int,),
    "reg_output_scaling": (int, float),
    "det_conf": (int, float),
    "det_iou_thresh": (int, float),
    "det_type": (str,),
    "det_remove_overlap": (bool,),
    "standardization_mean": (list,),
    "standardization_std": (list,),
}
DEEPNESS_MODEL_TYPES = ("Segmentor", "Detector", "Regressor", "Recognition", "Superresolution")
DEEPNESS_WRITTEN = ("model_type", "class_names", "tile_size", "tiles_overlap", "resolution")


def class_names(num_classes: int) -> dict[str, str]:
    """``{"0": "unchanged", "1": "changed"}`` for a binary model, ``class_<k>`` for more classes."""
    if num_classes == 2:
        return {"0": "unchanged", "1": "changed"}
    return {str(k): f"class_{k}" for k in range(num_classes)}


def set_metadata(proto: Any, entries: dict[str, Any]) -> None:
    """Add or replace ``entries`` in the model's metadata, each value as JSON text."""
    keep = [(p.key, p.value) for p in proto.metadata_props if p.key not in entries]
    del proto.metadata_props[:]
    for key, value in [*keep, *((k, json.dumps(v, sort_keys=True)) for k, v in entries.items())]:
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, value


def read_metadata(source: Any) -> dict[str, Any]:
    """The metadata of a ModelProto or an onnxruntime session, every value parsed from JSON."""
    if hasattr(source, "get_modelmeta"):
        raw = dict(source.get_modelmeta().custom_metadata_map)
    else:
        raw = {p.key: p.value for p in source.metadata_props}
    out = {}
    for key, value in raw.items():
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def deepness_entries(num_classes: int, tile_size: int, overlap: int, resolution_cm: float | None) -> dict[str, Any]:
    """The Deepness keys of a change model run as a segmentation model on the stacked raster."""
    entries: dict[str, Any] = {
        "model_type": "Segmentor",
        "class_names": class_names(num_classes),
        "tile_size": int(tile_size),
        "tiles_overlap": int(round(100 * overlap / tile_size)),
    }
    if resolution_cm is not None:
        entries["resolution"] = round(float(resolution_cm), 4)
    return entries


def _static_shape(value_info: Any) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value_info.type.tensor_type.shape.dim]


def check_deepness(proto: Any) -> None:
    """Raise :class:`CheckpointError` unless the file is one that the Deepness plugin loads as a segmentation model.

    Checks every key against the plugin's own loader (name, JSON type, model type, consecutive
    class ids), and the graph against what its segmentation models need: one input
    ``[N, C, S, S]`` with a fixed square tile, one output ``[N, K, S, S]`` with one class name
    per output channel.
    """
    meta, problems = read_metadata(proto), []
    for key in DEEPNESS_WRITTEN[:4]:
        if key not in meta:
            problems.append(f"'{key}' is missing")
    for key in set(meta) & set(DEEPNESS_KEYS):
        if not isinstance(meta[key], DEEPNESS_KEYS[key]) or isinstance(meta[key], bool) != (bool in DEEPNESS_KEYS[key]):
            problems.append(f"'{key}' is {meta[key]!r}, not of the type the plugin reads")
    if {"standardization_mean", "standardization_std"} & set(meta):
        problems.append("'standardization_*' keys would normalise a second time (the graph normalises)")
    if isinstance(meta.get("model_type"), str) and meta["model_type"].capitalize() not in DEEPNESS_MODEL_TYPES:
        problems.append(f"model_type {meta['model_type']!r} is none of {DEEPNESS_MODEL_TYPES}")
    names = meta.get("class_names")
    if isinstance(names, dict) and sorted(int(k) for k in names) != list(range(len(names))):
        problems.append(f"class ids {sorted(names)} are not 0..{len(names) - 1}")
    if len(proto.graph.input) != 1 or len(proto.graph.output) != 1:
        problems.append(f"the plugin takes one input and one output, the graph has {len(proto.graph.input)} "
                        f"and {len(proto.graph.output)}")
    else:
        shape_in, shape_out = _static_shape(proto.graph.input[0]), _static_shape(proto.graph.output[0])
        tile = meta.get("tile_size")
        if len(shape_in) != 4 or shape_in[2] != shape_in[3] or not isinstance(shape_in[2], int) or shape_in[2] != tile:
            problems.append(f"input shape {shape_in} is not [N, C, {tile}, {tile}] with the fixed tile_size")
        if len(shape_out) != 4 or shape_out[2:] != shape_in[2:] or (isinstance(names, dict) and shape_out[1] != len(names)):
            problems.append(f"output shape {shape_out} is not [N, {len(names or {})}, {tile}, {tile}]")
    if problems:
        raise CheckpointError("the Deepness metadata does not fit the plugin: " + "; ".join(problems) + ".")


def training_resolution_cm(config: dict[str, Any]) -> tuple[float | None, str]:
    """Ground resolution (cm per pixel) of the run's training data, and a note saying where it came from.

    The first first-date raster of ``data.root`` / ``data.split`` is found as training found it (any
    layout the layout table knows, or the one ``data.layout`` describes) and its resolution read
    when it is georeferenced in a projected CRS. A raster without georeferencing falls back on the
    layout's documented resolution (:attr:`~densechange.datasets.readers.layouts.Layout.resolution_cm`)
    where the dataset's documentation states one value; otherwise the resolution is None.
    """
    from rasterio.crs import CRS

    from densechange.datasets import DatasetError
    from densechange.datasets.io.raster import raster_info
    from densechange.datasets.readers.layouts import configured_layout
    from densechange.datasets.readers.locate import locate_images

    data = config.get("data") or {}
    root = data.get("root")
    if not root:
        return None, "the checkpoint records no training data folder, so the file carries no ground resolution"
    if root == "synthetic":
        return None, "the training data was synthetic, so the file carries no ground resolution"
    try:
        found = locate_images(root, "change", data.get("split") or "train", configured_layout("change", data.get("layout")))
        first = found.paths[0][0] if found.paths else None
        georef = raster_info(first).georef if first is not None else None
    except DatasetError:
        return None, f"the training data ({root}) is not readable here; pass resolution=CM to record it"
    if georef is None or not georef.georeferenced:
        layout = found.layout
        if layout.resolution_cm is not None:
            return layout.resolution_cm, (f"ground resolution {layout.resolution_cm:.4g} cm/px: {first or root} is not "
                                          f"georeferenced, so the {layout.name} layout's documented value is used: "
                                          f"{layout.resolution_doc}")
        documented = f"; its documentation gives {layout.resolution_doc}, not one value" if layout.resolution_doc else ""
        return None, (f"the training data ({first or root}, layout {layout.name}) is not georeferenced{documented}; "
                      "pass resolution=CM to record the ground resolution")
    crs = CRS.from_wkt(georef.crs)
    if not crs.is_projected:
        return None, (f"{first} is in a geographic CRS (degrees per pixel); pass resolution=CM to record the "
                      "ground resolution")
    metres = (abs(georef.transform[0]) + abs(georef.transform[4])) / 2 * crs.linear_units_factor[1]
    return metres * 100, f"ground resolution {metres * 100:.4g} cm/px read from {first}"
