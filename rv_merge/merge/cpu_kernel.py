"""The merge arithmetic compiled for the CPU: one pass over the tensors, one rounding.

torch computes `target + c * (plus - minus)` in float64 as about ten passes over each block
(three conversions, the arithmetic, and a correct rounding built from several operations),
which on CPU costs more than reading and writing the tensors. Compiled with numba, the same
float64 operations in the same order, followed by a round to nearest even on the bits, take
one pass: about five times faster on one core, and identical bits (tests/test_numerics.py
checks it against the torch path and an independent reference).

Supported: output bfloat16 or float32; inputs bfloat16, float32 or float64 (stored vectors).
`merge_into` returns None for anything else, and the caller uses the torch path.
"""

from __future__ import annotations

from typing import Optional

import numba
import numpy as np
import torch
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

INPUT_DTYPES = {torch.bfloat16: np.uint16, torch.float32: np.float32, torch.float64: np.float64}
OUTPUT_DTYPES = {torch.bfloat16: np.uint16, torch.float32: np.float32}


def merge_into(out: torch.Tensor, target: torch.Tensor, coefficient: float, plus: torch.Tensor,
               minus: Optional[torch.Tensor]) -> Optional[bool]:
    """out = target + coefficient * (plus - minus), rounded once; returns whether every result
    is finite, or None if the dtypes or device are not supported here (nothing is written
    then). `minus` may be None."""
    tensors = [target, plus] + ([] if minus is None else [minus])
    if out.device.type != "cpu" or out.dtype not in OUTPUT_DTYPES or \
            any(t.dtype not in INPUT_DTYPES or t.device.type != "cpu" for t in tensors):
        return None
    arrays = [_as_array(t, INPUT_DTYPES[t.dtype]) for t in tensors]
    non_finite = _merge(_as_array(out, OUTPUT_DTYPES[out.dtype]), arrays[0], arrays[1],
                        None if minus is None else arrays[2], float(coefficient))
    return non_finite == 0


def _as_array(tensor: torch.Tensor, numpy_dtype) -> np.ndarray:
    """A flat numpy view of the tensor's memory (bfloat16 as its uint16 bit patterns)."""
    flat = tensor.detach().reshape(-1)
    if tensor.dtype == torch.bfloat16:
        flat = flat.view(torch.int16)
    return flat.numpy().view(numpy_dtype)


@numba.njit(nogil=True, cache=True)
def _merge(out, target, plus, minus, coefficient):
    """The loop; returns how many results are NaN or infinite."""
    non_finite = 0
    for i in range(out.size):
        x = _widen(plus[i])
        if minus is not None:
            x -= _widen(minus[i])
        if coefficient != 1.0:
            x *= coefficient
        x += _widen(target[i])
        out[i] = _narrow(x, out[i])
        non_finite += not np.isfinite(x) or _overflows(out[i])
    return non_finite


# ------------------------------------------------------------------ conversions, by type


def _widen(value):
    """Input element -> float64 (exact for every supported input)."""


@overload(_widen, inline="always")
def _widen_by_type(value):
    if isinstance(value, types.Integer):  # bfloat16 bits: the top half of a float32
        return lambda value: np.float64(_float32_from_bits(np.uint32(value) << np.uint32(16)))
    return lambda value: np.float64(value)


def _overflows(value):
    """Whether a finite float64 became infinite in the output type."""


@overload(_overflows, inline="always")
def _overflows_by_type(value):
    if isinstance(value, types.Integer):  # bfloat16 bits: exponent all ones
        return lambda value: (value & np.uint16(0x7F80)) == np.uint16(0x7F80)
    return lambda value: not np.isfinite(value)


def _narrow(value, like):
    """float64 -> the output element type of `like`, rounded once to nearest even."""


@overload(_narrow, inline="always")
def _narrow_by_type(value, like):
    if isinstance(like, types.Integer):
        return lambda value, like: _bfloat16_bits(value)
    return lambda value, like: np.float32(value)  # a single correct rounding


@numba.njit(inline="always")
def _bfloat16_bits(x):
    """The bfloat16 nearest to float64 `x` (ties to even), as bits; overflow gives infinity."""
    bits = _bits_of_float64(x)
    sign = np.uint16((bits >> np.uint64(48)) & np.uint64(0x8000))
    magnitude = bits & np.uint64(0x7FFFFFFFFFFFFFFF)
    if magnitude >= np.uint64(0x7FF0000000000000):  # infinity or NaN
        return sign | np.uint16(0x7F80 if magnitude == np.uint64(0x7FF0000000000000) else 0x7FC0)
    if magnitude < np.uint64(0x3810000000000000):  # below 2**-126: subnormal, steps of 2**-133
        return sign | np.uint16(np.rint(abs(x) * 2.0**133))  # exact scaling; rint ties to even
    # Keep 7 of the 52 fraction bits: add just under half of the dropped part, plus the last
    # kept bit (ties to even); a carry into the exponent is the right result.
    rounded = magnitude + np.uint64((1 << 44) - 1) + ((magnitude >> np.uint64(45)) & np.uint64(1))
    exponent = (rounded >> np.uint64(52)) - np.uint64(1023 - 127)
    if exponent >= np.uint64(255):
        return sign | np.uint16(0x7F80)
    return sign | np.uint16((exponent << np.uint64(7)) | ((rounded >> np.uint64(45)) & np.uint64(0x7F)))


@intrinsic
def _float32_from_bits(typingctx, bits):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.uint32), codegen


@intrinsic
def _bits_of_float64(typingctx, value):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.uint64(types.float64), codegen
