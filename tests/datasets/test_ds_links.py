"""Symbolic links in a dataset: a folder link back into it is skipped once, named; every skipped file is named."""
from __future__ import annotations

import shutil
import warnings

from densechange.datasets.readers.locate import locate, split_folders
from densechange.datasets.readers.layouts import layout_named
from densechange.datasets.synthetic.samples import write_change_dataset
from densechange.datasets.tools.check import check_dataset


def _warnings(report, kind):
    return [p for p in report.problems if p.kind == kind]


def test_a_folder_link_back_into_the_dataset_is_skipped_and_named(tmp_path):
    root = write_change_dataset(tmp_path / "ds", 3, 32, 0)
    before, train = check_dataset(root, "change"), locate(root, "change", "train").names
    (root / "loopdir").symlink_to("../ds")  # ds/loopdir -> ../ds: the dataset inside itself
    (root / "A" / "up").symlink_to("../..")  # above the dataset: a loop through any walk
    report = check_dataset(root, "change")
    assert report.samples == before.samples == 3
    assert report.class_pixels == before.class_pixels
    loop, up = _warnings(report, "link-back")
    assert loop.path == str(root / "loopdir") and f"it leads to {root.resolve()})" in loop.message
    assert up.path == str(root / "A" / "up") and f"it leads to {tmp_path.resolve()})" in up.message
    assert split_folders(root, layout_named("levir-cd")) == []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = locate(root, "change", "train")
    assert found.names == train and len(train) == 2
    assert [str(w.message).split(":")[0] for w in caught] == [str(root / "loopdir"), str(root / "A" / "up")]


def test_a_folder_link_out_of_the_dataset_is_read(tmp_path):
    root = write_change_dataset(tmp_path / "ds", 2, 32, 0)
    for name in ("train", "test"):
        (root / name).mkdir()
        for folder in ("A", "B", "label"):
            shutil.copytree(root / folder, root / name / folder)
    elsewhere = tmp_path / "disk2" / "val"
    shutil.copytree(root / "test", elsewhere)
    (root / "val").symlink_to(elsewhere)
    assert split_folders(root, layout_named("levir-cd")) == ["test", "train", "val"]
    assert not _warnings(check_dataset(root, "change"), "link-back")


def test_every_skipped_file_is_named(tmp_path):
    root = write_change_dataset(tmp_path / "ds", 2, 32, 0)
    folder = root / "A"
    (folder / "loop.png").symlink_to("loop.png")
    (folder / "ping.png").symlink_to("pong.png")
    (folder / "pong.png").symlink_to("ping.png")
    (folder / "gone.png").symlink_to("nowhere.png")
    (folder / ".hidden.png").write_bytes(b"x")
    for i in range(7):
        (folder / f"notes_{i}.txt").write_text("not an image")
    report = check_dataset(root, "change")
    messages = {p.message for p in report.problems if p.path == str(folder)}
    assert "4 files links that loop or lead nowhere are skipped: gone.png, loop.png, ping.png, pong.png" in messages
    assert "1 files hidden are skipped: .hidden.png" in messages
    assert ("7 files of unsupported formats are skipped: " + ", ".join(f"notes_{i}.txt" for i in range(7))) in messages
    assert report.samples == 2 and not report.fatal
