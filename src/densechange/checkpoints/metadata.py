"""The schema of a checkpoint's metadata, one per kind of file, checked on every read.

A checkpoint's metadata rebuilds a network (backbone name, neck, bands, heads), normalises its
input (mean, std) and fills model cards and ONNX files; a file from elsewhere may carry anything
there. :func:`check_metadata` holds the parsed header against the schema of its ``kind`` before any
of it is used: types, ranges, finite numbers, a positive std, lengths and nesting (what a reader
needs and finds missing, it reports itself: :meth:`Encoder.from_metadata` names the absent fields). Everything the
toolkit reads back from a recorded run config (``config.data``, ``config.val.window``) is declared
here too; the rest of the config, and any extra a method records, is free JSON within the bounds.

``backbone_args`` go to ``timm.create_model``: the keys that would make timm read a file or fetch
weights that the checkpoint names (``checkpoint_path``, ``pretrained_cfg_overlay``, ...) are refused,
and so are backbone names that are sources rather than names (``hf-hub:``, ``local-dir:``).
"""
from __future__ import annotations

from typing import Any

from densechange.checkpoints.entry import BACKBONE_PATTERN
from densechange.checkpoints.errors import CheckpointError
from densechange.checkpoints.limits import MAX_BANDS, MAX_CHANNELS
from densechange.checkpoints.schema import Flag, Int, Invalid, Items, Json, Number, Record, Spec, Text

KINDS = ("encoder", "change-model", "train-state", "pseudo-masks")
BIG = 1 << 62
# timm.create_model keyword arguments that load files or weights, or that the encoder sets itself
TIMM_REFUSED = ("checkpoint_path", "pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "cache_dir",
                "features_only", "out_indices", "in_chans")


def _optional(fields: dict[str, Spec], **kwargs: Any) -> Record:
    """An open record whose known fields may each be absent or null."""
    return Record(fields, open=True, nullable=tuple(fields), **kwargs)


def _recorded(fields: dict[str, Spec]) -> Record:
    """A section of a recorded run config: optional fields, and a value from the environment read as unknown."""
    return _optional(fields, references=True)


MEAN = Items(Number(), 1, MAX_BANDS)
STD = Items(Number(positive=True), 1, MAX_BANDS)
LEVELS = Items(Int(1, MAX_CHANNELS), 1, 8)
PYRAMID = Record({"type": Text(choices=("simple",)), "source_stride": Int(1, 1024), "channels": LEVELS},
                 required=("type", "source_stride", "channels"))
NECK = Record({"type": Text(max_len=32), "channels": Int(1, MAX_CHANNELS), "out_indices": Items(Int(0, 64), 1, 8),
               "pyramid": PYRAMID}, required=("type",), nullable=("pyramid",))
BACKBONE_ARGS = Record({}, open=True, forbidden=TIMM_REFUSED, depth=8,
                       forbidden_why="they would make timm load files or weights, or clash with the encoder's own")
ENCODER_ARCH: dict[str, Spec] = {
    "backbone": Text(max_len=200, pattern=BACKBONE_PATTERN, hint="a timm model name"),
    "neck": NECK,
    "in_chans": Int(1, MAX_BANDS),
    "feature_channels": LEVELS,
    "out_strides": Items(Int(1, 1024), 1, 8),
    "backbone_args": BACKBONE_ARGS,
    "mean": MEAN,
    "std": STD,
}
ARCH_REQUIRED = ("backbone", "neck", "in_chans")

# What the toolkit reads back from a recorded run config; the rest is free.
CONFIG = _recorded({
    "data": _recorded({"root": Text(), "split": Text(max_len=256), "bands": Items(Text(max_len=64), 0, MAX_BANDS),
                       "layout": Json(depth=8)}),
    "val": _recorded({"window": _recorded({"size": Int(1, 1 << 16), "overlap": Int(0, 1 << 16),
                                           "margin": Int(0, 1 << 16)})}),
})
COMMON: dict[str, Spec] = {"kind": Text(choices=KINDS), "config": CONFIG, "format_version": Int(0, 1 << 16),
                           "code_version": Text(max_len=200)}

ENCODER = Record({
    **COMMON, **ENCODER_ARCH,
    "method": Text(max_len=200), "masks": Text(max_len=200),
    "steps": Int(0, BIG), "epochs": Int(0, BIG), "images_seen": Int(0, BIG),
    "data": _optional({"root": Text(), "images": Int(0, BIG), "bands": Int(0, MAX_BANDS), "classes": Int(0, 1 << 16),
                       "crops_per_epoch": Int(0, BIG), "masks": Text(max_len=200)}),
    "hardware": _optional({"device": Text(max_len=200), "processes": Int(1, 1 << 24), "precision": Text(max_len=32)}),
    "proj_std": Number(), "probe_knn_miou": Number(), "probe_kmeans_nmi": Number(),
}, required=("kind",), open=True,
    nullable=("mean", "std", "config", "method", "masks", "steps", "epochs", "images_seen", "data", "hardware",
              "proj_std", "probe_knn_miou", "probe_kmeans_nmi"))

CHANGE_MODEL = Record({
    **COMMON,
    "encoder": Record(ENCODER_ARCH, required=ARCH_REQUIRED, open=True),
    "mean": MEAN,
    "std": STD,
    "model": Record({"name": Text(max_len=64, pattern=r"[a-z][a-z0-9_]*", hint="a lower-case model name"),
                     "metric_branch": Flag(), "prior": Text(max_len=64), "embed_dim": Int(1, MAX_CHANNELS),
                     "decoder_channels": Int(1, MAX_CHANNELS), "num_classes": Int(1, 1024)}),
    "epoch": Int(0, BIG),
}, required=("kind",), open=True, nullable=("config", "epoch"))

TRAIN_STATE = Record({
    **COMMON,
    "loop": Record({"step": Int(0, BIG), "epoch": Int(0, BIG), "step_in_epoch": Int(0, BIG),
                    "best_metric": Number(), "best_epoch": Int(0, BIG), "history": Items(Json(depth=4), 0, 1 << 22)},
                   required=("step", "epoch", "step_in_epoch"), nullable=("best_metric", "best_epoch")),
    "optimizer": Record({"scalars": Json(depth=8), "param_groups": Items(Json(depth=6), 0, 1 << 12)},
                        required=("scalars", "param_groups")),
    "scaler": Json(depth=4),
}, required=("kind",), open=True, nullable=("config", "scaler"))

PSEUDO_MASKS = Record(COMMON, required=("kind",), open=True, nullable=("config",))

SCHEMAS: dict[str, Record] = {"encoder": ENCODER, "change-model": CHANGE_MODEL, "train-state": TRAIN_STATE,
                              "pseudo-masks": PSEUDO_MASKS}


def check_metadata(meta: Any, where: str) -> dict[str, Any]:
    """``meta`` checked against the schema of its ``kind``; one :class:`CheckpointError` naming ``where`` and the field."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"{where}: densechange metadata must be a JSON object")
    kind = meta.get("kind")
    if not isinstance(kind, str) or kind not in SCHEMAS:
        raise CheckpointError(f"{where}: metadata field kind must be one of {list(KINDS)}, got {str(kind)[:60]!r}")
    try:
        return SCHEMAS[kind].check(meta)
    except Invalid as err:
        raise CheckpointError(f"{where}: metadata {'field ' if err.parts else ''}{err}") from None
