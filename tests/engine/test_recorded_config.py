"""What a run records of its config: resolved, but values of the environment as their references, URL secrets masked."""
from dataclasses import dataclass, field
from typing import Optional

import pytest
from omegaconf import OmegaConf

from densechange.engine.config import TrainerConfig, load_config, recorded_config, save_config, to_dict
from densechange.engine.errors import ConfigError


@dataclass
class Model:
    registry: list[str] = field(default_factory=list)
    encoder: str = "random"


@dataclass
class Run:
    dir: str = "runs/x"
    name: Optional[str] = None


@dataclass
class Schema:
    model: Model = field(default_factory=Model)
    run: Run = field(default_factory=Run)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


@pytest.fixture
def environment(monkeypatch):
    monkeypatch.setenv("DC_SECRET", "hunter2")
    monkeypatch.setenv("DC_HOME", "/home/someone")
    monkeypatch.setenv("DC_EPOCHS", "7")


def test_environment_values_are_recorded_as_their_references(environment, tmp_path):
    cfg = load_config(Schema, None, [
        "model.registry=['https://h/r.json?token=${oc.env:DC_SECRET}','https://me:pw@h/p.json?k=v']",
        "run.dir=${oc.env:DC_HOME}/runs/a",
        "run.name=${run.dir}/n",  # through another key
        "model.encoder=${model.registry[0]}",
        "trainer.epochs=${oc.env:DC_EPOCHS}",  # a typed value
        "trainer.batch_size=${trainer.accumulate}",  # an interpolation without the environment: resolved
    ])
    used = to_dict(cfg)
    assert used["run"]["dir"] == "/home/someone/runs/a" and used["trainer"]["epochs"] == 7
    recorded = recorded_config(cfg)
    assert recorded["model"]["registry"] == ["https://h/r.json?token=${oc.env:DC_SECRET}", "https://***@h/p.json?k=***"]
    assert recorded["run"] == {"dir": "${oc.env:DC_HOME}/runs/a", "name": "${run.dir}/n"}
    assert recorded["model"]["encoder"] == "${model.registry[0]}"
    assert recorded["trainer"]["epochs"] == "${oc.env:DC_EPOCHS}"
    assert recorded["trainer"]["batch_size"] == 1 and recorded["trainer"]["optim"] == used["trainer"]["optim"]
    save_config(cfg, tmp_path / "config.yaml")
    text = (tmp_path / "config.yaml").read_text()
    assert "hunter2" not in text and "/home/someone" not in text and ":pw@" not in text
    reread = OmegaConf.load(tmp_path / "config.yaml")  # the file still resolves where the environment is set
    assert OmegaConf.to_container(reread, resolve=True)["run"]["dir"] == "/home/someone/runs/a"


def test_without_the_environment_the_record_is_the_resolved_config():
    cfg = load_config(Schema, None, ["run.dir=/data/runs/b", "run.name=${run.dir}/n"])
    assert recorded_config(cfg) == to_dict(cfg)


def test_print_config_shows_references_not_values(environment, capsys):
    from densechange.engine.cli import CommandSpec, parse_command

    spec = CommandSpec("densechange x", "test", Schema)
    assert parse_command(spec, ["model.encoder=https://h/w.pth?sig=${oc.env:DC_SECRET}", "--print-config"]) is None
    out = capsys.readouterr().out
    assert "encoder: https://h/w.pth?sig=${oc.env:DC_SECRET}" in out and "hunter2" not in out


def test_an_override_that_is_not_yaml_is_a_config_error():
    with pytest.raises(ConfigError, match="is not valid YAML.*quote the value"):
        load_config(Schema, None, ["model.registry=[&]"])
