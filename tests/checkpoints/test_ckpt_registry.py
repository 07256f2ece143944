"""The shipped registry is well formed; user registries extend it; bad entries are named."""

import json
import re
import time

import pytest

from densechange.checkpoints import CheckpointError, build_encoder
from densechange.checkpoints.entry import IMPORTERS, duplicates, parse_entry, parse_registry
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
        ({"colour": "red"}, r"has unknown field colour; known: backbone, bands"),
        ({"neck_channels": "abc"}, "neck_channels must be an integer, got 'abc'"),
        ({"neck_channels": -5}, "neck_channels must be an integer from 1 to 16384, got -5"),
        ({"in_chans": 1e9}, "in_chans must be an integer, got 1000000000.0"),
        ({"in_chans": 10**9}, "in_chans must be an integer from 1 to 1024"),
        ({"bands": 4}, "bands must be a list, got 4"),
        ({"bands": ["B", "G", "R", 4]}, r"bands\[3\] must be a string, got 4"),
        ({"mean": [0.1, float("nan"), 0.3, 0.4]}, r"mean\[1\] must be a finite number, got nan"),
        ({"std": [0.5, 0.5, 0.0, 0.5]}, r"std\[2\] must be a positive number, got 0.0"),
        ({"std": [0.5, 0.5, -1, 0.5]}, r"std\[2\] must be a positive number, got -1"),
        ({"size": True}, "size must be an integer, got True"),
        ({"backbone": "hf-hub:org/model"}, "backbone must be a timm model name"),
        ({"name": ["x"]}, "name must be a string"),
    ],
)
def test_bad_entries_are_named(change, message):
    raw = {k: v for k, v in {**_GOOD, **change}.items() if v is not None}
    with pytest.raises(CheckpointError, match=message) as info:
        parse_entry(raw, "my_registry.json")
    assert "my_registry.json" in str(info.value)


def test_a_null_where_a_number_belongs_is_named():
    with pytest.raises(CheckpointError, match="entry 'mine': neck_channels must be an integer, got None"):
        parse_entry({**_GOOD, "neck_channels": None}, "r.json")
    assert parse_entry({**_GOOD, "size": None}, "r.json").size is None  # optional fields may be null


def test_missing_fields_are_listed():
    raw = {k: v for k, v in _GOOD.items() if k not in ("in_chans", "backbone")}
    with pytest.raises(CheckpointError, match=r"entry 'mine': lacks the fields backbone, in_chans"):
        parse_entry(raw, "r.json")


def test_duplicate_names_in_one_file():
    text = json.dumps({"version": 1, "entries": [_GOOD, _GOOD]})
    with pytest.raises(CheckpointError, match=r"defines \['mine'\] more than once \('mine' at entries 0, 1\)"):
        parse_registry(text, "r.json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        parse_registry("{", "r.json")


def test_duplicates_are_found_in_linear_time():
    """The old check counted every name against the list: 40,000 entries took 24-30 s, 180,000 never ended.

    One pass over 180,000 names takes well under a second (quadratic counting: 3e10 comparisons).
    """
    names = [f"e{i}" for i in range(180_000)] + ["e17", "e5", "e17"]
    started = time.perf_counter()
    assert duplicates(names) == {"e17": [17, 180_000, 180_002], "e5": [5, 180_001]}
    assert time.perf_counter() - started < 5.0
    entries = [{**_GOOD, "name": f"e{i}"} for i in range(3000)] + [{**_GOOD, "name": "e17"}]
    text = json.dumps({"version": 1, "entries": entries})
    with pytest.raises(CheckpointError, match=r"defines \['e17'\] more than once \('e17' at entries 17, 3000\)"):
        parse_registry(text, "big.json")


@pytest.mark.parametrize("text, message", [
    ("[" * 100_000 + "]" * 100_000, "nested deeper than 32 levels"),
    ('{"version": 1, "entries": [' + "[" * 900 + "]" * 900 + "]}", r"entry '\?': must be a JSON object, got a list"),
    (b'{"version": 1, "entries": [{"name": "\xff"}]}', r"not UTF-8 text \(byte 37"),
    ('{"version": 1, "entries": [NaN]}', "not valid JSON: NaN is not a JSON number"),
    ('{"version": 1, "entries": [' + "9" * 5000 + "]}", "not valid JSON"),
    ('{"version": true, "entries": []}', "has version True"),
    ('{"entries": {}}', "must be a JSON object with an 'entries' list"),
    ('{"version": 1, "entries": [{"name": "x", "url": {"a": [[[]]]}, "backbone": "b", "in_chans": 3}]}',
     "entry 'x': url must be a string, got a JSON object of 1 fields"),
])
def test_malformed_registry_files_are_one_clear_error(text, message):
    with pytest.raises(CheckpointError, match=message) as info:
        parse_registry(text, "bad.json")
    assert "registry bad.json" in str(info.value)


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
