"""The merge arithmetic compiled for the CPU: one pass over the tensors, one rounding.

torch computes `target + c * (plus - minus)` in float64 as about ten passes over each block
(three conversions, the arithmetic, and a correct rounding built from several operations),
which on CPU costs more than reading and writing the tensors. Compiled with numba, the same
float64 operations in the same order, followed by one correct rounding written without
branches on the values (so the compiler works on several elements per instruction), take one
pass and give identical bits (tests/test_numerics.py checks them against the torch path and an
independent reference; bench/bench_merge.py measures the speed). Large tensors are cut into
parts merged on every usable core at once (the loop releases the GIL); each element is
computed alone, so the parts give the same bits as one pass.

Supported: output bfloat16 or float32; inputs bfloat16, float32 or float64 (stored vectors).
`merge_into` returns None for anything else, and the caller uses the torch path.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import numba
import numpy as np
import torch
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

INPUT_DTYPES = {torch.bfloat16: np.uint16, torch.float32: np.float32, torch.float64: np.float64}
OUTPUT_DTYPES = {torch.bfloat16: np.uint16, torch.float32: np.float32}
# Tensors with fewer elements run in one piece (a part costs ~10 us to hand out); larger ones in
# parts of at least this many elements, four per core so that a core slowed by other work
# (the output writer, page faults on the inputs) does not hold the others up.
PART_ELEMENTS = 1 << 20
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
_WORKERS = ThreadPoolExecutor(max_workers=CORES, thread_name_prefix="rv-merge kernel") if CORES > 1 else None


def merge_into(out: torch.Tensor, target: torch.Tensor, coefficient: float, plus: torch.Tensor,
               minus: Optional[torch.Tensor]) -> Optional[bool]:
    """out = target + coefficient * (plus - minus), rounded once; returns whether every result
    is finite, or None if the dtypes or device are not supported here (nothing is written
    then). `minus` may be None."""
    tensors = [target, plus] + ([] if minus is None else [minus])
    if out.device.type != "cpu" or out.dtype not in OUTPUT_DTYPES or \
            any(t.dtype not in INPUT_DTYPES or t.device.type != "cpu" for t in tensors):
        return None
    arrays = [_as_array(out, OUTPUT_DTYPES[out.dtype])]
    arrays += [None if t is None else _as_array(t, INPUT_DTYPES[t.dtype]) for t in (target, plus, minus)]
    size = out.numel()
    part = max(PART_ELEMENTS, -(-size // (4 * CORES)))
    if _WORKERS is None or size < 2 * PART_ELEMENTS:
        return _merge(*arrays, float(coefficient)) == 0
    parts = [_WORKERS.submit(_merge, *[None if a is None else a[start:start + part] for a in arrays],
                             float(coefficient)) for start in range(0, size, part)]
    return not any([p.result() for p in parts])


def _as_array(tensor: torch.Tensor, numpy_dtype) -> np.ndarray:
    """A flat numpy view of the tensor's memory (bfloat16 as its uint16 bit patterns)."""
    flat = tensor.detach().reshape(-1)
    if tensor.dtype == torch.bfloat16:
        flat = flat.view(torch.int16)
    return flat.numpy().view(numpy_dtype)


@numba.njit(nogil=True, cache=True)
def _merge(out, target, plus, minus, coefficient):
    """The loop; returns nonzero if any result is NaN or infinite. Written without branches
    on the values, so that the compiler can work on several elements per instruction."""
    non_finite = 0
    for i in range(out.size):
        x = _widen(plus[i])
        if minus is not None:
            x -= _widen(minus[i])
        x *= coefficient  # exact when the coefficient is 1
        x += _widen(target[i])
        out[i] = _narrow(x, out[i])
        non_finite |= _non_finite(out[i])
    return non_finite


# ------------------------------------------------------------------ conversions, by type


def _widen(value):
    """Input element -> float64 (exact for every supported input)."""


@overload(_widen, inline="always")
def _widen_by_type(value):
    if isinstance(value, types.Integer):  # bfloat16 bits: the top half of a float32
        return lambda value: np.float64(_float32_from_bits(np.uint32(value) << np.uint32(16)))
    return lambda value: np.float64(value)


def _non_finite(value):
    """Nonzero if an output element is NaN or infinite (an overflow is infinite)."""


@overload(_non_finite, inline="always")
def _non_finite_by_type(value):
    if isinstance(value, types.Integer):  # bfloat16 bits: exponent all ones carries into bit 15
        return lambda value: ((value & np.uint16(0x7F80)) + np.uint16(0x80)) & np.uint16(0x8000)
    return lambda value: np.uint16(not np.isfinite(value))


def _narrow(value, like):
    """float64 -> the output element type of `like`, rounded once to nearest even."""


@overload(_narrow, inline="always")
def _narrow_by_type(value, like):
    if isinstance(like, types.Integer):
        return lambda value, like: _bfloat16_bits(value)
    return lambda value, like: np.float32(value)  # a single correct rounding


@numba.njit(inline="always")
def _bfloat16_bits(x):
    """The bfloat16 nearest to float64 `x` (ties to even), as bits.

    Rounding to float32 first and then to bfloat16 would round twice, which is wrong when the
    first rounding lands on a bfloat16 tie. Rounded "to odd" instead (toward zero, then the last
    bit set if anything was dropped), the float32 keeps that information and the second
    rounding is correct: float32 has more than two bits beyond bfloat16's at every exponent,
    subnormals included. Overflow gives infinity, NaN stays NaN.
    """
    single = np.float32(x)
    back = np.float64(single)
    bits = _bits_of_float32(single)
    bits -= np.uint32(abs(back) > abs(x))  # rounded away from zero: step back
    bits |= np.uint32(back != x)  # inexact: sticky last bit
    bits = np.uint32(0x7FC00000) if x != x else bits  # any NaN: a quiet one (no payload carries out)
    bits += np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))  # to nearest, ties to even
    return np.uint16(bits >> np.uint32(16))


@intrinsic
def _float32_from_bits(typingctx, bits):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.uint32), codegen


@intrinsic
def _bits_of_float32(typingctx, value):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.uint32(types.float32), codegen
