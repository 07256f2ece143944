"""Tables of the pseudo-change study from the run folders of a ``densechange compare`` grid.

    python bench/study/pseudo_change_report.py runs/pcs/synthetic-432 [--file test_metrics.json] [--baseline deepcl]

Reads ``ENCODER/VARIANT/f1/sSEED/<file>`` (what ``densechange evaluate pseudo_change=each`` wrote) and
prints three markdown tables, mean ± std over seeds: the old and the new measures side by side
(the FPR on unchanged pixels, clean and under all nuisances; the flip rate, nuisance-induced false
alarms and misses; AUROC and AP, clean and under nuisances), the flip rate and induced false alarms
per nuisance, and the differences to ``--baseline`` paired by seed, with how many seeds agree.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from densechange.finetune.compare.stats import PairedDiff, summarise  # noqa: E402
from densechange.finetune.inference.scoring import NUISANCE_ROWS, ROWS  # noqa: E402


def flat(test: dict) -> dict[str, float]:
    c, p = test["clean"], test["pseudo_change"]
    out = {"F1": c["change_f1"], "F1 pc": p["change_f1"], "FPR": c["fpr_unchanged"], "FPR pc": p["fpr_unchanged"],
           "flip rate": p["flip_rate"], "induced FA": p["induced_false_alarms"], "induced miss": p["induced_misses"],
           "AUROC": c["auroc"], "AUROC pc": p["auroc"], "AUROC drop": c["auroc"] - p["auroc"], "AP": c["ap"],
           "AP pc": p["ap"]}
    for key in NUISANCE_ROWS:
        name = ROWS[key].name
        if key in test:
            out[f"flips {name}"] = test[key]["flip_rate"]
            out[f"induced FA {name}"] = test[key]["induced_false_alarms"]
            out[f"FPR {name}"] = test[key]["fpr_unchanged"]
    return out


def _ms(values: list[float], digits: int = 4) -> str:
    s = summarise(values)
    return f"{s.mean:.{digits}f}" if s.n == 1 else f"{s.mean:.{digits}f} ± {s.std:.{digits}f}"


def table(runs: dict[str, dict[int, dict[str, float]]], columns: list[str]) -> str:
    lines = ["| variant | seeds | " + " | ".join(columns) + " |", "|" + " --- |" * (len(columns) + 2)]
    for variant, seeds in runs.items():
        cells = [_ms([m[c] for m in seeds.values()], 3 if c.startswith(("F1", "AP")) else 4) for c in columns]
        lines.append(f"| {variant} | {len(seeds)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired(runs: dict[str, dict[int, dict[str, float]]], baseline: str, columns: list[str]) -> str:
    lines = [f"| variant − {baseline} | " + " | ".join(f"Δ{c}" for c in columns) + " |", "|" + " --- |" * (len(columns) + 1)]
    base = runs[baseline]
    for variant, seeds in runs.items():
        if variant == baseline:
            continue
        common = tuple(s for s in seeds if s in base)
        cells = []
        for c in columns:
            d = PairedDiff(("", variant, 1.0), ("", baseline, 1.0), c, common, tuple(seeds[s][c] - base[s][c] for s in common))
            spread = f" ± {d.std:.4f}" if len(common) > 1 else ""
            cells.append(f"{d.mean:+.4f}{spread} ({d.higher}↑ {d.lower}↓)")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("grid")
    parser.add_argument("--file", default="test_metrics.json")
    parser.add_argument("--baseline", default="deepcl")
    args = parser.parse_args()
    runs: dict[str, dict[int, dict[str, float]]] = {}
    for path in sorted(Path(args.grid).glob(f"*/*/f*/s*/{args.file}")):
        variant, seed = path.parts[-4], int(path.parts[-2][1:])
        runs.setdefault(variant, {})[seed] = flat(json.loads(path.read_text()))
    runs = {v: runs[v] for v in sorted(runs, key=lambda v: (v != args.baseline, v))}
    print(table(runs, ["F1", "F1 pc", "FPR", "FPR pc", "flip rate", "induced FA", "induced miss"]), "\n")
    print(table(runs, ["AUROC", "AUROC pc", "AUROC drop", "AP", "AP pc"]), "\n")
    per = [f"{m} {n}" for m in ("flips", "induced FA") for n in ("colour", "blur", "shift", "all")]
    if all(c in next(iter(next(iter(runs.values())).values())) for c in per):
        print(table(runs, per), "\n")
        print(table(runs, ["FPR", *(f"FPR {n}" for n in ("colour", "blur", "shift", "all"))]), "\n")
    if args.baseline in runs and len(runs) > 1:
        print(paired(runs, args.baseline, ["F1", "flip rate", "induced FA", "AUROC pc", "AUROC drop"]))


if __name__ == "__main__":
    main()
