"""Checkpoint metadata is data: checked against its kind's schema, and an edited file is refused unless trusted.

Files are edited the way an attacker or a careless hand would: the metadata JSON in the
safetensors header is rewritten, with the metadata digest left as it was (an edit) or recomputed
(a forger, which only the schema can stop).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file as st_save_file

from densechange.checkpoints import CheckpointError, load_encoder, read_metadata, save_encoder
from densechange.checkpoints.format import META_DIGEST_KEY, META_KEY, load_file, metadata_digest, metadata_status
from densechange.models import Encoder


@pytest.fixture(scope="module")
def encoder_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("meta") / "encoder.safetensors"
    torch.manual_seed(0)
    save_encoder(path, Encoder("test_resnet", neck_channels=8), mean=[0.4, 0.45, 0.5], std=[0.2, 0.25, 0.3],
                 config={"data": {"root": "synthetic"}}, extra={"method": "sadl", "steps": 4})
    return path


def rewrite(src: Path, dst: Path, edit: Callable[[dict], Any], *, digest: str = "keep") -> Path:
    """Copy ``src`` to ``dst`` with ``edit(meta)`` as its metadata; ``digest``: keep | recompute | drop."""
    with safe_open(str(src), framework="pt") as f:
        header = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta = json.loads(header[META_KEY])
    edited = edit(meta)
    header[META_KEY] = edited if isinstance(edited, str) else json.dumps(meta if edited is None else edited)
    if digest == "recompute":
        header[META_DIGEST_KEY] = metadata_digest(header)
    elif digest == "drop":
        header.pop(META_DIGEST_KEY)
    st_save_file(tensors, str(dst), metadata=header)
    return dst


def _set(path: str, value: Any) -> Callable[[dict], None]:
    def edit(meta: dict) -> None:
        *parents, last = path.split(".")
        node = meta
        for key in parents:
            node = node[key]
        node[last] = value
    return edit


def test_an_intact_file_loads_and_says_so(encoder_file):
    with safe_open(str(encoder_file), framework="pt") as f:
        assert metadata_status(f.metadata()) == "intact"
    encoder = load_encoder(encoder_file)
    assert encoder.in_chans == 3 and read_metadata(encoder_file)["std"] == [0.2, 0.25, 0.3]


def test_an_edited_std_is_refused_and_trust_does_not_let_zero_through(encoder_file, tmp_path):
    """The file of the report: std edited to zeros predicted '0.00% changed' with exit 0."""
    edited = rewrite(encoder_file, tmp_path / "edited.safetensors", _set("std", [0, 0, 0]))
    with pytest.raises(CheckpointError, match="metadata was changed after the file was written.*trust_edited=true"):
        load_encoder(edited)
    with pytest.warns(UserWarning, match="edited after the file was written; loading it because trust_edited"):
        with pytest.raises(CheckpointError, match=r"edited.safetensors: metadata field std\[0\] must be a positive"):
            load_encoder(edited, trust_edited=True)


def test_a_trusted_edit_loads_with_a_warning(encoder_file, tmp_path, cli, capsys):
    edited = rewrite(encoder_file, tmp_path / "edited.safetensors", _set("std", [0.3, 0.3, 0.3]))
    with pytest.warns(UserWarning, match="trust_edited is set"):
        assert read_metadata(edited, trust_edited=True)["std"] == [0.3, 0.3, 0.3]
    assert cli(["weights", "inspect", edited]) == 2
    assert "trust_edited=true" in capsys.readouterr().err
    with pytest.warns(UserWarning):
        assert cli(["weights", "inspect", edited, "trust_edited=true"]) == 0
    assert "metadata: EDITED after the file was written" in capsys.readouterr().out


def test_files_without_a_metadata_digest_load_with_a_note(encoder_file, tmp_path, cli, capsys):
    """Files written before the digest existed: accepted, checked as data, with a warning once per file."""
    old = rewrite(encoder_file, tmp_path / "old.safetensors", lambda meta: None, digest="drop")
    with pytest.warns(UserWarning, match="written before checkpoints carried a metadata digest"):
        reloaded = load_encoder(old)
    assert torch.equal(reloaded.state_dict()["neck.lateral.0.weight"],
                       load_encoder(encoder_file).state_dict()["neck.lateral.0.weight"])
    assert cli(["weights", "inspect", old]) == 0
    assert "metadata: no metadata digest" in capsys.readouterr().out


@pytest.mark.parametrize("field, value, message", [
    ("mean", "abc", "mean must be a list, got 'abc'"),
    ("mean", [0.1, "x", 0.3], r"mean\[1\] must be a number, got 'x'"),
    ("std", [0.2, 0.0, 0.3], r"std\[1\] must be a positive number, got 0.0"),
    ("in_chans", "3", "in_chans must be an integer, got '3'"),
    ("in_chans", 1e9, "in_chans must be an integer, got 1000000000.0"),
    ("neck.channels", -5, "neck.channels must be an integer from 1 to 16384, got -5"),
    ("neck", "fpn", "neck must be a JSON object, got 'fpn'"),
    ("backbone", "hf-hub:someone/model", "backbone must be a timm model name"),
    ("backbone_args", {"checkpoint_path": "/etc/passwd"}, "backbone_args may not set checkpoint_path"),
    ("steps", "many", "steps must be an integer"),
    ("hardware", {"processes": 0}, "hardware.processes must be an integer from 1"),
    ("config", {"val": {"window": {"size": "big"}}}, "config.val.window.size must be an integer"),
    ("config", {"a": {"b": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}},
     "nested deeper than 32 levels"),
    ("kind", "virus", "kind must be one of"),
])
def test_metadata_of_the_wrong_shape_is_one_error_naming_the_field(encoder_file, tmp_path, cli, capsys, field, value,
                                                                   message):
    """Even with the digest recomputed (a forger), the schema refuses; the commands exit 2, never a traceback."""
    bad = rewrite(encoder_file, tmp_path / "bad.safetensors", _set(field, value), digest="recompute")
    with pytest.raises(CheckpointError, match=message):
        load_encoder(bad)
    for argv in (["weights", "card", bad, "out=-"], ["weights", "export", bad, tmp_path / "x.pth", "to=timm"],
                 ["weights", "inspect", bad], ["weights", "entry", bad, "url=https://h/x.safetensors"]):
        assert cli(argv) == 2, argv
        assert message.split(" ")[0].replace("\\", "") in capsys.readouterr().err


@pytest.mark.parametrize("text, message", [
    ('{"kind": "encoder", "mean": [NaN, 1, 2]}', "NaN is not a JSON number"),
    ("[" * 5000 + "]" * 5000, "nested deeper than 32 levels"),
    ('{"kind": "encoder"' + ', "x": 1' * 10, "not valid JSON"),
    ('["kind", "encoder"]', "densechange metadata must be a JSON object"),
    ('{"kind": "encoder", "in_chans": ' + "9" * 5000 + "}", "not valid JSON"),
])
def test_metadata_that_is_not_json_is_one_error(encoder_file, tmp_path, text, message):
    bad = rewrite(encoder_file, tmp_path / "bad.safetensors", lambda meta: text, digest="recompute")
    with pytest.raises(CheckpointError, match=message):
        load_file(bad)


def test_nothing_the_schema_refuses_can_be_written(tmp_path):
    with pytest.raises(CheckpointError, match=r"cannot write .*e.safetensors: metadata field hardware.processes must be"):
        save_encoder(tmp_path / "e.safetensors", Encoder("test_resnet", neck_channels=8), mean=[0.5] * 3,
                     std=[0.5] * 3, extra={"hardware": {"processes": -1}})
    assert not (tmp_path / "e.safetensors").exists()


def test_change_model_metadata_is_checked(tmp_path):
    from densechange.finetune.checkpoint import load_change_model, save_change_model
    from densechange.finetune.deepcl.model import ChangeModel

    torch.manual_seed(0)
    model = ChangeModel(Encoder("test_resnet", neck_channels=8), mean=[0.5] * 3, std=[0.5] * 3)
    good = tmp_path / "best.safetensors"
    save_change_model(good, model, config={"val": {"window": {"size": 64}}})
    assert load_change_model(good)[0].num_classes == 2
    for field, value, message in [("model.embed_dim", "64", "model.embed_dim must be an integer, got '64'"),
                                  ("model.num_classes", 1e9, "model.num_classes must be an integer, got 1000000000.0"),
                                  ("model.colour", "red", "model has unknown field colour"),
                                  ("encoder.std", [1, 1, -1], r"encoder.std\[2\] must be a positive number"),
                                  ("model.name", "nope", "valid values: deepcl, siam_diff")]:
        bad = rewrite(good, tmp_path / "bad.safetensors", _set(field, value), digest="recompute")
        with pytest.raises(CheckpointError, match=message):
            load_change_model(bad)
    edited = rewrite(good, tmp_path / "edited.safetensors", _set("std", [0, 0, 0]))
    with pytest.raises(CheckpointError, match="metadata was changed after the file was written"):
        load_change_model(edited)


def test_a_recorded_reference_to_the_environment_is_read_as_unknown(tmp_path):
    """A window size from ``${oc.env:...}`` is recorded as the reference; readers fall back on their defaults."""
    config = {"val": {"window": {"size": "${oc.env:WINDOW}", "overlap": 16}}, "data": {"root": "${oc.env:DATA}/x"}}
    path = tmp_path / "enc.safetensors"
    save_encoder(path, Encoder("test_resnet", neck_channels=8), mean=[0.5] * 3, std=[0.5] * 3, config=config)
    assert read_metadata(path)["config"] == {"val": {"window": {"overlap": 16}}, "data": {"root": "${oc.env:DATA}/x"}}
