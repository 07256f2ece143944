"""Which floating-point precision a device runs fast, and the autocast context for it.

Mixed precision only pays where the device has native units for it. A CPU without AVX512-BF16 or
AMX emulates bf16 arithmetic, and autocast then makes a step several times *slower* than fp32
(the figures below). So ``precision=auto`` picks bf16 only where it is native (CUDA devices that
support bf16, CPUs with AMX or AVX512-BF16) and fp32 everywhere else, and an explicit bf16 or fp16
on a device without native support still runs, with a warning that names the device and the
measured slowdown.

A CPU's units only count when its kernels may use them: ``ONEDNN_MAX_CPU_ISA`` or
``ATEN_CPU_CAPABILITY`` set below them (:mod:`densechange.engine.isa_caps`) makes bf16 emulated on
that CPU too, so auto then picks fp32 and warns once, naming the variable and its value.

Example:
    >>> resolve_precision("auto", torch.device("cpu"))      # on a CPU without bf16 units
    'fp32'
"""
from __future__ import annotations

import contextlib
import platform
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from densechange.engine.errors import ConfigError
from densechange.engine.isa_caps import IsaCap, caps_below, capped_cpu_class

__all__ = ["PRECISIONS", "PrecisionWarning", "PrecisionChoice", "choose_precision", "resolve_precision",
           "native_precisions", "usable_precisions", "isa_caps", "device_name", "autocast_for"]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")

# Slowdown of the SaDL step (bench/pretrain_step.py, batch 8, 256x256, ResNet-18 + FPN, channels-last)
# under emulated low precision: median fp32 step time / median low-precision step time, measured on
# 2-core CPUs of each vector-extension class. Only measured figures go here.
MEASURED_SLOWDOWN: dict[tuple[str, str], tuple[float, str]] = {
    ("AVX2", "bf16"): (12.5, "2-core AVX2 CPU: 0.117 images/s in bf16 against 1.46 in fp32"),
    ("AVX512", "bf16"): (3.2, "2-core Xeon (Skylake, AVX512 without BF16): 0.45 images/s against 1.47, "
                              "bench/results/cpu-2core-2026-12-02.md"),
    ("AVX512", "fp16"): (2.0, "2-core Xeon (Skylake, AVX512 without FP16): 0.73 images/s against 1.47, "
                              "bench/results/cpu-2core-2026-12-02.md"),
}


class PrecisionWarning(UserWarning):
    """A low precision was asked for on a device that emulates it, so the run is slower than fp32."""


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a run uses and why (``reason`` goes to the run log)."""

    requested: str
    precision: str
    reason: str


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


def cpu_model() -> str:
    """The CPU's model name, for records that say which machine measured them."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _cpu_has(probe: str, flags: tuple[str, ...]) -> bool:
    """A CPU feature from torch's own check when this torch has it, else from the kernel's flag list."""
    check = getattr(torch.cpu, probe, None)
    if check is not None:
        try:
            return bool(check())
        except RuntimeError:
            pass
    return bool(set(flags) & _cpu_flags())


@lru_cache(maxsize=None)
def native_precisions(device: torch.device) -> frozenset[str]:
    """The precisions ``device`` computes with native units (fp32 always)."""
    native = {"fp32"}
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported(including_emulation=False):
            native.add("bf16")
        if torch.cuda.get_device_capability(device)[0] >= 7:  # tensor cores
            native.add("fp16")
    elif device.type == "cpu":
        if _cpu_has("_is_avx512_bf16_supported", ("avx512_bf16",)) or _cpu_has("_is_amx_tile_supported", ("amx_bf16",)):
            native.add("bf16")
        if _cpu_has("_is_amx_fp16_supported", ("amx_fp16", "avx512_fp16")):
            native.add("fp16")
    return frozenset(native)


def device_name(device: torch.device) -> str:
    """A human name for the warning: the GPU's or the CPU's model and its vector extensions."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"{torch.cuda.get_device_name(device)} (cuda, compute capability {major}.{minor})"
    return f"{cpu_model()} (cpu, {torch.backends.cpu.get_cpu_capability()})"


def isa_caps(device: torch.device) -> dict[str, list[IsaCap]]:
    """The native low precisions of ``device`` that the environment caps the CPU's kernels below, and by which
    variables (empty for a GPU, or when nothing caps them)."""
    if device.type != "cpu":
        return {}
    found = {p: caps_below(p) for p in sorted(native_precisions(device) - {"fp32"})}
    return {p: caps for p, caps in found.items() if caps}


def usable_precisions(device: torch.device) -> frozenset[str]:
    """The precisions ``device`` computes natively under the environment's kernel caps (fp32 always)."""
    return native_precisions(device) - set(isa_caps(device))


