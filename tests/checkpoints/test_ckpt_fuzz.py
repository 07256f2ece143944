"""The registry and metadata parsers fuzzed with Hypothesis: every input is a result or a CheckpointError.

Inputs are random text and bytes, random JSON trees, and valid documents with fields replaced by
random JSON values (wrong types, NaN, huge numbers, nesting), deleted, or joined by unknown fields.
A ``TypeError``, ``KeyError``, ``RecursionError`` or any other exception is a failure: it would be
a traceback for the user. Derandomised and small, so the suite stays fast and reproducible.
"""
from __future__ import annotations

import copy
import json
import warnings
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from densechange.checkpoints import CheckpointError
from densechange.checkpoints.card import model_card
from densechange.checkpoints.entry import Entry, parse_registry
from densechange.checkpoints.factory import encoder_normalisation
from densechange.checkpoints.format import META_DIGEST_KEY, META_KEY, _parse_header, metadata_digest
from densechange.checkpoints.metadata import check_metadata

FUZZ = settings(max_examples=40, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SCALARS = (st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=10)

ENTRY = {"name": "fuzz", "url": "https://example.org/w/fuzz-0123abcd.pth", "sha256_prefix": "0123abcd",
         "backbone": "resnet18", "in_chans": 3, "bands": ["R", "G", "B"], "mean": [0.4, 0.45, 0.5],
         "std": [0.2, 0.25, 0.3], "importer": "torchvision", "size": 1000, "neck_channels": 64}
ENCODER_META = {
    "kind": "encoder", "backbone": "resnet18", "in_chans": 3,
    "neck": {"type": "fpn", "channels": 64, "out_indices": [1, 2, 3, 4]},
    "feature_channels": [64, 128, 256, 512], "out_strides": [4, 8, 16, 32],
    "mean": [0.4, 0.45, 0.5], "std": [0.2, 0.25, 0.3], "method": "sadl", "steps": 10, "epochs": 1,
    "images_seen": 80, "data": {"root": "/data/inria", "images": 8, "bands": 3, "classes": 2, "crops_per_epoch": 8},
    "hardware": {"device": "cpu", "processes": 1, "precision": "fp32"}, "proj_std": 0.01,
    "config": {"data": {"root": "/data/inria", "bands": ["R", "G", "B"]}, "val": {"window": {"size": 256}}},
}
ENCODER_PATHS = ["kind", "backbone", "in_chans", "neck", "neck.channels", "neck.out_indices", "neck.pyramid",
                 "feature_channels", "out_strides", "mean", "std", "method", "steps", "data", "data.images",
                 "hardware", "hardware.processes", "proj_std", "config", "config.data", "config.data.root",
                 "config.val.window", "config.val.window.size", "backbone_args", "probe_knn_miou", "extra"]


def _mutated(base: dict, paths: list[str]) -> st.SearchStrategy[dict]:
    """``base`` with some dotted paths set to random JSON values and some top-level keys removed."""

    @st.composite
    def build(draw) -> dict:
        doc = copy.deepcopy(base)
        for path, value in draw(st.dictionaries(st.sampled_from(paths), JSON, max_size=3)).items():
            *parents, last = path.split(".")
            node: Any = doc
            for key in parents:
                if not isinstance(node, dict):
                    break
                node = node.setdefault(key, {})
            if isinstance(node, dict):
                node[last] = value
        for key in draw(st.sets(st.sampled_from(sorted(base)), max_size=2)):
            doc.pop(key, None)
        return doc

    return build()


def _registry_text(entries: list) -> str:
    return json.dumps({"version": 1, "entries": entries}, allow_nan=True)


@FUZZ
@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b"{" + b))
def test_registry_parser_on_random_text(text):
    try:
        parse_registry(text, "fuzz.json")
    except CheckpointError:
        pass


@FUZZ
@given(st.lists(_mutated(ENTRY, [*ENTRY, "extra"]) | JSON, min_size=1, max_size=3), JSON)
def test_registry_parser_on_mutated_entries(entries, version):
    for text in (_registry_text(entries), json.dumps({"version": version, "entries": entries}, allow_nan=True)):
        try:
            parsed = parse_registry(text, "fuzz.json")
        except CheckpointError:
            continue
        assert all(isinstance(e, Entry) and len(e.mean) in (0, e.in_chans) for e in parsed)
        assert all(s > 0 for e in parsed for s in e.std)


@FUZZ
@given(_mutated(ENCODER_META, ENCODER_PATHS))
def test_encoder_metadata_is_checked_before_use(meta):
    try:
        checked = check_metadata(meta, "fuzz.safetensors")
    except CheckpointError:
        return
    norm = encoder_normalisation(checked)  # what the loaders and the model card read
    assert norm is None or all(s > 0 for s in norm["std"])
    try:
        card = model_card(checked, sha256="0" * 64, size=1, file_name="fuzz.safetensors")
    except CheckpointError:
        return
    assert card.startswith("---")


@FUZZ
@given(st.one_of(JSON.map(lambda v: json.dumps(v, allow_nan=True)), st.text(max_size=100),
                 _mutated(ENCODER_META, ENCODER_PATHS).map(lambda m: json.dumps(m, allow_nan=True))),
       st.text(max_size=6), st.booleans())
def test_header_parser_on_random_headers(payload, version, sign):
    header = {META_KEY: payload, "format_version": version, "code_version": "0.1.0"}
    if sign:
        header[META_DIGEST_KEY] = metadata_digest(header)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            meta = _parse_header("fuzz.safetensors", header)
        except CheckpointError:
            return
    assert isinstance(meta, dict) and meta["kind"] in ("encoder", "change-model", "train-state", "pseudo-masks")
