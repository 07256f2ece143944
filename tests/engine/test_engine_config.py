"""Config loading: unknown keys, required keys, bad choices and overrides."""
from dataclasses import dataclass, field
from typing import Optional

import pytest

from densechange.engine.config import TrainerConfig, load_config
from densechange.engine.errors import ConfigError
from densechange.pretrain.config import CHOICES, PretrainConfig


@dataclass
class Data:
    root: Optional[str] = None


@dataclass
class Schema:
    data: Data = field(default_factory=Data)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


def test_override_and_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("trainer:\n  epochs: 7\n  optim: {lr: 0.5}\n")
    cfg = load_config(Schema, f, ["trainer.batch_size=3", "data.root=/x"])
    assert (cfg.trainer.epochs, cfg.trainer.batch_size, cfg.trainer.optim.lr, cfg.data.root) == (7, 3, 0.5, "/x")


def test_unknown_key_in_file_is_named_with_suggestion(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("trainer:\n  epoch: 7\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'trainer.epoch'.*c.yaml.*trainer.epochs"):
        load_config(Schema, f)


def test_unknown_key_on_command_line():
    with pytest.raises(ConfigError, match=r"unknown config key 'trainer.bach_size'.*trainer.batch_size"):
        load_config(Schema, None, ["trainer.bach_size=3"])


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match="trainer.epochs"):
        load_config(Schema, None, ["trainer.epochs=many"])


def test_required_key():
    with pytest.raises(ConfigError, match="'data.root' is required"):
        load_config(Schema, None, [], required=("data.root",))


def test_bad_choice_lists_valid_values():
    with pytest.raises(ConfigError, match="trainer.precision.*fp32, bf16, fp16"):
        load_config(Schema, None, ["trainer.precision=fp8"])
    with pytest.raises(ConfigError, match="model.sampling.*bilinear, nearest"):
        load_config(PretrainConfig, None, ["model.sampling=cubic"], choices=CHOICES)


def test_missing_file_and_malformed_override(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(Schema, tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="key=value"):
        load_config(Schema, None, ["trainer.epochs"])


def test_shipped_pretrain_configs_load():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "configs" / "pretrain"
    for f in sorted(root.glob("*.yaml")):
        cfg = load_config(PretrainConfig, f, ["data.root=/tmp"], choices=CHOICES)
        assert cfg.model.backbone
