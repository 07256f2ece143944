"""Prediction at archive scale: pairs files, LPT dealing, bands of a large scene, the manifest, torchrun.

Every comparison is of fp32 maps from the same windows batched the same way, on the same CPU
kernels: a band, a scene done by another process and a scene done after a restart must equal the
one-process run byte for byte.
"""
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from densechange.datasets import DatasetError
from densechange.engine.cli import parse_command
from densechange.engine.runlog import read_jsonl
from densechange.finetune import predict
from densechange.finetune.archive.deal import deal
from densechange.finetune.archive.manifest import MANIFEST
from densechange.finetune.archive.parts import PARTS, Band
from densechange.finetune.archive.plan import band_plan, make_plan
from densechange.finetune.archive import run
from densechange.finetune.archive.run import LOG
from densechange.finetune.checkpoint import save_change_model
from densechange.finetune.inference.windows import WindowSettings
from tests.finetune.test_ft_scene import small_model, smooth_noise, write
from tests.torchrun import launch, worker_pids

WINDOW = ["window.size=256", "window.overlap=64", "window.margin=8", "device=cpu", "precision=fp32", "progress=false"]
SIZES = {"s1": (600, 500), "s2": (300, 500), "s3": (200, 300)}
TALL = (2000, 300)  # block rows of 960 px at window 256: 3 bands of band_rows=960 (rows 0-960, 960-1760, 1760-2000)
SPLIT = ["split.min_pixels=400000", "split.band_rows=960"]  # only the tall scene is split


