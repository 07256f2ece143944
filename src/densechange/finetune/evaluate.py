"""Score a finetuned change model on a labelled change dataset.

    densechange evaluate checkpoint=RUN/best.safetensors data.root=/data/my_cd [data.split=test]
    densechange evaluate checkpoint=RUN/best.safetensors data.root=/data/my_cd pseudo_change=each

Images are scored at full size (large tiles through overlapping windows, ``window.*`` keys), from
one confusion matrix over the whole split. Prints a table of per-class scores (class 1 is the
change class), writes ``metrics.json`` (``out``), and ends with one line for the change class::

    F1=<f> IoU=<f> P=<f> R=<f> OA=<f> kappa=<f>

``pseudo_change=all`` scores the same pairs again with nuisance changes applied to the second date
(illumination and colour, blur, a 1-2 pixel shift; ``nuisance.*`` keys, seeded), all together;
``pseudo_change=each`` also under each alone, the same key as validation's ``val.pseudo_change``.
Each nuisance row reports what the nuisance alone did to the decisions
(:mod:`densechange.finetune.flips`): the flip rate and the nuisance-induced false alarms and misses.
Every row also has the false-positive rate on unchanged pixels and the threshold-free AUROC and AP
of the change probability (:mod:`densechange.finetune.ranking`), so that a detector that only calls
less change under nuisances is not taken for a robust one.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from densechange.atomic import write_atomically
from densechange.engine.cli import CommandSpec, parse_command, run_cli
from densechange.engine.config import recorded_config, to_dict
from densechange.engine.distributed import init_distributed, shutdown
from densechange.engine.precision import resolve_precision
from densechange.engine.speed import configure_cuda

from densechange.finetune.checkpoint import load_change_model
from densechange.finetune.config import EVAL_CHOICES, EvaluateConfig
from densechange.finetune.data import evaluation_set
from densechange.finetune.inference.predictor import ChangePredictor
from densechange.finetune.metrics import format_table, summary_line
from densechange.finetune.inference.scoring import score_dataset, variant_metrics

ROW_TITLES = {"clean": "clean", "pseudo_change": "pseudo-change", "pseudo_change_colour": "colour only",
              "pseudo_change_blur": "blur only", "pseudo_change_shift": "shift only"}


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
        lines.append(f"{ROW_TITLES[key]:<15}{m['fpr_unchanged']:>8.4f}{m['auroc']:>8.4f}{m['ap']:>8.4f}{flips}")
    return "\n".join(lines)


def report(rows: dict[str, dict[str, float]]) -> str:
    """The metrics table, the robustness table (FPR, AUROC, AP, flips), and the change-class summary line."""
    return "\n".join([format_table({ROW_TITLES[k]: v for k, v in rows.items()}), "", robustness_table(rows),
                      summary_line(rows["clean"])])


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_command(SPEC, argv)
    if cfg is None:  # --help or --print-config
        return 0
    dist = init_distributed(cfg.device)
    try:
        d, w = cfg.data, cfg.window
        dataset = evaluation_set(d.root, d.split, d.ignore_value, d.synthetic_pairs, d.synthetic_size, d.skip_incomplete,
                                 d.layout)
        model, meta = load_change_model(cfg.checkpoint, trust_edited=cfg.trust_edited)
        configure_cuda(dist.device)
        precision = resolve_precision(cfg.precision, dist.device, warn=dist.is_main)
        predictor = ChangePredictor(model, window=w.size, overlap=w.overlap, margin=w.margin, batch_size=w.batch_size,
                                    device=dist.device, precision=precision, optimise=True)
        nuisance = None
        if cfg.pseudo_change != "none":
            settings = to_dict(cfg.nuisance)
            nuisance = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items() if k != "seed"}
        scores = score_dataset(predictor, dataset, indices=range(dist.rank, len(dataset), dist.world_size),
                               nuisance=nuisance, per_nuisance=cfg.pseudo_change == "each", seed=cfg.nuisance.seed,
                               num_workers=cfg.num_workers)
        rows = variant_metrics(scores, dist.device)
        if dist.is_main:
            out = Path(cfg.out) if cfg.out else Path(cfg.checkpoint).resolve().parent / "metrics.json"
            record = {"checkpoint": str(cfg.checkpoint), "config": recorded_config(cfg), "precision": precision,
                      "pairs": len(dataset), "trained_epoch": meta.get("epoch"), **rows}
            write_atomically(out, lambda tmp: tmp.write_text(json.dumps(record, indent=2)))
            print(f"{len(dataset)} pairs of {d.root} ({d.split}); metrics written to {out}")
            print(report(rows))
    finally:
        shutdown()
    return 0


if __name__ == "__main__":
    run_cli(main)
