"""Huge declared scenes: planned in milliseconds, refused before decoding when a strip would pass the bound."""
from __future__ import annotations

import time

import pytest

from densechange.datasets.io.limits import STRIP_BYTES_ENV
from densechange.finetune.inference.scene import Block, block_rows_of, plan_blocks, windows_to_run
from densechange.finetune.inference.windows import WindowGrid, WindowSettings
from tests.hostile_files import bomb_png, peak_run, sparse_tif

PEAK_BOUND = 1_500_000_000  # importing torch and loading the model take about 0.9 GB


def _every_block(grid: WindowGrid, rows: int, cols: int) -> list[Block]:
    """The blocks enumerated window by window, as the plan was first written: the reference for the lazy plan."""
    cuts = grid.cuts(grid.xs, grid.win_w, grid.width, cols)
    return [Block(row, c0, c1, tuple(x for x in grid.xs if x < c1 and x + grid.win_w > c0))
            for row in block_rows_of(grid, rows) for c0, c1 in zip(cuts, cuts[1:])]


@pytest.mark.parametrize("height, width, size, overlap, align, rows, cols", [
    (1000, 1700, 256, 64, 32, 5, 5), (300, 290, 64, 48, 16, 1, 1), (97, 2000, 128, 0, 1, 2, 3),
    (64, 64, 64, 16, 8, 4, 4), (5000, 333, 96, 32, 32, 1, 7)])
def test_lazy_plan_gives_the_blocks_and_window_count_of_the_full_enumeration(height, width, size, overlap, align, rows,
                                                                            cols):
    grid = WindowGrid.for_scene(height, width, WindowSettings(size=size, overlap=overlap, margin=0), align)
    plan, full = plan_blocks(grid, rows, cols), _every_block(grid, rows, cols)
    assert len(plan) == len(full) and list(plan) == full and plan[-1] == full[-1]
    assert windows_to_run(plan, grid) == windows_to_run(full, grid)


def test_a_million_squared_scene_is_planned_in_milliseconds():
    grid = WindowGrid.for_scene(1_000_000, 1_000_000, WindowSettings(size=512, overlap=64, margin=8), 32)
    start = time.perf_counter()
    plan = plan_blocks(grid, 2, 2)
    count = windows_to_run(plan, grid)
    seconds = time.perf_counter() - start
    assert count == len(grid) == 2232**2  # every window once: (1,000,000 - 512) / 448 + 1 rounded up, per axis
    assert len(plan) == 1116**2 and plan[len(plan) - 1].right == 1_000_000
    assert seconds < 0.5, seconds


def test_predict_refuses_a_declared_million_squared_pair_before_reading_it(tmp_path, tiny_run):
    a, b = sparse_tif(tmp_path / "a.tif", 1_000_000), sparse_tif(tmp_path / "b.tif", 1_000_000)
    status, out, peak = peak_run(["predict", f"checkpoint={tiny_run / 'best.safetensors'}", f"a={a}", f"b={b}",
                                  f"out={tmp_path / 'change.tif'}", "progress=false", "window.overlap=64"])
    assert status == 2 and "error:" in out and "Traceback" not in out, out
    text = " ".join(out.split())
    assert "the partial sums carried between block rows (1,024,000,000 bytes) and two rows of output tiles (512,000,000 bytes) is 1,536,000,000 bytes" in text
    assert STRIP_BYTES_ENV in text
    assert not (tmp_path / "change.tif").exists()
    assert peak < PEAK_BOUND, f"peak {peak / 1e9:.2f} GB"


def test_predict_refuses_a_wide_png_pair_before_decoding_its_strip(tmp_path, tiny_run, cli, capsys):
    """The strip is refused before it is decoded (1.15 GB per date), so this runs in the test's own process."""
    a, b = bomb_png(tmp_path / "a.png", 200_000, 1_200), bomb_png(tmp_path / "b.png", 200_000, 1_200)
    status = cli(["predict", f"checkpoint={tiny_run / 'best.safetensors'}", f"a={a}", f"b={b}",
                  f"out={tmp_path / 'change.tif'}", "progress=false"])
    text = " ".join(capsys.readouterr().err.split())
    assert status == 2 and "the strip of rows decoded from the top (the format has no blocks to seek to) of " \
        "960x200000x3 uint8 is 576,000,000 bytes" in text and STRIP_BYTES_ENV in text, text
    assert not (tmp_path / "change.tif").exists()