def write_pair(folder: Path, name: str, size: tuple[int, int], seed: int) -> None:
    """Two dates of ``size``: structured RGB noise, the second with a patch inverted and noise of its own."""
    a = smooth_noise(*size, seed)
    b = (0.8 * a + 0.2 * smooth_noise(*size, seed + 100)).astype(np.uint8)
    h, w = size
    b[h // 3 : h // 2, w // 4 : w // 2] = 255 - b[h // 3 : h // 2, w // 4 : w // 2]
    for date, image in (("t1", a), ("t2", b)):
        (folder / date).mkdir(exist_ok=True)
        write(folder / date / f"{name}.tif", image)


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """A tiny random change model, three small pairs and a tall one, and pairs.csv listing them (relative paths).

    The classifier's weights are scaled up so that the change probability spans many values (a
    random model's is nearly constant): the maps compared byte for byte then say something.
    """
    root = tmp_path_factory.mktemp("archive")
    model = small_model(0)
    with torch.no_grad():
        model.classifier.weight.mul_(100)
    save_change_model(root / "model.safetensors", model)
    lines = ["a,b,out"]
    for seed, (name, size) in enumerate([*SIZES.items(), ("tall", TALL)]):
        write_pair(root, name, size, seed)
        lines.append(f"t1/{name}.tif,t2/{name}.tif,{name}.tif")
    (root / "pairs.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def reference(archive) -> Path:
    """The one-process run, no scene split: the maps every other run must equal."""
    out = archive / "reference"
    assert predict.main([f"checkpoint={archive / 'model.safetensors'}", f"pairs={archive / 'pairs.csv'}", f"out={out}",
                         "probability=true", "split.min_pixels=null", *WINDOW]) == 0
    return out


def maps(folder: Path) -> dict[str, np.ndarray]:
    """Every map of a run into ``folder``: change maps there, probabilities in ``<folder>_probability``."""
    found = {}
    for path in sorted([*folder.rglob("*.tif"), *folder.with_name(folder.name + "_probability").rglob("*.tif")]):
        with rasterio.open(path) as src:
            found[str(path.relative_to(folder.parent)).replace(folder.name, "OUT", 1)] = src.read(1)
    return found


def assert_same_maps(folder: Path, reference: Path) -> None:
    got, want = maps(folder), maps(reference)
    assert sorted(want) == sorted(f"OUT{suffix}/{n}.tif" for suffix in ("", "_probability") for n in [*SIZES, "tall"])
    assert sorted(got) == sorted(want)
    assert all(len(np.unique(want[f"OUT_probability/{n}.tif"])) > 10 for n in SIZES)  # maps worth comparing
    for name in want:
        assert np.array_equal(got[name], want[name]), name  # fp32, same windows in the same batches: byte-equal


def test_bands_recorded_but_not_joined_are_joined_by_the_next_run(archive, reference, tmp_path, monkeypatch, capsys):
    out = tmp_path / "tall.tif"  # one pair, a= b=: the run's files go beside out
    args = [f"checkpoint={archive / 'model.safetensors'}", f"a={archive / 't1' / 'tall.tif'}",
            f"b={archive / 't2' / 'tall.tif'}", f"out={out}", "probability=true", *SPLIT, *WINDOW]
    monkeypatch.setattr(run, "join", lambda *args: False)  # as if the joining process died before its lock
    assert predict.main(args) == 0
    parts = tmp_path / PARTS / "tall.tif"
    assert not out.exists() and len(list(parts.glob("rows*.tif"))) == 6  # 3 bands x (change, probability)
    assert capsys.readouterr().out.count(" rows ") == 3
    (parts / "join.lock").write_text("node0 12345\n")  # the lock the dead process left
    monkeypatch.undo()
    assert predict.main(args) == 0
    printed = capsys.readouterr().out
    assert "joined from 3 bands" in printed and " rows " not in printed  # no band run again
    for got, want in ((out, reference / "tall.tif"), (tmp_path / "tall_probability.tif",
                                                      reference.with_name("reference_probability") / "tall.tif")):
        with rasterio.open(got) as a, rasterio.open(want) as b:
            assert np.array_equal(a.read(1), b.read(1)) and a.transform == b.transform and a.crs == b.crs
    assert not parts.exists()
    assert [r["kind"] for r in read_jsonl(tmp_path / MANIFEST)] == ["band"] * 3 + ["scene"]


def test_dealing_gives_the_largest_first_to_the_least_loaded_rank():
    # 7 -> rank 0; 5 -> rank 1; 4 -> rank 1 (5 < 7); 3 -> rank 0 (7 < 9); 2 -> rank 1 (9 < 10): loads 10 and 11
    assert deal([3, 7, 2, 5, 4], 2) == [[1, 0], [3, 4, 2]]
    assert deal([5, 5, 5, 5], 3) == [[0, 3], [1], [2]]  # equal costs in index order, equal loads to the lower rank
    assert deal([1, 2], 4) == [[1], [0], [], []]
    assert deal([], 2) == [[], []]
    # 9 | 8, 7 | then 6 and 5 to rank 0 (9 < 15, then 15 = 15 to the lower rank), 4 to rank 1: loads 20 and 19
    assert deal([9, 8, 7, 6, 5, 4], 2) == [[0, 3, 4], [1, 2, 5]]


def test_bands_are_whole_block_rows_whatever_the_processes_and_run_the_rows_that_reach_into_them():
    windows = WindowSettings(256, 64, 8)  # block rows of 5 window rows, 192 apart: 960 px
    assert band_plan(*TALL, windows, 32, 960) == [Band(0, 1, 0, 960, 0), Band(1, 2, 960, 1760, 0),
                                                  Band(2, 3, 1760, 2000, 960)]  # row 960-1760's windows reach 1984
    assert band_plan(*TALL, windows, 32, 1800) == [Band(0, 2, 0, 1760, 0), Band(2, 3, 1760, 2000, 960)]
    assert band_plan(*TALL, windows, 32, 100) == band_plan(*TALL, windows, 32, 960)  # at least one block row
    assert band_plan(*TALL, windows, 32, 10_000) == [Band(0, 3, 0, 2000, 0)]


@pytest.mark.parametrize("rows, message", [
    ("t1/s1.tif\n", "line 1: expected a,b or a,b,out, got 1 field"),
    ("a,b\nt1/s1.tif,t2/s1.tif,s1.tif,extra\n", "line 2: expected a,b or a,b,out, got 4 fields"),
    ("# comment\n\nt1/s1.tif,,s1.tif\n", "line 3: an empty field"),
    ("t1/s1.tif,t2/missing.tif\n", "line 1: image not found: "),
    ("t1/s1.tif,t2/s1.tif,s1.jpg\n", "line 1: "),
    ("t1/s1.tif,t2/s1.tif,x.tif\nt1/s2.tif,t2/s2.tif,x.tif\n", "line 2: output "),
])
def test_bad_rows_of_a_pairs_file_name_the_file_and_line(archive, tmp_path, rows, message):
    listing = archive / f"{tmp_path.name}.csv"  # beside the dates, which its rows name relative to it
    listing.write_text(rows)
    with pytest.raises(DatasetError) as err:
        predict.main([f"checkpoint={archive / 'model.safetensors'}", f"pairs={listing}", f"out={tmp_path / 'out'}",
                      *WINDOW])
    text = str(err.value)
    assert f"{listing}, {message}" in text and "\n" not in text
    assert not (tmp_path / "out").exists()


def test_a_scene_in_bands_equals_the_scene_whole_and_a_rerun_skips_or_redoes(archive, reference, tmp_path, capsys):
    out = tmp_path / "out"
    args = [f"checkpoint={archive / 'model.safetensors'}", f"pairs={archive / 'pairs.csv'}", f"out={out}",
            "probability=true", *SPLIT, *WINDOW]
    assert predict.main(args) == 0
    assert "tall.tif: joined from 3 bands" in capsys.readouterr().out
    assert_same_maps(out, reference)
    assert not (out / PARTS).exists() or not any((out / PARTS).rglob("*"))  # the parts are gone once joined
    records = read_jsonl(out / MANIFEST)
    assert sorted(((r["key"], tuple(r["rows"]) if r["rows"] else None) for r in records), key=str) == sorted(
        [(f"{n}.tif", None) for n in [*SIZES, "tall"]] + [("tall.tif", rows) for rows in
                                                            [(0, 960), (960, 1760), (1760, 2000)]], key=str)
    scene = next(r for r in records if r["key"] == "s1.tif")
    assert scene["inputs"]["a"]["pixels"] == 600 * 500 and scene["settings"]["window"]["size"] == 256
    assert set(scene["outputs"]) == {"change", "probability"} and len(scene["outputs"]["change"]["sha256"]) == 64

    # A rerun skips every output: nothing is rewritten, nothing is recorded again.
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.tif")}
    assert predict.main(args) == 0
    assert "4 of 4 outputs already made" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.tif")} == stamps
    assert len(read_jsonl(out / MANIFEST)) == len(records)

    # A removed output is made again, alone; other settings redo everything and say why.
    (out / "s2.tif").unlink()
    assert predict.main(args) == 0
    printed = capsys.readouterr().out
    assert "s2.tif is missing or was rewritten" in printed and "3 of 4 outputs already made" in printed
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.tif") if p.name not in ("s2.tif", "s2_probability.tif")} == {
        p: t for p, t in stamps.items() if p.name not in ("s2.tif", "s2_probability.tif")}
    assert predict.main([*args, "window.overlap=96"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("the settings changed (window:") == 4 and "overlap': 64" in printed
    assert all(p.stat().st_mtime_ns != t for p, t in stamps.items() if p.name != "s2.tif" and "s2_" not in p.name)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the workers through /proc")
def test_two_ranks_get_the_largest_units_first_the_tall_scenes_bands_on_both(archive):
    """The plan rank 0 makes and broadcasts, made here for two ranks: who does what, in pixels run."""
    cfg = parse_command(predict.SPEC, [f"checkpoint={archive / 'model.safetensors'}", f"pairs={archive / 'pairs.csv'}",
                                       f"out={archive / 'planned'}", "probability=true", *SPLIT, *WINDOW])
    plan = make_plan(cfg, predict.load_predictor(cfg, torch.device("cpu")), 2)
    # LPT on the pixels each unit runs (a band with the block row above it that it runs again): band 960-1760 (rows
    # 0-1760) 528k -> 0, band 1760-2000 (rows 960-2000) 312k -> 1, s1 300k -> 1, band 0-960 288k -> 0, s2 150k -> 1,
    # s3 60k -> 1: the tall scene's bands on both ranks
    units = [[(plan.units[i].kind, plan.units[i].cost) for i in share] for share in plan.shares]
    assert units == [[("band", 528_000), ("band", 288_000)],
                     [("band", 312_000), ("scene", 300_000), ("scene", 150_000), ("scene", 60_000)]]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the workers through /proc")
def test_two_processes_and_a_killed_one_restarted_make_the_maps_of_one(archive, reference, tmp_path):
    """One torchrun launch of two ranks, rank 0 killed once the first piece of work is recorded: torchrun restarts
    the group, which redoes only what was in flight (nothing recorded is done twice), deals the rest between both
    ranks and ends with the maps of one process, the tall scene's bands included."""
    out = tmp_path / "killed"
    proc = launch(["-m", "densechange.finetune.predict", f"checkpoint={archive / 'model.safetensors'}",
                   f"pairs={archive / 'pairs.csv'}", "probability=true", *SPLIT, *WINDOW, f"out={out}"], restarts=1)
    deadline, killed = time.monotonic() + 200, None
    while killed is None and time.monotonic() < deadline and proc.poll() is None:
        if (out / MANIFEST).exists() and read_jsonl(out / MANIFEST, torn_tail=True):
            killed = worker_pids(proc.pid)[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.005)
    assert killed is not None, "the run ended before the test could kill a worker"
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    assert_same_maps(out, reference)
    records = read_jsonl(out / MANIFEST)
    ids = [(r["key"], tuple(r["rows"]) if r["rows"] else None) for r in records]
    assert len(ids) == len(set(ids)) == 7  # 3 scenes, 3 bands, the joined tall scene: each recorded once
    first = [r for r in records if r["attempt"] == 0]
    assert first and len(first) < 7  # the first attempt finished some work, the restart the rest
    log = [r for r in read_jsonl(out / LOG) if r["attempt"] == 1]
    assert sorted(r["rank"] for r in log) == [0, 1] and all(r["world_size"] == 2 for r in log)
    assert min(r["idle_s"] for r in log) == 0.0  # the last to finish waited for no one
    assert stdout.count("rank ") == 2  # each rank's line, once: the first attempt's ranks never reached the end
    done_first = sum(r["key"] != "tall.tif" or r["rows"] is not None for r in first)  # scenes and bands, not the join
    assert sum(r["scenes"] + r["bands"] for r in log) == 6 - done_first
    assert sum(r["joins"] for r in log) + sum(r["key"] == "tall.tif" and r["rows"] is None for r in first) == 1
