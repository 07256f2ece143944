"""ChangeDataset: both layouts, labels, shared geometry of the two dates, list_pairs, real LEVIR-CD samples."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from densechange.datasets import IGNORE_INDEX, ChangeDataset, ChangeOptions, DatasetError, list_pairs
from densechange.datasets.transforms.geometry import Geometry, apply_geometry, draw_geometry, sample_rng

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _coords(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([yy, xx, np.full_like(yy, 9)], -1).astype(np.uint8)


def _pattern(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    return ((yy * 7 + xx * 3) % 5 == 0).astype(np.uint8)


def _write_triple(folder: Path, name: str, h: int = 40, w: int = 48, label_scale: int = 255,
                  b_size: tuple[int, int] | None = None) -> None:
    for sub in ("A", "B", "label"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    a = _coords(h, w)
    Image.fromarray(a).save(folder / "A" / f"{name}.png")
    Image.fromarray(255 - (_coords(*b_size) if b_size else a)).save(folder / "B" / f"{name}.png")
    yy, xx = np.mgrid[0:h, 0:w]
    Image.fromarray(_pattern(yy, xx) * np.uint8(label_scale)).save(folder / "label" / f"{name}.png")


def test_bit_layout_with_lists(tmp_path: Path) -> None:
    for n in ("p0", "p1", "p2", "p3"):
        _write_triple(tmp_path, n)
    (tmp_path / "list").mkdir()
    (tmp_path / "list" / "train.txt").write_text("p2\np0.png\n")
    (tmp_path / "list" / "val.txt").write_text("p1\n")
    (tmp_path / "list" / "test.txt").write_text("p3\n")
    ds = ChangeDataset(tmp_path, "train")
    assert ds.names == ["p2", "p0"] and ChangeDataset(tmp_path, "test").names == ["p3"]
    s = ds[0]
    assert set(s) == {"a", "b", "label", "name"} and s["name"] == "p2"
    np.testing.assert_allclose(s["a"].numpy() + s["b"].numpy(), 1.0, atol=1e-6)
    yy, xx = np.mgrid[0:40, 0:48]
    np.testing.assert_array_equal(s["label"].numpy(), _pattern(yy, xx))
    assert s["label"].dtype == torch.int64 and s["a"].shape == (3, 40, 48)


def test_levir_layout_and_missing_split(tmp_path: Path) -> None:
    _write_triple(tmp_path / "train", "t0")
    _write_triple(tmp_path / "train", "t1")
    _write_triple(tmp_path / "val", "v0", label_scale=1)
    assert ChangeDataset(tmp_path, "train").names == ["t0", "t1"]
    val = ChangeDataset(tmp_path, "val")
    assert val.names == ["v0"] and val[0]["label"].max().item() == 1
    with pytest.raises(DatasetError, match=r"no test/ folder.*\['train', 'val'\]"):
        ChangeDataset(tmp_path, "test")
    with pytest.raises(DatasetError, match="not found"):
        ChangeDataset(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no change-detection layout"):
        ChangeDataset(tmp_path / "empty")


def test_folder_without_lists_uses_complete_triples_when_told(tmp_path: Path) -> None:
    _write_triple(tmp_path, "full")
    _write_triple(tmp_path, "partial")
    (tmp_path / "B" / "partial.png").unlink()
    with pytest.warns(UserWarning, match="skipping 1 samples"):
        assert ChangeDataset(tmp_path, "val", ChangeOptions(skip_incomplete=True)).names == ["full"]


def test_label_values_ignore_and_size_mismatch(tmp_path: Path) -> None:
    _write_triple(tmp_path, "pair")
    label = np.array(Image.open(tmp_path / "label" / "pair.png"))
    label[0, :5] = 7
    Image.fromarray(label).save(tmp_path / "label" / "pair.png")
    with pytest.raises(DatasetError, match=r"pair.png: unexpected change-label values 7\b"):
        ChangeDataset(tmp_path)[0]
    s = ChangeDataset(tmp_path, options=ChangeOptions(ignore_value=7))[0]
    assert s["label"][0, :5].tolist() == [IGNORE_INDEX] * 5
    _write_triple(tmp_path / "bad", "shifted", b_size=(40, 40))
    with pytest.raises(DatasetError, match="A/shifted.png is 40x48x3 but .*B/shifted.png is 40x40x3"):
        ChangeDataset(tmp_path / "bad")[0]


def test_apply_geometry_hand_computed() -> None:
    x = np.array([[1, 2, 3], [4, 5, 6]])
    assert apply_geometry(x, Geometry(hflip=True), None, 0).tolist() == [[3, 2, 1], [6, 5, 4]]
    assert apply_geometry(x, Geometry(vflip=True), None, 0).tolist() == [[4, 5, 6], [1, 2, 3]]
    assert apply_geometry(x, Geometry(rot90=1), None, 0).tolist() == [[3, 6], [2, 5], [1, 4]]
    # crop columns 1:3 -> [[2, 3], [5, 6]], pad to 3x3 with -1, mirror, then turn half way round.
    out = apply_geometry(x, Geometry(left=1, hflip=True, rot90=2), 3, -1)
    assert out.tolist() == [[-1, -1, -1], [5, 6, -1], [2, 3, -1]]


def test_same_geometry_for_both_dates_and_label(tmp_path: Path) -> None:
    _write_triple(tmp_path, "big", h=90, w=70)
    ds = ChangeDataset(tmp_path, options=ChangeOptions(crop_size=32, flip=True, rot90=True, seed=3))
    plain = ChangeDataset(tmp_path, options=ChangeOptions(crop_size=32, seed=3))
    orientations = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        plain.set_epoch(epoch)
        s, p = ds[0], plain[0]
        a = (s["a"] * 255).round().long()
        assert torch.equal(a + (s["b"] * 255).round().long(), torch.full_like(a, 255))
        yy, xx = a[0].numpy(), a[1].numpy()
        np.testing.assert_array_equal(s["label"].numpy(), _pattern(yy, xx))
        # Flips and turns never move the crop: both datasets see the same 32x32 window.
        pa = (p["a"] * 255).round().long()
        assert (yy.min(), xx.min()) == (pa[0].min().item(), pa[1].min().item())
        g = draw_geometry(sample_rng(3, epoch, 0), 90, 70, 32, flip=True, rot90=True)
        assert (yy.min(), xx.min()) == (g.top, g.left)
        orientations.add((int(yy[0, 0] - yy.min()), int(xx[0, 0] - xx.min()), int(yy[0, 1]) - int(yy[0, 0])))
    assert len(orientations) >= 4


def test_list_pairs(tmp_path: Path) -> None:
    for sub, names in (("t1", ["x.png", "y.tif", "z.png"]), ("t2", ["y.png", "x.jpg", "w.png"])):
        (tmp_path / sub).mkdir()
        for n in names:
            Image.fromarray(_coords(4, 4)).save(tmp_path / sub / n)
    pairs = list_pairs(tmp_path / "t1", tmp_path / "t2")
    assert [(a.name, b.name, n) for a, b, n in pairs] == [("x.png", "x.jpg", "x"), ("y.tif", "y.png", "y")]
    with pytest.raises(DatasetError, match="t3: folder not found"):
        list_pairs(tmp_path / "t1", tmp_path / "t3")


def test_plot(tmp_path: Path) -> None:
    _write_triple(tmp_path, "p", h=10, w=12)
    ds = ChangeDataset(tmp_path)
    assert ds.plot(ds[0]).size == (3 * 12 + 8, 10)
    assert ds.plot(ds[0], prediction=ds[0]["label"]).size == (4 * 12 + 12, 10)


def test_levir_cd_256_without_lists() -> None:
    root = DATA / "levir-cd-256"
    if not root.is_dir():
        pytest.skip("levir-cd-256 sample data not available")
    ds = ChangeDataset(root, "train")
    assert len(ds) == 11
    changed = {ds.names[i]: ds[i]["label"].sum().item() for i in range(len(ds))}
    assert changed["train_386_0512_0768"] == 0
    assert sum(v > 0 for v in changed.values()) == 10
    s = ds[0]
    assert s["a"].shape == s["b"].shape == (3, 256, 256) and set(s["label"].unique().tolist()) <= {0, 1}


def test_levir_cd_1024_crops_match_the_256_tiles() -> None:
    big, small = DATA / "levir-cd-1024", DATA / "levir-cd-256"
    if not (big.is_dir() and small.is_dir()):
        pytest.skip("levir-cd sample data not available")
    ds = ChangeDataset(big, "test", ChangeOptions(crop_size=256, flip=True, rot90=True, seed=0))
    assert len(ds) == 3 * 16  # as many crops as 256 tiles would cover the three 1024 tiles
    assert [ds.plan.file_of(i) for i in (0, 15, 16, 47)] == [0, 0, 1, 2]
    s = ds[16 * ds.names.index("test_7")]
    assert s["name"] == "test_7" and s["a"].shape == (3, 256, 256) and s["label"].shape == (256, 256)
    # The 256 tile test_7_0256_0512 is rows 256:512, columns 512:768 of the 1024 tile.
    full = ChangeDataset(big, "test")[ds.names.index("test_7")]
    tile = ChangeDataset(small, "test")[ChangeDataset(small).names.index("test_7_0256_0512")]
    assert torch.equal(full["a"][:, 256:512, 512:768], tile["a"])
    assert torch.equal(full["label"][256:512, 512:768], tile["label"])


def test_a_pair_without_a_partner_is_an_error_that_names_it(tmp_path: Path) -> None:
    from PIL import Image as PILImage

    rgb = np.zeros((8, 8, 3), np.uint8)
    for name in ("p1", "p2"):
        for sub in ("A", "B"):
            (tmp_path / sub).mkdir(exist_ok=True)
            PILImage.fromarray(rgb).save(tmp_path / sub / f"{name}.png")
        (tmp_path / "label").mkdir(exist_ok=True)
        PILImage.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "label" / f"{name}.png")
    PILImage.fromarray(rgb).save(tmp_path / "A" / "orphan.png")
    PILImage.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "label" / "orphan.png")
    with pytest.raises(DatasetError, match=r"A/orphan.png \(no B/\)"):
        ChangeDataset(tmp_path, "train")
    with pytest.warns(UserWarning, match="skipping 1 samples"):
        ds = ChangeDataset(tmp_path, "train", ChangeOptions(skip_incomplete=True))
    assert ds.names == ["p1", "p2"]
