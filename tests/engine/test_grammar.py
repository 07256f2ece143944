"""Every command of ``densechange`` reads the one grammar: keys in its help, --print-config, no old flags.

The commands are walked from the dispatch table itself (nested ones such as ``weights download``
included), so a command added to the table is held to the grammar without a line here. The spec a
command parses with is recorded when its ``--help`` is printed, and the checks read the keys from
that spec's dataclasses.
"""
from __future__ import annotations

import re
from typing import Iterator

import pytest
from omegaconf import OmegaConf

from densechange.engine.cli import CommandSpec, parse_command
from densechange.engine.commands import COMMANDS, Command, dispatch
from densechange.engine.config_docs import describe, show_value, undocumented
from densechange.engine.errors import ConfigError


def command_paths(table=COMMANDS, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, entry in table.items():
        if isinstance(entry, Command):
            yield (*prefix, name)
        else:
            yield from command_paths(entry, (*prefix, name))


PATHS = list(command_paths())
IDS = [" ".join(p) for p in PATHS]

# flags the commands took before the grammar, and the key each became
OLD_FLAGS = {
    ("predict",): (["--window", "512"], "window.size"),
    ("evaluate",): (["--checkpoint", "run/best.safetensors"], "checkpoint"),
    ("export",): (["--window", "256"], "window.size"),
    ("compare",): (["--encoders", "random,imagenet"], "grid.encoders"),
    ("probe",): (["--encoder", "random"], "encoder"),
}


@pytest.fixture
def help_of(monkeypatch, capsys):
    """``path -> (spec, help text)``: runs ``densechange PATH --help`` and records the spec it printed."""
    seen: list[CommandSpec] = []
    original = CommandSpec.help

    def recording(self: CommandSpec) -> str:
        seen.append(self)
        return original(self)

    monkeypatch.setattr(CommandSpec, "help", recording)

    def run(path: tuple[str, ...]) -> tuple[CommandSpec, str]:
        capsys.readouterr()
        assert dispatch([*path, "--help"]) == 0
        assert seen, f"densechange {' '.join(path)} --help did not print a CommandSpec's help"
        return seen[-1], capsys.readouterr().out

    return run


def required_values(spec: CommandSpec) -> list[str]:
    """``key=value`` for every required key, of the key's type (a choice key gets its first valid value)."""
    types = {k.name: k.type for k in describe(spec.schema)}
    values = []
    for key in spec.required:
        kind = types[key]
        value = spec.choices[key][0] if key in spec.choices else "1" if kind == "int" else "0.5" if kind == "float" else "x"
        values.append(f"{key}={value}")
    return values


def unambiguous_key(spec: CommandSpec) -> str:
    """A key whose last part names it alone, so ``--LAST`` can only mean it."""
    keys = [k.name for k in describe(spec.schema)]
    for key in keys:
        last = key.rsplit(".", 1)[-1]
        if [k for k in keys if k == last or k.endswith("." + last) or k.startswith(last + ".")] == [key]:
            return key
    raise AssertionError(f"{spec.prog}: no key of its own name")


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_help_lists_every_key_with_the_default_a_run_gets(path, help_of):
    spec, text = help_of(path)
    assert text.startswith(f"usage: {spec.prog} ") and spec.prog == "densechange " + " ".join(path)
    defaults = OmegaConf.structured(spec.schema)
    keys = describe(spec.schema)
    assert keys
    for key in keys:
        assert f"\n  {key.name}={key.default}" in text, key.name
        value = OmegaConf.select(defaults, key.name)
        resolved = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        assert show_value(resolved) == key.default, key.name  # what the help shows is what a run starts from
    for key in spec.positionals:
        assert re.search(rf"\n  {key.rsplit('.', 1)[-1].upper()} +the key {re.escape(key)}\n", text), key


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_print_config_prints_yaml_that_reloads_to_the_same_config(path, help_of, capsys, tmp_path):
    spec, _ = help_of(path)
    args = required_values(spec)
    cfg = parse_command(spec, args)
    assert dispatch([*path, *args, "--print-config"]) == 0  # runs nothing: no data, no checkpoint needed
    printed = capsys.readouterr().out
    (tmp_path / "printed.yaml").write_text(printed)
    again = parse_command(spec, ["--config", str(tmp_path / "printed.yaml")])
    assert OmegaConf.to_container(again) == OmegaConf.to_container(cfg)
    assert printed == OmegaConf.to_yaml(cfg)


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_an_old_style_flag_is_a_config_error_naming_the_key(path, help_of):
    spec, _ = help_of(path)
    key = unambiguous_key(spec)
    flags = [(["--" + key.rsplit(".", 1)[-1].replace("_", "-"), "1"], key)]
    if path in OLD_FLAGS:
        flags.append(OLD_FLAGS[path])
    for tokens, named in flags:
        with pytest.raises(ConfigError, match=rf"unknown option {re.escape(tokens[0])}\b.*\b{re.escape(named)}=") as err:
            dispatch([*path, *required_values(spec), *tokens])
        assert f"{spec.prog} --help" in str(err.value)


def test_one_default_window_for_predict_evaluate_validation_and_export(help_of):
    texts = {name: help_of((name,))[1] for name in ("predict", "evaluate", "export", "finetune")}
    for part in ("size", "overlap", "margin"):
        found = {name: re.findall(rf"\n  (?:val\.)?window\.{part}=(\S+)", text) for name, text in texts.items()}
        assert all(len(v) == 1 for v in found.values()), found
        assert len({v[0] for v in found.values()}) == 1, found
    assert re.findall(r"\n  window\.size=(\S+)", texts["predict"]) == ["512"]
    for name in ("predict", "evaluate", "finetune"):  # a window batch is sized for the device unless one is given
        assert re.findall(r"\n  (?:val\.)?window\.batch_size=(\S+)", texts[name]) == ["null"], name


@pytest.mark.parametrize("path", [("predict",), ("export",)], ids=["predict", "export"])
def test_every_key_of_the_prediction_commands_has_a_description(path, help_of):
    spec, _ = help_of(path)
    assert undocumented(spec.schema) == []


def test_every_grid_key_of_compare_has_a_description():
    from densechange.finetune.compare.config import GridConfig

    assert undocumented(GridConfig) == []