def _named(caps: list[IsaCap]) -> str:
    return " and ".join(str(cap) for cap in caps)


def _slowdown(device: torch.device, precision: str, cpu_class: str | None = None) -> str:
    if device.type == "cuda":
        return "no slowdown was measured on such a GPU; GPUs before compute capability 8.0 emulate bf16"
    figure = MEASURED_SLOWDOWN.get((cpu_class or torch.backends.cpu.get_cpu_capability(), precision))
    measured = "; ".join(f"{v[0]:g}x on a {v[1]}" for (_, p), v in MEASURED_SLOWDOWN.items() if p == precision)
    if figure is not None:
        return (f"bench/pretrain_step.py measured the SaDL step {figure[0]:g}x slower than fp32 on such a CPU "
                f"({figure[1]})")
    return f"bench/pretrain_step.py measured the SaDL step slower than fp32 on CPUs without it ({measured})"


def choose_precision(preference: str, device: torch.device) -> PrecisionChoice:
    """The precision to run and the reason, without warning (see :func:`resolve_precision`)."""
    if preference not in PRECISIONS:
        raise ConfigError(f"precision is '{preference}'; valid values: {', '.join(PRECISIONS)}.")
    usable, caps = usable_precisions(device), isa_caps(device)
    if preference == "auto":
        if "bf16" in usable:
            return PrecisionChoice("auto", "bf16", f"auto: {device_name(device)} runs bf16 natively")
        if "bf16" in caps:
            return PrecisionChoice("auto", "fp32", f"auto: {_named(caps['bf16'])} caps {device_name(device)} "
                                                   "below its native bf16")
        return PrecisionChoice("auto", "fp32", f"auto: {device_name(device)} has no native bf16")
    if preference in usable:
        return PrecisionChoice(preference, preference, f"{preference} as configured, native on {device_name(device)}")
    capped = f" under {_named(caps[preference])}" if preference in caps else ""
    return PrecisionChoice(preference, preference,
                           f"{preference} as configured, emulated on {device_name(device)}{capped}")


def resolve_precision(preference: str, device: torch.device, *, warn: bool = True) -> str:
    """``fp32``, ``bf16`` or ``fp16`` for ``device``; warns when an explicit choice is emulated there, and when
    auto runs fp32 only because ``ONEDNN_MAX_CPU_ISA`` or ``ATEN_CPU_CAPABILITY`` caps a CPU's bf16 units.

    Args:
        preference: ``auto`` (bf16 where native, else fp32), or ``fp32`` / ``bf16`` / ``fp16``.
        device: where the network runs.
        warn: issue the :class:`PrecisionWarning` (processes other than rank 0 pass False).
    """
    choice = choose_precision(preference, device)
    if not warn:
        return choice.precision
    caps = isa_caps(device)
    if preference == "auto" and "bf16" in caps:
        cpu_class = capped_cpu_class(caps["bf16"])
        warnings.warn(
            f"precision=auto on {device_name(device)}: {_named(caps['bf16'])} caps the CPU's kernels below its "
            f"native bf16 units ({' and '.join(sorted({c.needed for c in caps['bf16']}))}), where autocast would "
            f"emulate bf16: {_slowdown(device, 'bf16', cpu_class)}. Running fp32; unset "
            f"{' and '.join(c.variable for c in caps['bf16'])} for bf16.",
            PrecisionWarning, stacklevel=2)
    elif choice.precision != "fp32" and choice.precision not in usable_precisions(device):
        capped = caps.get(preference)
        units = (f"{_named(capped)} caps the CPU's kernels below its native {preference} units" if capped
                 else f"this device has no native {preference} units")
        cpu_class = capped_cpu_class(capped) if capped else None
        warnings.warn(
            f"precision={preference} on {device_name(device)}: {units}, so autocast emulates it and runs slower "
            f"than fp32: {_slowdown(device, preference, cpu_class)}. Use precision=auto (or fp32) here.",
            PrecisionWarning, stacklevel=2)
    return choice.precision


def autocast_for(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision context: bf16 or fp16 autocast, or nothing for fp32 (``auto`` must be resolved first)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision not in ("bf16", "fp16"):
        raise ConfigError(f"precision is '{precision}'; resolve 'auto' with resolve_precision first.")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device_type=device.type, dtype=dtype)
