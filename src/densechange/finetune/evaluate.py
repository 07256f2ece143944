"""Score a finetuned change model on a labelled change dataset.

    densechange evaluate checkpoint=RUN/best.safetensors data.root=/data/my_cd [data.split=test]
    densechange evaluate checkpoint=RUN/best.safetensors data.root=/data/my_cd pseudo_change=each

Images are scored at full size (large tiles through overlapping windows, ``window.*`` keys), from
one confusion matrix over the whole split, exactly as validation scores them
(:func:`densechange.finetune.inference.scoring.score_split`, with validation's keys without ``val.``).
Prints a table of per-class scores (class 1 is the change class), writes ``metrics.json``
(``out``), and ends with one line for the change class::

    F1=<f> IoU=<f> P=<f> R=<f> OA=<f> kappa=<f>

``pseudo_change=all`` scores the same pairs again with nuisance changes applied to the second date
(illumination and colour, blur, a 1-2 pixel shift; ``nuisance.*`` keys, seeded), all together;
``pseudo_change=each`` also under each alone, the same key as validation's ``val.pseudo_change``.
Each nuisance row reports what the nuisance alone did to the decisions
(:mod:`densechange.finetune.flips`): the flip rate and the nuisance-induced false alarms and misses.
Every row also has the false-positive rate on unchanged pixels and the threshold-free AUROC and AP
of the change probability (:mod:`densechange.engine.ranking`), so that a detector that only calls
less change under nuisances is not taken for a robust one.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf

from densechange.datasets.io.sources import allow_network_sources
from densechange.atomic import write_atomically
from densechange.engine.cli import CommandSpec, parse_command, run_cli
from densechange.engine.config import recorded_config
from densechange.engine.distributed import init_distributed, shutdown
from densechange.engine.precision import resolve_precision
from densechange.engine.speed import configure_cuda

from densechange.finetune.checkpoint import load_change_model
from densechange.finetune.config import EVAL_CHOICES, EvaluateConfig
from densechange.finetune.data import evaluation_set
from densechange.finetune.metrics import format_table, summary_line
from densechange.finetune.inference.scoring import ROWS, score_split


SPEC = CommandSpec(
    "densechange evaluate",
    "Score a change model on a labelled change dataset, at full size, with and without nuisance changes.",
    EvaluateConfig,
    required=("checkpoint", "data.root"),
    choices=EVAL_CHOICES,
    examples=("densechange evaluate checkpoint=RUN/best.safetensors data.root=my_cd data.split=test pseudo_change=each",),
)


def robustness_table(rows: dict[str, dict[str, float]]) -> str:
    """One line per row: FPR on unchanged pixels, AUROC, AP and, for nuisance rows, what the nuisance changed."""
    head = f"{'':<15}{'FPR':>8}{'AUROC':>8}{'AP':>8}{'flips':>8}{'induced FA':>12}{'induced miss':>14}"
    lines = [head, "-" * len(head)]
    for key, m in rows.items():
        flips = (f"{m['flip_rate']:>8.4f}{m['induced_false_alarms']:>12.4f}{m['induced_misses']:>14.4f}"
                 if "flip_rate" in m else f"{'':>8}{'':>12}{'':>14}")
        lines.append(f"{ROWS[key].title:<15}{m['fpr_unchanged']:>8.4f}{m['auroc']:>8.4f}{m['ap']:>8.4f}{flips}")
    return "\n".join(lines)


def report(rows: dict[str, dict[str, float]]) -> str:
    """The metrics table, the robustness table (FPR, AUROC, AP, flips), and the change-class summary line."""
    return "\n".join([format_table({ROWS[k].title: v for k, v in rows.items()}), "", robustness_table(rows),
                      summary_line(rows["clean"])])


def _trained_bands(meta: dict[str, Any]) -> list[str] | None:
    """The ``data.bands`` the checkpoint was trained on (None: every band), so a model is scored on its own bands."""
    data = (meta.get("config") or {}).get("data") or {}
    return data.get("bands") if isinstance(data, dict) else None


def evaluate_checkpoint(cfg: DictConfig) -> dict[str, Any]:
    """Score ``cfg.checkpoint`` as ``cfg`` (an :class:`EvaluateConfig`) says; rank 0 writes the record to ``cfg.out``
    (default: ``metrics.json`` beside the checkpoint) and prints the tables. Returns the record.

    Starts and ends its own process group, so ``densechange compare`` runs it per cell under ``torchrun``.
    """
    checkpoint, out = cfg.checkpoint, cfg.out
    settings = OmegaConf.to_object(cfg)
    settings.rows()  # a bad pseudo_change is an error before the data is read
    dist = init_distributed(cfg.device)
    try:
        d = cfg.data
        allow_network_sources(d.allow_network_sources)
        model, meta = load_change_model(checkpoint, trust_edited=cfg.trust_edited)
        bands = d.bands if d.bands is not None else _trained_bands(meta)
        dataset = evaluation_set(d.root, d.split, d.ignore_value, d.synthetic_pairs, d.synthetic_size, d.skip_incomplete,
                                 d.layout, bands)
        configure_cuda(dist.device)
        precision = resolve_precision(cfg.precision, dist.device, warn=dist.is_main)
        rows = score_split(model, dataset, settings, dist=dist, precision=precision, optimise=True)
        record = {"checkpoint": str(checkpoint), "config": recorded_config(cfg), "precision": precision, "pairs": len(dataset),
                  "trained_epoch": meta.get("epoch"), **rows}
        if dist.is_main:
            path = Path(out) if out else Path(checkpoint).resolve().parent / "metrics.json"
            write_atomically(path, lambda tmp: tmp.write_text(json.dumps(record, indent=2)))
            print(f"{len(dataset)} pairs of {d.root} ({d.split}); metrics written to {path}")
            print(report(rows))
    finally:
        shutdown()
    return record


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_command(SPEC, argv)
    if cfg is None:  # --help or --print-config
        return 0
    evaluate_checkpoint(cfg)
    return 0


if __name__ == "__main__":
    run_cli(main)
