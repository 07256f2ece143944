"""Model cards: what a pretrained encoder is, for the people who download it.

A card is built from the checkpoint's own metadata and bytes alone (architecture, normalisation,
the resolved config, the data summary, steps and images seen, the hardware, the collapse monitor
and probe scores, the code version, the sha256), so ``densechange weights card FILE`` writes the
same card that pretraining wrote next to the file. Its YAML front matter is the form the Hugging
Face Hub reads (``library_name``, ``license``, ``tags``, ``datasets``, ``metrics`` and a
``model-index`` with the probe results).

Example:
    >>> text = card_for_file("runs/sadl/encoder.safetensors")
    >>> write_card("runs/sadl/encoder.safetensors")          # runs/sadl/MODEL_CARD.md
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from densechange.atomic import write_atomically
from densechange.checkpoints.download import sha256_file
from densechange.checkpoints.errors import CheckpointError
from densechange.checkpoints.format import read_metadata
from densechange.redact import redact_tree

CARD_NAME = "MODEL_CARD.md"
SADL_PAPER = ("Chen & Shi, \"Semantic-aware dense representation learning for remote sensing image change "
              "detection\", IEEE TGRS 2022 (reference code: justchenhao/SaDL_CD)")
# metadata key -> (Hub metric type, human name)
METRICS = {
    "probe_knn_miou": ("mean_iou", "kNN probe mIoU"),
    "probe_kmeans_nmi": ("nmi", "k-means probe NMI"),
    "proj_std": ("proj_std", "collapse monitor: projection std"),
}


def _yaml(obj: Any) -> str:
    try:
        return OmegaConf.to_yaml(OmegaConf.create(obj)).rstrip("\n")
    except OmegaConfBaseException as err:  # a recorded key OmegaConf cannot hold
        raise CheckpointError(f"the checkpoint's recorded config cannot be written as YAML: {err}") from None


def dataset_name(meta: dict[str, Any]) -> str:
    """The training data's name: the data folder's name, or ``synthetic`` for the embedded set."""
    root = str(((meta.get("config") or {}).get("data") or {}).get("root") or "unknown")
    return "synthetic" if root == "synthetic" else Path(root.rstrip("/")).name or root


def front_matter(meta: dict[str, Any], *, name: str, license: str = "other") -> dict[str, Any]:
    """The Hub's model-card metadata: library, licence, tags, datasets and the recorded scores."""
    data = dataset_name(meta)
    method = str(meta.get("method", "sadl"))
    scores = [{"type": METRICS[k][0], "value": round(float(meta[k]), 6), "name": METRICS[k][1]}
              for k in METRICS if isinstance(meta.get(k), (int, float))]
    matter: dict[str, Any] = {
        "library_name": "densechange",
        "license": license,
        "tags": ["remote-sensing", "earth-observation", "self-supervised-learning", "dense-contrastive-learning",
                 method, "image-feature-extraction", str(meta.get("backbone", "unknown")), "fpn"],
        "datasets": [data],
        "metrics": [s["type"] for s in scores],
    }
    if scores:
        matter["model-index"] = [{"name": name, "results": [{
            "task": {"type": "image-feature-extraction", "name": "dense probe of the frozen encoder"},
            "dataset": {"type": data, "name": data},
            "metrics": scores,
        }]}]
    return matter


def _value(meta: dict[str, Any], key: str, fmt: str = "{}") -> str:
    value = meta.get(key)
    return "not recorded" if value is None else fmt.format(value)


def _numbers(values: Any) -> str:
    return ", ".join(f"{float(v):.4g}" for v in values) if values else "not recorded"


