"""The shipped registry is well formed; user registries extend it; bad entries are named."""

import json
import re

import pytest

from densechange.checkpoints import CheckpointError, build_encoder
from densechange.checkpoints.entry import IMPORTERS, parse_entry, parse_registry
from densechange.checkpoints.registry import find_entry, get_entry, load_registry, shipped_registry_text, split_sources

_GOOD = {
    "name": "mine", "url": "https://example.org/w/mine-0123abcd.pth", "sha256_prefix": "0123abcd",
    "backbone": "resnet18", "in_chans": 4, "bands": ["B", "G", "R", "N"], "mean": [0.1, 0.2, 0.3, 0.4],
    "std": [0.5, 0.5, 0.5, 0.5], "source": "https://example.org", "licence": "MIT", "importer": "torchvision",
}


def test_every_shipped_entry_is_well_formed():
    raw = json.loads(shipped_registry_text())
    entries = parse_registry(shipped_registry_text(), "shipped")
    assert len(entries) == len(raw["entries"]) >= 5
    assert len({e.name for e in entries}) == len(entries)
    for e in entries:
        assert re.fullmatch(r"[a-z0-9_]+", e.name), e.name
        assert e.url.startswith("https://"), e.name
        assert e.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", e.sha256), e.name
        published = re.search(r"-([0-9a-f]{8})\.pth$", e.url).group(1)
        assert e.hash_id.startswith(published), e.name  # the file name's hash agrees with ours
        if "hf.co/" in e.url or "huggingface.co/" in e.url:
            assert re.search(r"/resolve/[0-9a-f]{40}/", e.url), f"{e.name}: pin Hugging Face URLs to a commit"
        assert len(e.mean) == len(e.std) == e.in_chans == len(e.bands)
        assert all(s > 0 for s in e.std)
        assert e.importer in IMPORTERS and e.licence and e.source.startswith("https://")
        assert e.paper.startswith("https://arxiv.org/") and e.normalisation
    names = {e.name for e in entries}
    assert {"resnet18_imagenet", "resnet50_imagenet", "resnet18_sentinel2_rgb_moco",
            "resnet18_sentinel2_rgb_seco", "resnet50_fmow_rgb_gassl"} <= names


def test_imagenet_entries_carry_imagenet_statistics():
    for name in ("resnet18_imagenet", "resnet50_imagenet"):
        e = get_entry(name)
        assert e.mean == (0.485, 0.456, 0.406) and e.std == (0.229, 0.224, 0.225)
        assert e.importer == "torchvision" and e.sha256_prefix and e.sha256 is None


def test_entry_hash_matching():
    e = parse_entry(_GOOD, "t")
    assert e.matches("0123abcd" + "f" * 56) and not e.matches("f" * 64)
    full = parse_entry({**_GOOD, "sha256": "0123abcd" + "e" * 56, "sha256_prefix": None}, "t")
    assert full.matches("0123abcd" + "e" * 56) and not full.matches("0123abcd" + "f" * 56)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"url": "ftp://example.org/x-0123abcd.pth"}, "url must start with"),
        ({"sha256_prefix": "0123ABCD"}, "sha256_prefix must be 8 to 63 lowercase hex"),
        ({"sha256_prefix": None}, "give sha256"),
        ({"url": "https://example.org/w/mine.pth"}, "only accepted when the file name carries it"),
        ({"sha256_prefix": None, "sha256": "abc"}, "sha256 must be 64 lowercase hex"),
        ({"sha256_prefix": None, "sha256": "f" * 64}, "does not start with the hash 0123abcd"),
        ({"mean": [0.1, 0.2, 0.3]}, "mean has 3 values but in_chans is 4"),
        ({"bands": ["R"]}, "bands must list in_chans=4"),
        ({"importer": "caffe"}, "importer must be one of"),
        ({"name": "../escape"}, "name must be letters"),
        ({"licence": 3}, "licence must be a string"),
        ({"std": None}, "give both mean and std, or neither"),
        ({"colour": "red"}, r"unknown fields \['colour'\]"),
    ],
)
def test_bad_entries_are_named(change, message):
    raw = {k: v for k, v in {**_GOOD, **change}.items() if v is not None}
    with pytest.raises(CheckpointError, match=message) as info:
        parse_entry(raw, "my_registry.json")
    assert "my_registry.json" in str(info.value)


def test_missing_fields_are_listed():
    raw = {k: v for k, v in _GOOD.items() if k not in ("in_chans", "backbone")}
    with pytest.raises(CheckpointError, match=r"entry 'mine': missing fields \['backbone', 'in_chans'\]"):
        parse_entry(raw, "r.json")


def test_duplicate_names_in_one_file():
    text = json.dumps({"version": 1, "entries": [_GOOD, _GOOD]})
    with pytest.raises(CheckpointError, match=r"defines \['mine'\] more than once"):
        parse_registry(text, "r.json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        parse_registry("{", "r.json")


def test_env_list_splits_paths_but_not_urls():
    assert split_sources("a.json:https://x.org/r.json,b.json: hf://o/r/f.json") == [
        "a.json", "https://x.org/r.json", "b.json", "hf://o/r/f.json"]
    assert split_sources("") == []


def test_user_registries_add_and_replace_entries(tmp_path, monkeypatch):
    env_file = tmp_path / "env.json"
    env_file.write_text(json.dumps({"version": 1, "entries": [_GOOD]}))
    arg_file = tmp_path / "arg.json"
    mirror = {**_GOOD, "name": "resnet18_imagenet", "url": "https://mirror.example/resnet18-f37072fd.pth",
              "sha256_prefix": "f37072fd", "in_chans": 3, "bands": [], "mean": [0.5] * 3, "std": [0.5] * 3}
    arg_file.write_text(json.dumps({"version": 1, "entries": [mirror]}))
    monkeypatch.setenv("DENSECHANGE_REGISTRY", str(env_file))
    assert find_entry("mine").in_chans == 4
    assert find_entry("resnet18_imagenet").url.startswith("https://download.pytorch.org/")
    replaced = find_entry("resnet18_imagenet", extra=[str(arg_file)])
    assert replaced.url.startswith("https://mirror.example/") and replaced.origin == str(arg_file)
    assert len(load_registry(extra=[str(arg_file)])) == len(load_registry())
    with pytest.raises(CheckpointError, match="registry file .*nowhere.json does not exist"):
        load_registry(extra=[str(tmp_path / "nowhere.json")])


def test_unknown_names_and_sources_list_the_choices():
    with pytest.raises(CheckpointError, match="no registry entry 'nope'; known: resnet18_imagenet"):
        get_entry("nope")
    forms = "unknown encoder source 'nope'.*'random' or 'none', 'imagenet'.*resnet50_fmow_rgb_gassl"
    with pytest.raises(CheckpointError, match=forms):
        build_encoder("nope")
    with pytest.raises(CheckpointError, match="no weights file at .*absent.safetensors"):
        build_encoder("runs/absent.safetensors")
