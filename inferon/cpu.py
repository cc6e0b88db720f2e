"""This CPU's features and the instruction-set level a model.so runs its kernels with.

The levels mirror INFERON_ISA_* (runtime/include/inferon/model_abi.h) and the runtime's load-time
choice (`select_isa` in runtime/src/runtime.c): avx512 with AVX-512F, avx2 with AVX2 + FMA, else
scalar; capped by the model's `--target` and lowered by the environment variable INFERON_ISA. The
compiler uses it for decisions the runtime cannot revisit (e.g. `sparsify`'s storage formats).
"""

from __future__ import annotations

import os
import platform
from functools import cache
from pathlib import Path

from inferon.errors import InferonError

ISA_LEVELS = ("scalar", "avx2", "avx512")  # in INFERON_ISA_* order
# --target name -> the highest ISA level (index into ISA_LEVELS) the model may dispatch to.
TARGETS: dict[str, int] = {"scalar": 0, "avx2": 1, "avx512": 2, "native": 2}
_NEEDS: dict[str, set[str]] = {"scalar": set(), "avx2": {"avx2", "fma"}, "avx512": {"avx2", "fma", "avx512f"}}


@cache
def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags (/proc/cpuinfo; empty where it cannot be read)."""
    try:
        return frozenset(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return frozenset()


def cpu_name() -> str:
    """This CPU's model name (/proc/cpuinfo; else what `platform.processor()` says)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), None)
    return name or platform.processor() or "unknown CPU"


def supports(isa: str, flags: frozenset[str] | None = None) -> bool:
    """Whether a CPU with `flags` (default: this one) can run Inferon's `isa` kernels."""
    return _NEEDS[isa] <= (cpu_flags() if flags is None else flags)


def host_isa(flags: frozenset[str] | None = None) -> str:
    """The best level a CPU with `flags` (default: this one) runs, as the runtime detects it."""
    return next(isa for isa in reversed(ISA_LEVELS) if supports(isa, flags))


def target_level(target: str) -> int:
    """The highest level (index into ISA_LEVELS) a model compiled for `target` may dispatch to."""
    if target not in TARGETS:
        raise InferonError(f"unknown target '{target}'; choose one of {', '.join(TARGETS)}")
    return TARGETS[target]


def model_isa(target: str = "native", flags: frozenset[str] | None = None) -> str:
    """The level a model compiled for `target` will run with here: the host's level capped by the
    target, and lowered by INFERON_ISA when that names a lower level (the runtime refuses a higher
    one at load time, so that case keeps the host's level)."""
    level = min(ISA_LEVELS.index(host_isa(flags)), target_level(target))
    env = os.environ.get("INFERON_ISA", "")
    if env in ISA_LEVELS:
        level = min(level, ISA_LEVELS.index(env))
    return ISA_LEVELS[level]


def vnni_kernels(target: str = "native", flags: frozenset[str] | None = None) -> bool:
    """Whether a model compiled for `target` will run its quantized GEMMs with AVX512-VNNI on a CPU
    with `flags` (default: this one), as the runtime's `use_vnni` decides: the avx512 level and
    avx512_vnni + avx512vl + avx512bw. The compiler picks the quantized layouts for it (lanes and
    implicit order with VNNI, pair-safe row panels without)."""
    have = cpu_flags() if flags is None else flags
    return model_isa(target, flags) == "avx512" and {"avx512_vnni", "avx512vl", "avx512bw"} <= have


def zmm_row_panels(target: str = "native", flags: frozenset[str] | None = None) -> bool:
    """Whether a model compiled for `target` will run its FP32 row-panel GEMMs as 6 x 32 tiles of zmm
    accumulators (gemm.hpp, `Job::zmm`), as the runtime decides: the avx512 level on an Intel CPU,
    whose server cores have two 512-bit FMA units (twice the ymm tile's peak; Zen 4 splits 512-bit
    operations in two, so there the ymm tiles stay). INFERON_GEMM_ROWS=ymm|zmm overrides the vendor
    rule. `pack-weights` then keeps the lanes kernel to GEMMs of few columns."""
    if model_isa(target, flags) != "avx512":
        return False
    env = os.environ.get("INFERON_GEMM_ROWS", "")
    if env in ("ymm", "zmm"):
        return env == "zmm"
    return "GenuineIntel" in (cpu_flags() if flags is None else flags)