def model_card(meta: dict[str, Any], *, sha256: str, size: int, file_name: str, license: str = "other") -> str:
    """The whole card as Markdown with YAML front matter, from an encoder checkpoint's metadata."""
    if meta.get("kind") != "encoder":
        raise CheckpointError(f"{file_name} is a {meta.get('kind', 'unknown')!r} checkpoint; a model card describes "
                              "an encoder checkpoint (a pretraining run's encoder.safetensors)")
    backbone = str(meta.get("backbone", "unknown"))
    neck = meta.get("neck") or {}
    data = meta.get("data") or {}
    hardware = meta.get("hardware") or {}
    method = {"sadl": "SaDL"}.get(str(meta.get("method")), str(meta.get("method", "an unrecorded method")))
    name = Path(file_name).stem
    lines = [
        "---", _yaml(front_matter(meta, name=name, license=license)), "---", "",
        f"# {backbone} + FPN encoder, pretrained with {method}", "",
        f"A {backbone} backbone (timm) with a {neck.get('channels', '?')}-channel feature pyramid (strides "
        f"{', '.join(str(s) for s in meta.get('out_strides', [])) or '?'}), pretrained by dense, semantic-aware "
        f"contrastive learning on {dataset_name(meta)} with the densechange toolkit. Method: {SADL_PAPER}.", "",
        "## Use", "",
        "```python",
        "from densechange.checkpoints import load_encoder",
        "",
        f"encoder = load_encoder(\"{file_name}\")  # backbone + FPN, weights bit-exact",
        "pyramid = encoder.forward_pyramid(images)  # images: (B, C, H, W) normalised with the mean/std below",
        "```", "",
        f"Finetune a change detector from it: `densechange finetune ... model.encoder={file_name}`. Use it in timm, "
        f"torchvision, TorchGeo or segmentation_models_pytorch: `densechange weights export {file_name} OUT to=timm`.",
        "",
        "## Input", "",
        "| bands | mean | std |", "| --- | --- | --- |",
        f"| {meta.get('in_chans', '?')} | {_numbers(meta.get('mean'))} | {_numbers(meta.get('std'))} |", "",
        "Pixels are scaled to [0, 1] (integer rasters divided by their dtype's maximum), then normalised per band.", "",
        "## Training", "",
        f"- method: {meta.get('method', 'not recorded')}, masks: {meta.get('masks', 'not recorded')}",
        f"- steps: {_value(meta, 'steps')}, epochs: {_value(meta, 'epochs')}, images seen: {_value(meta, 'images_seen', '{:,}')}",
        f"- data: {_value(data, 'images', '{:,}')} images of {_value(data, 'bands')} bands, {_value(data, 'classes')} mask "
        f"classes, {_value(data, 'crops_per_epoch', '{:,}')} crops per epoch ({dataset_name(meta)})",
        f"- hardware: {_value(hardware, 'device')}, {_value(hardware, 'processes')} process(es), precision "
        f"{_value(hardware, 'precision')}", "",
        "## Scores at the end of pretraining", "",
        "| measure | value |", "| --- | --- |",
        *[f"| {human} | {_value(meta, key, '{:.4f}')} |" for key, (_, human) in METRICS.items()], "",
        "The probes score the frozen encoder's features on held-out labelled images (kNN label transfer and k-means "
        "clusters); the projection std falls towards 0 when the representation collapses.", "",
        "## Provenance", "",
        f"- file: `{file_name}`, {size:,} bytes, sha256 `{sha256}`",
        f"- densechange {meta.get('code_version', 'unknown')}, checkpoint format {meta.get('format_version', '?')}", "",
        "## Training config", "",
        "```yaml", _yaml(redact_tree(meta.get("config") or {})), "```", "",
    ]
    return "\n".join(lines)


def card_for_file(path: str | os.PathLike, license: str = "other", trust_edited: bool | None = None) -> str:
    """The card of the encoder checkpoint at ``path``, from its metadata and bytes alone."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    return model_card(read_metadata(path, trust_edited), sha256=sha256_file(path), size=path.stat().st_size,
                      file_name=path.name, license=license)


def write_card(path: str | os.PathLike, out: str | os.PathLike | None = None, license: str = "other",
               trust_edited: bool | None = None) -> Path:
    """Write the card of ``path`` to ``out`` (default: ``MODEL_CARD.md`` beside it), atomically."""
    text = card_for_file(path, license, trust_edited)
    dest = Path(out) if out is not None else Path(path).with_name(CARD_NAME)
    write_atomically(dest, lambda tmp: tmp.write_text(text))
    return dest
