"""The comparison's outputs: ``results.csv`` (one row per run) and ``results.md`` (means and paired differences).

A row flattens one cell's ``result.json``: the cell (encoder, variant, fraction, seed), what it
trained on, and the test metrics of the change class without (``f1``, ``iou``, ...) and with
pseudo-changes, all nuisances together (``pc_f1``, ``pc_fpr``, ...) and each alone
(``pc_colour_f1``, ``pc_blur_…``, ``pc_shift_…``). ``fpr`` is the false-positive rate on unchanged
pixels, ``auroc`` and ``ap`` the threshold-free scores of the change probability; the nuisance rows
add ``flips`` (share of pixels whose decision the nuisance changed), ``induced_fa`` (unchanged
pixels called unchanged on the clean pair and changed under the nuisance, as a share of the
former) and ``induced_miss`` (the same for found changes that the nuisance hides).
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Sequence

from densechange.finetune.compare.stats import Baseline, Group, PairedDiff, Row, group_of, paired_differences, summarise
from densechange.finetune.inference.scoring import NUISANCE_ROWS, ROWS

_METRICS = {"f1": "change_f1", "iou": "change_iou", "precision": "change_precision", "recall": "change_recall",
            "kappa": "kappa", "oa": "oa", "fpr": "fpr_unchanged", "auroc": "auroc", "ap": "ap"}
_FLIP_METRICS = {"flips": "flip_rate", "induced_fa": "induced_false_alarms", "induced_miss": "induced_misses"}
# Column prefix -> key of the nuisance row in result.json["test"]; "pc_" is all nuisances together.
NUISANCE_COLUMNS = {ROWS[k].prefix: k for k in NUISANCE_ROWS}
METRIC_FIELDS = [*_METRICS, *(f"{p}{k}" for p in NUISANCE_COLUMNS for k in (*_METRICS, *_FLIP_METRICS))]  # test scores
CSV_FIELDS = ["encoder", "variant", "fraction", "seed", "train_pairs", "epochs", "steps", "checkpoint", "trained_epoch",
              *METRIC_FIELDS, "test_pairs", "train_seconds", "run_dir", "encoder_source"]
TABLE_METRICS = {"f1": "F1", "iou": "IoU", "kappa": "kappa", "auroc": "AUROC", "pc_f1": "F1 pseudo-change",
                 "pc_fpr": "FPR pseudo-change", "pc_auroc": "AUROC pseudo-change", "pc_flips": "flip rate",
                 "pc_induced_fa": "induced false alarms"}
PAIRED_METRICS = {"f1": "ΔF1", "pc_f1": "ΔF1 pseudo-change", "pc_fpr": "ΔFPR pseudo-change",
                  "pc_auroc": "ΔAUROC pseudo-change", "pc_flips": "Δflip rate", "pc_induced_fa": "Δinduced false alarms"}
# Per nuisance, alone and together: the measures that isolate what the nuisance did.
NUISANCE_METRICS = {"flips": "flip rate", "induced_fa": "induced false alarms", "auroc": "AUROC"}


def row_from_result(result: dict[str, Any]) -> Row:
    """One CSV row from a cell's ``result.json``."""
    row: Row = {k: result[k] for k in ("encoder", "variant", "fraction", "seed", "train_pairs", "epochs", "steps",
                                       "checkpoint", "trained_epoch", "test_pairs", "train_seconds", "run_dir",
                                       "encoder_source")}
    test = result["test"]
    for short, key in _METRICS.items():
        row[short] = test["clean"].get(key, math.nan)
    for prefix, name in NUISANCE_COLUMNS.items():
        scores = test.get(name) or {}
        for short, key in (*_METRICS.items(), *_FLIP_METRICS.items()):
            row[prefix + short] = scores.get(key, math.nan)
    return row


def write_csv(rows: Sequence[Row], path: Path) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def _fmt(value: float, signed: bool = False) -> str:
    return "n/a" if math.isnan(value) else (f"{value:+.3f}" if signed else f"{value:.3f}")


