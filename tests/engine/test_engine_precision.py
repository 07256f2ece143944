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
CAPS = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")
BF16_CPU = {"avx512f", "avx512_bf16"}


@pytest.fixture(autouse=True)
def uncapped(monkeypatch):
    """No kernel caps from the environment unless a test sets them (make test reruns tests under AVX2 caps)."""
    for variable in CAPS:
        monkeypatch.delenv(variable, raising=False)


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


TORCH_PROBES = ("_is_avx512_bf16_supported", "_is_amx_tile_supported", "_is_amx_fp16_supported")


@pytest.fixture
def fake_cpu(monkeypatch):
    """Fake the CPU feature detection itself (torch's probes, else the kernel's flags), never the rule on top.

    ``fake_cpu(flags, torch_probes=True)``: with ``torch_probes`` this torch answers the probes from
    ``flags``; without, it lacks them and the flags of /proc/cpuinfo decide. The cache of
    :func:`native_precisions` is cleared around the fake, so the real CPU is detected again afterwards.
    """
    def fake(flags: set[str], torch_probes: bool = True) -> None:
        answers = {"_is_avx512_bf16_supported": "avx512_bf16" in flags, "_is_amx_tile_supported": "amx_bf16" in flags,
                   "_is_amx_fp16_supported": "amx_fp16" in flags}
        for probe in TORCH_PROBES:
            if torch_probes:
                monkeypatch.setattr(torch.cpu, probe, lambda answer=answers[probe]: answer, raising=False)
            else:
                monkeypatch.delattr(torch.cpu, probe, raising=False)
        monkeypatch.setattr(precision, "_cpu_flags", lambda: {"fpu", "sse2", "avx2", *flags})
        native_precisions.cache_clear()

    native_precisions.cache_clear()
    yield fake
    native_precisions.cache_clear()


@pytest.mark.parametrize("torch_probes", [True, False], ids=["torch-probes", "kernel-flags"])
@pytest.mark.parametrize("flags, expected", [
    (set(), "fp32"),  # AVX2 only
    ({"avx512f"}, "fp32"),  # AVX512 without BF16
    ({"avx512f", "avx512_bf16"}, "bf16"),
    ({"avx512f", "amx_tile", "amx_bf16"}, "bf16"),
])
def test_auto_resolves_from_the_detected_cpu_features(fake_cpu, torch_probes, flags, expected):
    fake_cpu(flags, torch_probes)
    assert ("bf16" in native_precisions(CPU)) == (expected == "bf16")
    assert resolve_precision("auto", CPU) == expected
    assert choose_precision("auto", CPU).reason.endswith("runs bf16 natively" if expected == "bf16" else "has no native bf16")


@pytest.mark.parametrize("flags, expected", [(set(), "fp32"), ({"amx_tile", "amx_bf16"}, "bf16")], ids=["no-bf16", "amx"])
def test_a_run_on_auto_uses_what_the_detected_cpu_runs_natively(fake_cpu, tmp_path, capsys, flags, expected):
    fake_cpu(flags)
    cfg = TrainerConfig(epochs=1, batch_size=2, num_workers=0, log_every=1)
    ctx = RunContext(dir=tmp_path, dist=DistInfo(0, 1, 0, CPU), seed=0, config={})
    with warnings.catch_warnings():
        warnings.simplefilter("error", PrecisionWarning)  # auto never picks an emulated precision
        fit(Quadratic(), torch.rand(4, 3), cfg, ctx)
    assert [r["precision"] for r in read_jsonl(tmp_path / "log.jsonl")] == [expected] * 2
    assert f"precision {expected} (auto: " in capsys.readouterr().out


@pytest.mark.parametrize("variable, value, cpu_class", [
    ("ONEDNN_MAX_CPU_ISA", "AVX2", "AVX2"), ("ONEDNN_MAX_CPU_ISA", "avx512_core", "AVX512"),
    ("ONEDNN_MAX_CPU_ISA", "Avx2_Vnni_2", "AVX2"), ("ATEN_CPU_CAPABILITY", "avx2", "AVX2"),
    ("ATEN_CPU_CAPABILITY", "DEFAULT", "AVX2"),
])
def test_auto_runs_fp32_and_says_why_where_a_variable_caps_the_kernels_below_native_bf16(
        fake_cpu, monkeypatch, variable, value, cpu_class):
    fake_cpu(BF16_CPU)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.setenv(variable, value)
    with pytest.warns(PrecisionWarning) as caught:
        assert resolve_precision("auto", CPU) == "fp32"
    assert len(caught) == 1  # one warning, naming the variable and its value, and the slowdown it avoids
    message = str(caught[0].message)
    assert f"{variable}={value} caps the CPU's kernels below its native bf16" in message and "Running fp32" in message
    assert ("12.5x slower" if cpu_class == "AVX2" else "3.2x slower") in message
    assert choose_precision("auto", CPU).reason.startswith(f"auto: {variable}={value} caps ")
    with pytest.warns(PrecisionWarning, match=f"precision=bf16 .*{variable}={value} caps .*autocast emulates it"):
        assert resolve_precision("bf16", CPU) == "bf16"  # asked for, it still runs, emulated


def test_both_caps_are_named_in_one_warning(fake_cpu, monkeypatch):
    fake_cpu({"avx512f", "amx_tile", "amx_bf16", "amx_fp16"})
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    with pytest.warns(PrecisionWarning) as caught:
        assert resolve_precision("auto", CPU) == "fp32"
    assert len(caught) == 1
    assert "ONEDNN_MAX_CPU_ISA=AVX2 and ATEN_CPU_CAPABILITY=avx2 caps" in str(caught[0].message)
    assert precision.usable_precisions(CPU) == {"fp32"} and native_precisions(CPU) == {"fp32", "bf16", "fp16"}


@pytest.mark.parametrize("settings", [
    {"ONEDNN_MAX_CPU_ISA": "avx512_core_bf16"}, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"},
    {"ONEDNN_MAX_CPU_ISA": "DEFAULT"}, {"ATEN_CPU_CAPABILITY": "AVX512"},
])
def test_caps_at_or_above_native_bf16_keep_it(fake_cpu, monkeypatch, settings):
    fake_cpu(BF16_CPU)
    for variable, value in settings.items():
        monkeypatch.setenv(variable, value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("auto", CPU) == "bf16"


def test_caps_on_a_cpu_without_bf16_change_nothing(fake_cpu, monkeypatch):
    fake_cpu(set())
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("auto", CPU) == "fp32"  # nothing to cap: no warning
    assert choose_precision("auto", CPU).reason.endswith("has no native bf16")


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
