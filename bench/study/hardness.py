"""Where hardness weighting puts the weight of the metric branch's loss: on label-boundary cells or inside regions.

    python bench/study/hardness.py runs/study/synthetic/random/deepcl/f1/s*/final.safetensors --data runs/study/pairs

For each finetuned detector, the distance map of every test pair is brought to the labels' grid
(:func:`densechange.finetune.deepcl.losses.labels_to_grid`, the grid the loss sees). A *boundary* cell has both
classes in its 3x3 neighbourhood: at the embedding's quarter resolution, with a 1-2 pixel
misregistration between the dates, its label is the least reliable. The script prints, per class,
the share of cells on a boundary and the share of the loss weight they get at gamma 0 (every cell
weighs 1) and at gamma 2 (hardness weighting), and the effective share of the cells that count
(Kish: ``(sum w)^2 / (n sum w^2)``; 1 when all weigh the same). The last line is
``boundary_weight_gamma2=<unchanged>,<changed>`` averaged over the detectors.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from densechange.datasets import ChangeDataset  # noqa: E402
from densechange.finetune.checkpoint import load_change_model  # noqa: E402
from densechange.finetune.deepcl.losses import hardness_weights, labels_to_grid  # noqa: E402


def boundary_cells(grid: torch.Tensor) -> torch.Tensor:
    """Cells whose 3x3 neighbourhood holds both classes (ignored cells count as neither)."""
    changed = F.max_pool2d((grid == 1).float()[:, None], 3, 1, 1)[:, 0] > 0
    unchanged = F.max_pool2d((grid == 0).float()[:, None], 3, 1, 1)[:, 0] > 0
    return changed & unchanged


@torch.no_grad()
def shares(checkpoint: Path, data: Path, split: str, margin: float) -> dict[str, float]:
    model = load_change_model(checkpoint)[0].eval()
    pairs = ChangeDataset(data, split)
    out: dict[str, float] = {}
    totals: dict[str, torch.Tensor] = {}
    for i in range(0, len(pairs), 8):
        batch = [pairs[j] for j in range(i, min(i + 8, len(pairs)))]
        a, b = torch.stack([s["a"] for s in batch]), torch.stack([s["b"] for s in batch])
        label = torch.stack([s["label"] for s in batch])
        d = model(a, b)["distance"][:, 0]
        grid = labels_to_grid(label, tuple(d.shape[-2:]))
        edge = boundary_cells(grid)
        for gamma in (0.0, 2.0):
            w_u, w_c = hardness_weights(d, margin, gamma)
            for name, w, member in (("unchanged", w_u, grid == 0), ("changed", w_c, grid == 1)):
                key = f"{name}/{gamma:g}"
                wm = w * member
                sums = torch.stack([wm.sum(), (w * (member & edge)).sum(), wm.pow(2).sum(), member.sum().float()])
                totals[key] = totals.get(key, torch.zeros(4)) + sums
    for key, (all_w, edge_w, sq_w, cells) in totals.items():
        out[key] = float(edge_w / all_w.clamp(min=1e-12))
        out[f"{key}/effective"] = float(all_w**2 / (cells * sq_w).clamp(min=1e-12))  # Kish: share of cells that count
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+", type=Path, help="finetuned detectors with a metric branch")
    p.add_argument("--data", type=Path, required=True, help="change dataset folder")
    p.add_argument("--split", default="test")
    p.add_argument("--margin", type=float, default=1.0, help="model.hscl_margin of the runs")
    args = p.parse_args()
    rows = [shares(c, args.data, args.split, args.margin) for c in args.checkpoints]
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}
    for name in ("unchanged", "changed"):
        print(f"{name:9s} boundary cells hold {mean[f'{name}/0']:.3f} of the weight at gamma 0 (their share of the "
              f"cells) and {mean[f'{name}/2']:.3f} at gamma 2; effective share of the cells that count: "
              f"{mean[f'{name}/0/effective']:.3f} at gamma 0, {mean[f'{name}/2/effective']:.3f} at gamma 2  "
              f"({len(rows)} detectors)")
    print(f"boundary_weight_gamma2={mean['unchanged/2']:.3f},{mean['changed/2']:.3f}")


if __name__ == "__main__":
    main()
