"""How strong the evaluation nuisances are, against the pseudo-changes of real LEVIR-CD pairs.

    python bench/study/nuisance_strength.py runs/study/pairs [--levir ../shared/data/levir-cd-256] [key=value ...]

For each set of pairs (the synthetic test pairs; the real LEVIR-CD samples when present), prints
the pseudo-change ratio of ``bench/synthetic_stats.py`` (mean difference of the two dates on
unchanged pixels over that on changed pixels, after per-image standardisation; 1 means unchanged
ground differs between dates as much as real changes do) and the same ratio on raw [0, 1] values
(standardisation hides a global brightness or contrast change), for the pairs as they are and with
the evaluation nuisances on the second date: all together and each alone, drawn as
``densechange evaluate pseudo_change=each`` draws them (``nuisance.seed`` 0). ``key=value``
arguments change the nuisance strengths (``brightness=[0.5,1.5]``, ``max_shift=3``, ...).
The last line is ``synthetic_all=<ratio> real_clean=<ratio>`` (standardised).
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from densechange.engine.seeding import derive_seed  # noqa: E402
from densechange.finetune.deepcl.pseudo_change import NUISANCES, nuisance_changes  # noqa: E402

Pair = tuple[np.ndarray, np.ndarray, np.ndarray]  # A, B as float (H, W, 3) in [0, 1]; change mask (H, W) bool


def _read_pairs(root: Path, names: list[str]) -> list[Pair]:
    def img(sub: str, n: str) -> np.ndarray:
        return np.asarray(Image.open(root / sub / f"{n}.png").convert("RGB"), dtype=np.float32) / 255

    return [(img("A", n), img("B", n), np.asarray(Image.open(root / "label" / f"{n}.png").convert("L")) > 0)
            for n in names]


def _std(x: np.ndarray) -> np.ndarray:
    return (x - x.mean((0, 1))) / (x.std((0, 1)) + 1e-6)


def ratios(pairs: list[Pair]) -> tuple[float, float]:
    """Pseudo-change ratio (unchanged / changed mean difference), standardised and raw; pairs without change skipped."""
    out = []
    for f in (_std, lambda x: x):
        un, ch = [], []
        for a, b, change in pairs:
            if change.any() and (~change).any():
                d = np.abs(f(a) - f(b)).mean(2)
                un.append(d[~change].mean())
                ch.append(d[change].mean())
        out.append(float(np.mean(un) / np.mean(ch)))
    return out[0], out[1]


def with_nuisance(pairs: list[Pair], kinds: tuple[str, ...], settings: dict) -> list[Pair]:
    """Second dates under nuisances, image ``i`` seeded like ``evaluate`` (seed 0)."""
    out = []
    for i, (a, b, change) in enumerate(pairs):
        g = torch.Generator().manual_seed(derive_seed(0, i, 0x9C))
        nb = nuisance_changes(torch.from_numpy(b).permute(2, 0, 1).contiguous(), g, kinds, **settings)
        out.append((a, nb.permute(1, 2, 0).numpy(), change))
    return out


def report(name: str, pairs: list[Pair], settings: dict) -> float:
    clean = ratios(pairs)
    print(f"{name:<22} {len(pairs):>3} pairs  as they are: {clean[0]:.2f} (raw {clean[1]:.2f})")
    result = clean[0]
    for title, kinds in (("all nuisances", NUISANCES), *((f"{k} only", (k,)) for k in NUISANCES)):
        r = ratios(with_nuisance(pairs, kinds, settings))
        print(f"{'':<22} {title:<15} {r[0]:.2f} (raw {r[1]:.2f})")
        if kinds == NUISANCES:
            result = r[0]
    return clean[0], result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("pairs", help="synthetic change pairs (densechange synth OUT kind=change), BIT layout")
    parser.add_argument("--levir", default=str(Path(__file__).resolve().parents[3] / "shared" / "data" / "levir-cd-256"))
    parser.add_argument("settings", nargs="*", help="nuisance strengths, key=value")
    args = parser.parse_intermixed_args()
    settings = {k: (tuple(v) if isinstance(v, list) else v)
                for k, v in ((s.split("=", 1)[0], ast.literal_eval(s.split("=", 1)[1])) for s in args.settings)}
    root = Path(args.pairs)
    names = [Path(n).stem for n in (root / "list" / "test.txt").read_text().split()]
    _, synthetic_all = report("synthetic (test split)", _read_pairs(root, names), settings)
    real_clean = float("nan")
    levir = Path(args.levir)
    if levir.is_dir():
        real_clean, _ = report("LEVIR-CD-256 samples", _read_pairs(levir, sorted(p.stem for p in (levir / "A").glob("*.png"))),
                               settings)
    print(f"synthetic_all={synthetic_all:.3f} real_clean={real_clean:.3f}")


if __name__ == "__main__":
    main()
