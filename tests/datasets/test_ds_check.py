"""check_dataset and the command line: every problem kind is found and names its file; real samples pass."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densechange.datasets.tools.check import Report, check_dataset
from densechange.datasets.io.images import read_georef

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
REPO = Path(__file__).resolve().parents[2]


def _save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _image(h: int = 16, w: int = 16, bands: int = 3) -> np.ndarray:
    return np.random.default_rng(h * w + bands).integers(0, 256, (h, w, bands), dtype=np.uint8).squeeze()


def _mask(h: int = 16, w: int = 16) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[4:10, 3:8] = 255
    return m


def _only(report: Report, kind: str) -> list:
    return [p for p in report.problems if p.kind == kind]


@pytest.fixture
def broken_image_mask(tmp_path: Path) -> Path:
    root = tmp_path / "im"
    for name in ("good", "size", "values", "empty", "corrupt", "unlisted"):
        _save(root / "A" / f"{name}.png", _image())
    for name in ("good", "corrupt"):
        _save(root / "label" / f"{name}.png", _mask())
    _save(root / "label" / "size.png", _mask(12, 16))
    _save(root / "label" / "values.png", (_mask() // 255) * 128)
    _save(root / "label" / "empty.png", np.zeros((16, 16), np.uint8))
    data = (root / "label" / "corrupt.png").read_bytes()
    (root / "label" / "corrupt.png").write_bytes(data[: len(data) // 2])
    (root / "list").mkdir()
    (root / "list" / "train.txt").write_text("good\nsize\nvalues\nempty\ncorrupt\nghost\n")
    return root


def test_each_image_mask_problem_is_reported_with_its_file(broken_image_mask: Path) -> None:
    report = check_dataset(broken_image_mask, mask_mode="binary255")
    assert report.kind == "image-mask" and report.fatal
    counts = report.counts()
    assert counts == {"size-mismatch": 1, "bad-values": 1, "empty-mask": 1, "unreadable": 1, "list-missing": 1,
                      "missing-pair": 1}
    assert _only(report, "size-mismatch")[0].path.endswith("label/size.png")
    assert "12x16" in _only(report, "size-mismatch")[0].message
    assert _only(report, "bad-values")[0].path.endswith("label/values.png")
    assert "128" in _only(report, "bad-values")[0].message
    empty = _only(report, "empty-mask")[0]
    assert empty.path.endswith("label/empty.png") and empty.severity == "warning"
    assert _only(report, "unreadable")[0].path.endswith("label/corrupt.png")
    listed = _only(report, "list-missing")[0]
    assert listed.path.endswith("list/train.txt") and "'ghost'" in listed.message and listed.severity == "error"
    unpaired = _only(report, "missing-pair")[0]
    # with list files an unlisted incomplete sample is never used: a warning, not an error
    assert unpaired.path.endswith("A/unlisted.png") and unpaired.severity == "warning" and "label/" in unpaired.message
    assert report.samples == 5 and report.sizes == {(16, 16): 5} and report.bands == {3: 5}
    # Only readable, size-matching, valid masks (good, empty) enter the histogram.
    assert report.class_pixels == {0: 2 * 256 - 30, 1: 30}
    # In auto mode 0/128 is read as class ids: not an error, but a warning about 129 mostly empty classes.
    auto = check_dataset(broken_image_mask)
    assert not _only(auto, "bad-values") and "129 classes" in _only(auto, "sparse-ids")[0].message


def test_warnings_alone_are_not_fatal(tmp_path: Path) -> None:
    _save(tmp_path / "image" / "a.tif", _image())
    _save(tmp_path / "mask" / "a.png", np.zeros((16, 16), np.uint8))
    (tmp_path / "image" / "a.tfw").write_text("0.5\n0\n0\n-0.5\n100\n200\n")  # a world file belongs to a.tif
    (tmp_path / "image" / "notes.txt").write_text("taken on a cloudy day")
    report = check_dataset(tmp_path)
    assert not report.fatal
    assert report.counts() == {"empty-mask": 1, "unsupported-file": 1}
    assert "notes.txt" in _only(report, "unsupported-file")[0].message
    assert "a.tfw" not in _only(report, "unsupported-file")[0].message
    assert read_georef(tmp_path / "image" / "a.tif").transform == (0.5, 0.0, 99.75, 0.0, -0.5, 200.25)
    assert report.format().endswith("result: OK")


def test_an_image_without_its_mask_is_fatal_without_list_files(tmp_path: Path) -> None:
    _save(tmp_path / "image" / "a.tif", _image())
    _save(tmp_path / "mask" / "a.png", _mask())
    _save(tmp_path / "image" / "lonely.png", _image())
    report = check_dataset(tmp_path)
    assert report.fatal and report.counts() == {"missing-pair": 1}
    problem = _only(report, "missing-pair")[0]
    assert problem.severity == "error" and problem.path.endswith("image/lonely.png")
    assert "mask/" in problem.message and "data.skip_incomplete=true" in problem.message


def test_band_mismatch_duplicates_and_sparse_ids(tmp_path: Path) -> None:
    _save(tmp_path / "A" / "rgb.png", _image())
    _save(tmp_path / "A" / "rgb.jpg", _image())
    _save(tmp_path / "A" / "rgb2.png", _image())
    _save(tmp_path / "A" / "grey.png", _image(bands=1))
    ids = _mask() // 255 * 2
    ids[0, 0] = 255
    for name in ("rgb", "rgb2", "grey"):
        _save(tmp_path / "label" / f"{name}.png", ids)
    report = check_dataset(tmp_path)
    assert report.fatal
    assert _only(report, "band-mismatch")[0].path.endswith("A/grey.png")
    assert _only(report, "duplicate-name")[0].path.endswith("A/rgb.png")  # rgb.jpg sorts first and is kept
    assert "data.ignore_value=255" in _only(report, "sparse-ids")[0].message
    assert report.class_pixels == {0: 3 * (256 - 30 - 1), 2: 3 * 30, 255: 3}
    ignored = check_dataset(tmp_path, ignore_value=255)
    assert not _only(ignored, "sparse-ids") and ignored.class_pixels[-1] == 3


def test_each_change_problem_is_reported_with_its_file(tmp_path: Path) -> None:
    root = tmp_path / "cd"
    for name in ("good", "shape", "labels", "corrupt", "incomplete"):
        _save(root / "train" / "A" / f"{name}.png", _image())
    for name in ("good", "labels", "corrupt"):
        _save(root / "train" / "B" / f"{name}.png", _image())
    _save(root / "train" / "B" / "shape.png", _image(16, 20))
    for name in ("good", "shape", "corrupt", "incomplete"):
        _save(root / "train" / "label" / f"{name}.png", _mask())
    _save(root / "train" / "label" / "labels.png", _mask() // 255 * 3)
    (root / "train" / "B" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    _save(root / "val" / "A" / "v.png", _image())
    _save(root / "val" / "B" / "v.png", _image())
    _save(root / "val" / "label" / "v.png", np.zeros((16, 16), np.uint8))
    report = check_dataset(root)
    assert report.kind == "change" and report.fatal
    assert report.counts() == {"size-mismatch": 1, "bad-values": 1, "unreadable": 1, "missing-pair": 1,
                               "empty-mask": 1}
    assert _only(report, "size-mismatch")[0].path.endswith("train/B/shape.png")
    assert "16x20x3" in _only(report, "size-mismatch")[0].message
    assert _only(report, "bad-values")[0].path.endswith("train/label/labels.png")
    assert _only(report, "unreadable")[0].path.endswith("train/B/corrupt.png")
    incomplete = _only(report, "missing-pair")[0]
    assert incomplete.path.endswith("train/A/incomplete.png") and incomplete.severity == "error"
    assert "B/" in incomplete.message
    assert _only(report, "empty-mask")[0].path.endswith("val/label/v.png")


def test_no_layout_is_fatal(tmp_path: Path) -> None:
    assert _only(check_dataset(tmp_path), "layout") and check_dataset(tmp_path / "missing").fatal
    (tmp_path / "A").mkdir()
    (tmp_path / "label").mkdir()
    assert _only(check_dataset(tmp_path), "no-samples")
    assert _only(check_dataset(tmp_path, kind="change"), "layout")


def test_cli_check_and_synth(tmp_path: Path, capsys: pytest.CaptureFixture, broken_image_mask: Path, cli) -> None:
    assert cli(["check", str(broken_image_mask), "data.mask_mode=binary255"]) == 1
    out = capsys.readouterr().out
    assert "label/corrupt.png" in out and "result: FAIL" in out and "problems: 4 errors, 2 warnings" in out
    assert cli(["synth", str(tmp_path / "syn"), "kind=change", "n=3", "size=48", "seed=1"]) == 0
    assert sorted(p.name for p in (tmp_path / "syn" / "A").iterdir()) == [f"synthetic_0000{i}.png" for i in range(3)]
    assert cli(["synth", str(tmp_path / "im"), "kind=image-mask", "n=2", "size=48"]) == 0
    capsys.readouterr()
    # The command as a user runs it: the suite's one ``densechange check`` in a process of its own (console script).
    done = subprocess.run([str(Path(sys.executable).parent / "densechange"), "check", str(tmp_path / "syn")], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "change, 3 samples read" in done.stdout and "bands: 3 (6)" in done.stdout


@pytest.mark.parametrize("name", ["inria-256", "spacenet-rio", "levir-cd-256", "levir-cd-1024"])
def test_real_samples_have_no_fatal_problem(name: str) -> None:
    root = DATA / name
    if not root.is_dir():
        pytest.skip(f"{name} sample data not available")
    report = check_dataset(root)
    assert not report.fatal, report.format()
    assert report.kind == ("change" if name.startswith("levir") else "image-mask")
    assert set(report.class_pixels) == {0, 1}
    empty = sorted(Path(p.path).stem.rsplit("_", 1)[-1] for p in report.problems if p.kind == "empty-mask")
    assert [p.kind for p in report.problems if p.kind != "empty-mask"] == (["no-lists"] if name.startswith("levir") else [])
    expected = {"spacenet-rio": ["img58", "img59", "img60", "img61", "img62"], "levir-cd-256": ["0768"]}
    assert empty == expected.get(name, [])
