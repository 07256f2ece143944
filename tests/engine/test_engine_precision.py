"""Precision that never backfires: auto picks bf16 only where it is native, emulation warns with figures."""
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import densechange.engine.precision as precision
from densechange.engine.config import TrainerConfig
from densechange.engine.distributed import DistInfo
from densechange.engine.errors import ConfigError
from densechange.engine.loop import RunContext, fit
from densechange.engine.precision import PrecisionWarning, autocast_for, choose_precision, native_precisions, resolve_precision
from densechange.engine.runlog import read_jsonl

CPU = torch.device("cpu")


def with_native(monkeypatch, *names):
    monkeypatch.setattr(precision, "native_precisions", lambda device: frozenset({"fp32", *names}))


def test_auto_picks_bf16_only_where_it_is_native(monkeypatch):
    with_native(monkeypatch)
    assert resolve_precision("auto", CPU) == "fp32"
    assert "has no native bf16" in choose_precision("auto", CPU).reason
    with_native(monkeypatch, "bf16")
    assert resolve_precision("auto", CPU) == "bf16"
    assert "runs bf16 natively" in choose_precision("auto", CPU).reason


def test_an_emulated_choice_still_runs_and_warns_with_the_measured_slowdown(monkeypatch):
    with_native(monkeypatch)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    with pytest.warns(PrecisionWarning) as caught:
        assert resolve_precision("bf16", CPU) == "bf16"
    message = str(caught[0].message)
    assert precision.device_name(CPU) in message  # names the device
    assert "12.5x slower than fp32" in message and "0.117 images/s" in message  # the bench figure of this CPU class
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    with pytest.warns(PrecisionWarning, match=r"3.2x slower .*bench/results/cpu-2core"):
        assert resolve_precision("bf16", CPU) == "bf16"
    with_native(monkeypatch, "bf16")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("bf16", CPU) == "bf16"  # native: no warning
        assert resolve_precision("fp32", CPU) == "fp32"


def test_native_precisions_of_this_cpu_follow_its_flags():
    flags = precision._cpu_flags()
    native = native_precisions(CPU)
    assert ("bf16" in native) == bool({"avx512_bf16", "amx_bf16"} & flags)
    assert "fp32" in native


def test_bad_values_are_config_errors():
    with pytest.raises(ConfigError, match="auto, fp32, bf16, fp16"):
        choose_precision("fp8", CPU)
    with pytest.raises(ConfigError, match="resolve 'auto'"):
        autocast_for(CPU, "auto")


class Quadratic(nn.Module):
    """A task for the loop: ``{"loss": mean((w x - 1)^2)}``."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(3))

    def forward(self, batch, generator=None):
        return {"loss": ((batch * self.w).sum(-1) - 1).pow(2).mean()}


def test_the_run_log_records_the_precision_choice(tmp_path: Path, capsys):
    cfg = TrainerConfig(epochs=1, batch_size=2, num_workers=0, log_every=1)
    ctx = RunContext(dir=tmp_path, dist=DistInfo(0, 1, 0, CPU), seed=0, config={})
    fit(Quadratic(), torch.rand(4, 3), cfg, ctx)
    expected = choose_precision("auto", CPU)
    assert cfg.precision == "auto"  # the default
    assert [r["precision"] for r in read_jsonl(tmp_path / "log.jsonl")] == [expected.precision] * 2
    assert f"precision {expected.precision} ({expected.reason})" in capsys.readouterr().out
