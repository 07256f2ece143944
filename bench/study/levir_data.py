"""Cut the LEVIR-CD 1024x1024 sample tiles into a change dataset for the study (BIT layout, list files).

    python bench/study/levir_data.py ../shared/data/levir-cd-1024 runs/study/levir

Training: the 16 non-overlapping 256x256 crops of each of two tiles (test_7, test_12). Test: the
third tile (test_102), whole. No crop of the test tile enters training; in particular the
LEVIR-CD-256 sample cut from it (test_102_0512_0000) stays out. The crops are written under OUT
(a run folder, never the repository).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

TRAIN_TILES, TEST_TILE, CROP = ("test_7", "test_12"), "test_102", 256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("src", help="folder with A/, B/, label/ of the 1024x1024 tiles")
    parser.add_argument("out")
    args = parser.parse_args()
    src, out = Path(args.src), Path(args.out)
    train = []
    for sub in ("A", "B", "label"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for tile in (*TRAIN_TILES, TEST_TILE):
        arrays = {sub: np.array(Image.open(src / sub / f"{tile}.png")) for sub in ("A", "B", "label")}
        if tile == TEST_TILE:
            for sub, array in arrays.items():
                Image.fromarray(array).save(out / sub / f"{tile}.png")
            continue
        size = arrays["A"].shape[0]
        for y in range(0, size - CROP + 1, CROP):
            for x in range(0, size - CROP + 1, CROP):
                name = f"{tile}_{y:04d}_{x:04d}"
                for sub, array in arrays.items():
                    Image.fromarray(array[y : y + CROP, x : x + CROP]).save(out / sub / f"{name}.png")
                train.append(name)
    (out / "list").mkdir(exist_ok=True)
    (out / "list" / "train.txt").write_text("".join(f"{n}\n" for n in train))
    (out / "list" / "test.txt").write_text(f"{TEST_TILE}\n")
    print(f"{len(train)} training crops of {', '.join(TRAIN_TILES)}; test tile {TEST_TILE}; written to {out}")


if __name__ == "__main__":
    main()
