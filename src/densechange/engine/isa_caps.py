"""Environment variables that cap the CPU kernels torch runs, and which low precisions they leave native.

``ONEDNN_MAX_CPU_ISA`` caps oneDNN (the convolutions and matrix products, the bulk of a step) and
``ATEN_CPU_CAPABILITY`` caps ATen's own vectorised kernels (element-wise operations, reductions).
Set below the CPU's bf16 units, either one makes bf16 emulated on a CPU that has those units: a
SaDL step under ``ONEDNN_MAX_CPU_ISA=AVX2`` ran as slowly in bf16 as on an AVX2-only CPU, 12.5x
slower than fp32. The test suite sets both to rerun its numeric tests on the AVX2 kernels.

Values are read case-insensitively. A value this module does not know (``DEFAULT``, ``ALL``, an ISA
newer than the table) caps nothing here.

Example:
    >>> [str(cap) for cap in caps_below("bf16", {"ONEDNN_MAX_CPU_ISA": "avx2", "ATEN_CPU_CAPABILITY": "AVX512"})]
    ['ONEDNN_MAX_CPU_ISA=avx2']
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

__all__ = ["ONEDNN_VARIABLE", "ATEN_VARIABLE", "IsaCap", "caps_below", "capped_cpu_class"]

ONEDNN_VARIABLE = "ONEDNN_MAX_CPU_ISA"
ATEN_VARIABLE = "ATEN_CPU_CAPABILITY"

# oneDNN's CPU ISAs (dnnl_cpu_isa_t), each including those of lower rank; aliases share a rank.
ONEDNN_RANKS = {"SSE41": 0, "AVX": 1, "AVX2": 2, "AVX2_VNNI": 3, "AVX2_VNNI_2": 4, "AVX512_CORE": 5,
                "AVX512_CORE_VNNI": 6, "AVX512_CORE_BF16": 7, "AVX10_1_512": 8, "AVX512_CORE_FP16": 8,
                "AVX10_1_512_AMX": 9, "AVX512_CORE_AMX": 9, "AVX10_1_512_AMX_FP16": 10, "AVX512_CORE_AMX_FP16": 10}
# ATen's x86 capabilities; its bf16 and fp16 kernels need the AVX-512 ones.
ATEN_RANKS = {"default": 0, "avx2": 1, "avx512": 2}
# The least ISA of each library with native units for a precision.
NATIVE_FROM = {"bf16": {ONEDNN_VARIABLE: "AVX512_CORE_BF16", ATEN_VARIABLE: "avx512"},
               "fp16": {ONEDNN_VARIABLE: "AVX512_CORE_FP16", ATEN_VARIABLE: "avx512"}}


@dataclass(frozen=True)
class IsaCap:
    """One variable that caps the kernels below a precision's native units: its name, value, and the level needed."""

    variable: str
    value: str
    needed: str

    def __str__(self) -> str:
        return f"{self.variable}={self.value}"


def _rank(variable: str, value: str) -> int | None:
    if variable == ONEDNN_VARIABLE:
        return ONEDNN_RANKS.get(value.strip().upper())
    return ATEN_RANKS.get(value.strip().lower())


def _table(variable: str) -> Mapping[str, int]:
    return ONEDNN_RANKS if variable == ONEDNN_VARIABLE else ATEN_RANKS


def caps_below(precision: str, environ: Mapping[str, str] | None = None) -> list[IsaCap]:
    """The variables of ``environ`` (default: the process's) that cap the CPU kernels below native ``precision``.

    Args:
        precision: ``bf16`` or ``fp16``.
    """
    environ = os.environ if environ is None else environ
    caps = []
    for variable, needed in NATIVE_FROM[precision].items():
        value = environ.get(variable)
        rank = None if value is None else _rank(variable, value)
        if rank is not None and rank < _table(variable)[needed]:
            caps.append(IsaCap(variable, value, needed))
    return caps


def capped_cpu_class(caps: list[IsaCap]) -> str:
    """``AVX2`` when a cap leaves no AVX-512 kernels, else ``AVX512``: the class whose measured slowdown applies."""
    floors = {ONEDNN_VARIABLE: "AVX512_CORE", ATEN_VARIABLE: "avx512"}
    below = any(_rank(cap.variable, cap.value) < _table(cap.variable)[floors[cap.variable]] for cap in caps)
    return "AVX2" if below else "AVX512"
