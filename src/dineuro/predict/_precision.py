"""Which arithmetic the network runs in, and on how many threads.

bfloat16 keeps float32's exponent range with an 8-bit mantissa: a segmentation network's
probabilities move by a few thousandths at most, and on hardware with native bf16 units the
forward pass is about twice as fast (measured 1.75-2x for the tiny network on a CPU with
AVX512-BF16, through oneDNN under ``torch.autocast``). Without native units (AVX2 laptops,
AVX512 CPUs before Cooper Lake, most ARM) bf16 is emulated and slower than float32, so "auto"
picks it only where the hardware has it. ``benchmarks/run_speed.py`` measures the agreement
with float32 (Dice and traced F1) next to the speed.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from dineuro.errors import InputError

#: Choices of ``precision``: "auto" is bf16 where the device has native bf16 arithmetic.
PRECISIONS = ("auto", "bf16", "fp32")
#: /proc/cpuinfo flags of x86 native bf16 (AVX512-BF16 dot products, AMX bf16 tiles).
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
CPUINFO = Path("/proc/cpuinfo")


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """"bf16" or "fp32": ``precision`` as given, or for "auto" what is fast on ``device``.

    Raises
    ------
    InputError
        An unknown ``precision``.

    Examples
    --------
    >>> resolve_precision("fp32", "cpu"), resolve_precision("auto", "meta")
    ('fp32', 'fp32')
    """
    if precision not in PRECISIONS:
        raise InputError(f"precision should be one of {list(PRECISIONS)}, got {precision!r}.")
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(torch.device(device)) else "fp32"


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively: a CUDA GPU that reports it, or a CPU with
    AVX512-BF16 or AMX (read from /proc/cpuinfo; elsewhere we cannot tell, so no)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    return bool(_cpu_flags() & BF16_CPU_FLAGS)


@functools.cache
def _cpu_flags() -> frozenset[str]:
    """The CPU feature flags Linux reports (empty where there is no /proc/cpuinfo)."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()