def _mean_std(values: Sequence[float]) -> str:
    s = summarise(values)
    return _fmt(s.mean) if s.n == 1 or math.isnan(s.mean) else f"{_fmt(s.mean)} ± {_fmt(s.std)}"


def _cell(group: Group) -> str:
    return f"{group[0]}/{group[1]}"


def groups_in_order(rows: Sequence[Row]) -> dict[Group, list[Row]]:
    out: dict[Group, list[Row]] = {}
    for row in rows:
        out.setdefault(group_of(row), []).append(row)
    return out


def means_table(rows: Sequence[Row]) -> str:
    """Mean ± sample std over seeds of every group, one line each."""
    head = ["encoder", "variant", "fraction", "seeds", *TABLE_METRICS.values()]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for (encoder, variant, fraction), runs in groups_in_order(rows).items():
        cells = [encoder, variant, f"{fraction:g}", str(len(runs))]
        cells += [_mean_std([float(r.get(m, math.nan)) for r in runs]) for m in TABLE_METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def nuisance_table(rows: Sequence[Row]) -> str:
    """Mean ± std over seeds of the flip rate, induced false alarms and AUROC, per nuisance alone and all together."""
    head = ["encoder", "variant", "fraction", "seeds"]
    head += [f"{title} {ROWS[k].name}" for title in NUISANCE_METRICS.values() for k in NUISANCE_ROWS]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for (encoder, variant, fraction), runs in groups_in_order(rows).items():
        cells = [encoder, variant, f"{fraction:g}", str(len(runs))]
        cells += [_mean_std([float(r.get(p + m, math.nan)) for r in runs]) for m in NUISANCE_METRICS for p in NUISANCE_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _diff_text(d: PairedDiff) -> str:
    spread = "" if len(d.diffs) < 2 else f" ± {_fmt(d.std)}"
    return f"{_fmt(d.mean, signed=True)}{spread}, {d.signs()}"


def paired_table(rows: Sequence[Row], baseline: Baseline) -> str:
    """Paired differences of every other group against ``baseline`` (F1, and F1 and FPR under pseudo-change)."""
    per_metric = {m: {d.group: d for d in paired_differences(rows, baseline, m)} for m in PAIRED_METRICS
                  if all(m in r for r in rows)}
    head = ["cell", "fraction", "vs", *PAIRED_METRICS.values(), "F1: what the seeds support"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for group, f1 in per_metric["f1"].items():
        cells = [_cell(group), f"{group[2]:g}", f"{_cell(f1.baseline)} @ {f1.baseline[2]:g}"]
        cells += [_diff_text(per_metric[m][group]) if m in per_metric else "n/a" for m in PAIRED_METRICS]
        cells.append(f1.support())
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_markdown(rows: Sequence[Row], baselines: Sequence[Baseline], context: Sequence[str] = ()) -> str:
    """``results.md``: context lines, the means table, then one paired table per baseline."""
    parts = ["# Comparison", *context, "", "## Test metrics of the change class, mean ± std over seeds", "",
             means_table(rows), "", "## What the nuisances alone did, mean ± std over seeds", "",
             "Flip rate: share of pixels whose decision differs between the clean and the nuisance pair. Induced "
             "false alarms: among unchanged pixels called unchanged on the clean pair, the share called changed "
             "under the nuisance. AUROC: of the change probability under the nuisance (threshold-free).", "",
             nuisance_table(rows), ""]
    present = {group_of(r)[:2] for r in rows}
    for baseline in baselines:
        where = f"at fraction {baseline.fraction:g}" if baseline.fraction is not None else "at the same fraction"
        parts += [f"## Paired by seed against {baseline.encoder}/{baseline.variant} {where}", ""]
        if (baseline.encoder, baseline.variant) not in present:  # grid.report_only before the baseline ran
            parts += [f"No finished run of {baseline.encoder}/{baseline.variant} yet.", ""]
            continue
        parts += ["Differences are cell minus baseline, mean ± std over the seeds both ran; for the FPR, the flip "
                  "rate and the induced false alarms, lower is better.", "", paired_table(rows, baseline), ""]
    return "\n".join(parts)
