"""ImageMaskDataset: layouts, list files, mask modes, seeded crops and padding, real samples."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from densechange.datasets import IGNORE_INDEX, DatasetError, ImageMaskDataset, ImageMaskOptions
from densechange.datasets.transforms.geometry import sample_rng

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _coords_image(h: int, w: int) -> np.ndarray:
    """uint8 image whose pixel (y, x) is (y, x, 7): a crop's position can be read off its pixels."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([yy, xx, np.full_like(yy, 7)], -1).astype(np.uint8)


def _write_pair(root: Path, name: str, image: np.ndarray, mask: np.ndarray, dirs=("A", "label"),
                image_ext: str = ".png", mask_ext: str = ".png") -> None:
    for sub in dirs:
        (root / sub).mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / dirs[0] / f"{name}{image_ext}")
    Image.fromarray(mask).save(root / dirs[1] / f"{name}{mask_ext}")


def _binary(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return (((yy // 4 + xx // 4) % 2) * 255).astype(np.uint8)


def test_sadl_layout_list_file_and_mixed_formats(tmp_path: Path) -> None:
    img, mask = _coords_image(16, 24), _binary(16, 24)
    _write_pair(tmp_path, "t1", img, mask, mask_ext=".tif")
    _write_pair(tmp_path, "t2", img[::-1].copy(), mask)
    _write_pair(tmp_path, "t3", img, mask)
    (tmp_path / "list").mkdir()
    (tmp_path / "list" / "train.txt").write_text("t2.png\n\nt1\n")
    (tmp_path / "list" / "val.txt").write_text("t3\n")
    ds = ImageMaskDataset(tmp_path, "train")
    assert ds.names == ["t2", "t1"] and len(ds) == 2
    s = ds[1]
    assert s["name"] == "t1" and s["image"].dtype == torch.float32 and s["mask"].dtype == torch.int64
    np.testing.assert_array_equal(s["image"].numpy(), img.transpose(2, 0, 1) / np.float32(255))
    np.testing.assert_array_equal(s["mask"].numpy(), mask // 255)
    assert ImageMaskDataset(tmp_path, "val").names == ["t3"]
    assert ImageMaskDataset(tmp_path).names == ["t1", "t2", "t3"]
    with pytest.raises(DatasetError, match=r"test.txt.*\['train', 'val'\]"):
        ImageMaskDataset(tmp_path, "test")


def test_image_mask_layout_without_lists_refuses_unpaired_unless_told(tmp_path: Path) -> None:
    img, mask = _coords_image(8, 8), _binary(8, 8)
    _write_pair(tmp_path, "b", img, mask, dirs=("image", "mask"))
    _write_pair(tmp_path, "a", img, mask, dirs=("image", "mask"))
    Image.fromarray(img).save(tmp_path / "image" / "lonely.jpg")
    (tmp_path / "image" / "notes.txt").write_text("not an image")
    with pytest.raises(DatasetError, match=r"1 samples lack a partner file: image/lonely.jpg \(no mask/\).*skip_incomplete"):
        ImageMaskDataset(tmp_path, "train")
    with pytest.warns(UserWarning, match="skipping 1 samples that lack a partner file"):
        ds = ImageMaskDataset(tmp_path, "train", ImageMaskOptions(skip_incomplete=True))
    assert ds.names == ["a", "b"]


def test_layout_errors_say_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        ImageMaskDataset(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="A/ \\+ .*label/ or .*image/ \\+ .*mask/"):
        ImageMaskDataset(tmp_path)
    (tmp_path / "A").mkdir()
    (tmp_path / "label").mkdir()
    Image.fromarray(_coords_image(4, 4)).save(tmp_path / "A" / "x.png")
    with pytest.raises(DatasetError, match=r"A/x.png \(no label/\)"):
        ImageMaskDataset(tmp_path)
    with pytest.raises(DatasetError, match="no image with a mask"), pytest.warns(UserWarning, match="skipping 1"):
        ImageMaskDataset(tmp_path, options=ImageMaskOptions(skip_incomplete=True))
    (tmp_path / "list").mkdir()
    (tmp_path / "list" / "train.txt").write_text("x\n")
    with pytest.raises(DatasetError, match="train.txt.*x"):
        ImageMaskDataset(tmp_path, "train")


def test_mask_values_and_sizes_checked_per_file(tmp_path: Path) -> None:
    _write_pair(tmp_path, "odd", _coords_image(8, 8), np.array([[0, 128]] * 8, np.uint8).repeat(4, 1))
    _write_pair(tmp_path, "small", _coords_image(8, 8), _binary(4, 8))
    ds = ImageMaskDataset(tmp_path, options=ImageMaskOptions(mask_mode="binary255"))
    with pytest.raises(DatasetError, match="odd.png.*128"):
        ds[0]
    with pytest.raises(DatasetError, match="small.png.*8x8.*4x8"):
        ds[1]
    with pytest.raises(DatasetError, match="mask_mode"):
        ImageMaskDataset(tmp_path, options=ImageMaskOptions(mask_mode="binary"))


def test_ignore_value_and_num_classes(tmp_path: Path) -> None:
    ids = np.array([[0, 1, 2, 255], [3, 0, 255, 1]], np.uint8)
    _write_pair(tmp_path, "ids", _coords_image(2, 4), ids)
    ds = ImageMaskDataset(tmp_path, options=ImageMaskOptions(ignore_value=255))
    assert ds[0]["mask"].tolist() == [[0, 1, 2, IGNORE_INDEX], [3, 0, IGNORE_INDEX, 1]]
    assert ds.num_classes == 4
    assert ImageMaskDataset(tmp_path, options=ImageMaskOptions(ignore_value=255, num_classes=6)).num_classes == 6
    with pytest.raises(DatasetError, match=r"ids.png: unexpected mask values 3\b"):
        ImageMaskDataset(tmp_path, options=ImageMaskOptions(mask_mode="ids", ignore_value=255, num_classes=3))[0]
    _write_pair(tmp_path / "bin", "m", _coords_image(2, 4), ids.clip(0, 1) * 255)
    assert ImageMaskDataset(tmp_path / "bin").num_classes == 2


def test_crop_is_seeded_by_seed_epoch_index(tmp_path: Path) -> None:
    for k in range(4):
        _write_pair(tmp_path, f"t{k}", _coords_image(100, 120), _binary(100, 120))
    ds = ImageMaskDataset(tmp_path, options=ImageMaskOptions(crop_size=32, seed=5))
    ds.set_epoch(3)
    s = ds[2]
    u = sample_rng(5, 3, 2).random(5)
    top, left = int(u[0] * (100 - 32 + 1)), int(u[1] * (120 - 32 + 1))
    assert s["image"].shape == (3, 32, 32) and s["mask"].shape == (32, 32)
    img = (s["image"] * 255).round().long()
    assert img[0, 0, 0].item() == top and img[1, 0, 0].item() == left
    np.testing.assert_array_equal(s["mask"].numpy(), _binary(100, 120)[top : top + 32, left : left + 32] // 255)
    # Same crops from a fresh dataset in another order, and from two DataLoader workers.
    again = ImageMaskDataset(tmp_path, options=ImageMaskOptions(crop_size=32, seed=5))
    again.set_epoch(3)
    assert torch.equal(again[2]["image"], s["image"])
    single = [b["image"] for b in DataLoader(ds, batch_size=2, num_workers=0)]
    multi = [b["image"] for b in DataLoader(ds, batch_size=2, num_workers=2)]
    assert all(torch.equal(x, y) for x, y in zip(single, multi))
    ds.set_epoch(4)
    corners = {tuple((ds[i]["image"][:2, 0, 0] * 255).round().tolist()) for i in range(4)}
    ds.set_epoch(3)
    corners_3 = {tuple((ds[i]["image"][:2, 0, 0] * 255).round().tolist()) for i in range(4)}
    assert corners != corners_3


def test_small_images_are_padded(tmp_path: Path) -> None:
    img, mask = _coords_image(20, 40), _binary(20, 40)
    _write_pair(tmp_path, "small", img, mask)
    s = ImageMaskDataset(tmp_path, options=ImageMaskOptions(crop_size=32))[0]
    assert s["image"].shape == (3, 32, 32)
    u = sample_rng(0, 0, 0).random(5)
    left = int(u[1] * (40 - 32 + 1))
    np.testing.assert_array_equal((s["image"][:, :20] * 255).round().byte().numpy(),
                                  img[:, left : left + 32].transpose(2, 0, 1))
    assert (s["image"][:, 20:] == 0).all()
    assert (s["mask"][20:] == IGNORE_INDEX).all()
    np.testing.assert_array_equal(s["mask"][:20].numpy(), mask[:, left : left + 32] // 255)


def test_plot_sizes(tmp_path: Path) -> None:
    _write_pair(tmp_path, "x", _coords_image(10, 12), _binary(10, 12))
    ds = ImageMaskDataset(tmp_path)
    s = ds[0]
    assert ds.plot(s).size == (2 * 12 + 4, 10)
    pic = ds.plot(s, prediction=torch.randn(2, 10, 12))
    assert isinstance(pic, Image.Image) and pic.size == (3 * 12 + 8, 10)


def test_inria_samples() -> None:
    root = DATA / "inria-256"
    if not root.is_dir():
        pytest.skip("inria-256 sample data not available")
    ds = ImageMaskDataset(root)
    assert len(ds) == 8 and ds.num_classes == 2
    s = ds[0]
    assert s["image"].shape == (3, 256, 256) and 0 <= s["image"].min() and s["image"].max() <= 1
    fg = torch.stack([ds[i]["mask"] for i in range(len(ds))]).float().mean().item()
    assert 0.01 < fg < 0.5
    assert set(torch.cat([ds[i]["mask"].unique() for i in range(len(ds))]).tolist()) == {0, 1}


def test_spacenet_geotiffs_with_empty_masks() -> None:
    root = DATA / "spacenet-rio"
    if not root.is_dir():
        pytest.skip("spacenet-rio sample data not available")
    ds = ImageMaskDataset(root)
    assert len(ds) == 15 and ds.num_classes == 2
    samples = [ds[i] for i in range(len(ds))]
    assert all(s["image"].shape[1:] == s["mask"].shape and s["image"].shape[0] == 3 for s in samples)
    empty = [s["name"].rsplit("_", 1)[1] for s in samples if s["mask"].max() <= 0]
    assert empty == ["img58", "img59", "img60", "img61", "img62"]
    assert samples[8]["image"].abs().sum() == 0  # img58 is all no-data
    crops = ImageMaskDataset(root, options=ImageMaskOptions(crop_size=256, seed=1))
    assert len(crops) == 15 * 3  # 438x406 is about three 256x256 tiles
    crop = crops[int(crops.plan.ends[7])]  # the first crop of the ninth image
    assert crop["name"].endswith("img58")
    assert crop["image"].shape == (3, 256, 256) and (crop["mask"] == 0).all()


def test_auto_mode_is_decided_once_for_the_whole_dataset(tmp_path):
    """A 0/255 file next to a file with a stray value must not read 255 two different ways."""
    import numpy as np
    import pytest
    from PIL import Image

    from densechange.datasets import DatasetError, ImageMaskDataset, check_dataset

    (tmp_path / "A").mkdir()
    (tmp_path / "label").mkdir()
    for name, extra in (("a", None), ("b", 128)):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "A" / f"{name}.png")
        m = np.zeros((8, 8), np.uint8)
        m[:4] = 255
        if extra is not None:
            m[7, 0] = extra
        Image.fromarray(m).save(tmp_path / "label" / f"{name}.png")
    with pytest.raises(DatasetError, match="ignore_value=255"):
        ImageMaskDataset(tmp_path).num_classes
    report = check_dataset(tmp_path)
    assert report.fatal and any(p.kind == "mixed-mask-modes" for p in report.problems)
    # two binary conventions in one folder: 0/1 and 0/255 together are also refused by check
    Image.fromarray((np.arange(64).reshape(8, 8) % 2).astype(np.uint8)).save(tmp_path / "label" / "b.png")
    assert any(p.kind == "mixed-mask-modes" for p in check_dataset(tmp_path).problems)


def test_list_file_with_byte_order_mark_and_grey_alpha_mask(tmp_path):
    import numpy as np
    from PIL import Image

    from densechange.datasets import ImageMaskDataset

    (tmp_path / "A").mkdir()
    (tmp_path / "label").mkdir()
    (tmp_path / "list").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "A" / "ok.png")
    m = np.zeros((8, 8), np.uint8)
    m[2:5, 2:5] = 255
    Image.fromarray(np.stack([m, np.full_like(m, 255)], -1), "LA").save(tmp_path / "label" / "ok.png")
    (tmp_path / "list" / "train.txt").write_bytes(b"\xef\xbb\xbfok.png\r\n\r\n")
    ds = ImageMaskDataset(tmp_path, "train")
    assert ds.names == ["ok"] and ds.num_classes == 2
    assert int(ds[0]["mask"].sum()) == 9
