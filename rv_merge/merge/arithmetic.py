"""The one computation of a merged tensor: target + coefficient * (plus - minus), exactly.

Used by the mergekit method (rv_merge.merge.method), by merges held in memory for alpha
sweeps (rv_merge.merge.in_memory) and, with `plus` a stored vector and no `minus`, by vector
folders applied as recipe sources. So every path casts its inputs by the same rule, refuses
the same non-finite inputs and overflows, and rounds the same way.

Exactness: the arithmetic runs in float64 and rounds once (correctly) to the merge dtype:
the result is bit-identical to a float64 reference rounded to that dtype. On CPU a compiled
kernel does it in one pass (rv_merge.merge.cpu_kernel); torch does it elsewhere, a block at a
time, with the same float64 operations in the same order, so both give the same bits.
"""

from __future__ import annotations

import sys
from typing import Optional

import torch

from rv_merge.errors import CompatibilityError
from rv_merge.merge.buffer_pool import MERGE_BUFFERS
from rv_merge.merge.cpu_kernel import merge_into

# Elements the torch path converts to float64 at once on CPU: two float64 buffers of 64K
# elements (1 MiB) stay in cache, and bound the extra memory whatever the size of the tensor.
BLOCK_ELEMENTS = 1 << 16


def merge_dtype(model_dtypes: list[torch.dtype], recipe_dtype: Optional[torch.dtype] = None) -> torch.dtype:
    """The dtype a merge computes into and writes: the recipe's `dtype`, else the promoted dtype
    of the model inputs (never of a vector, which is float64 and stays uncast), as mergekit does."""
    if recipe_dtype is not None:
        return recipe_dtype
    dtype = model_dtypes[0]
    for other in model_dtypes[1:]:
        dtype = torch.promote_types(dtype, other)
    return dtype


def merged_tensor(name: str, coefficient: float, target: torch.Tensor, plus: torch.Tensor,
                  minus: Optional[torch.Tensor] = None, origins: tuple[str, ...] = ("target", "grpo", "sft"),
                  recipe_dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """What a merge writes for tensor `name`: target + coefficient * (plus - minus).

    `plus`, `minus` are GRPO and SFT; or `plus` is a stored float64 vector and `minus` is
    None. Model inputs are cast to `merge_dtype` (a no-op when mergekit has aligned them
    already); `origins` names the inputs in errors. Refuses NaN/Inf inputs and overflow.
    """
    models = [target] if minus is None else [target, plus, minus]
    dtype = merge_dtype([t.dtype for t in models], recipe_dtype)
    target = target.to(dtype)
    if minus is not None:
        plus, minus = plus.to(dtype), minus.to(dtype)
    merged, finite = _apply(target, coefficient, plus, minus)
    # A NaN or Inf in any input makes the result non-finite, except where the coefficient is
    # 0 and the target comes back as it is. The CPU kernel counts non-finite results as it
    # goes; otherwise a sum screens cheaply (isfinite itself is slow on CPU). The exact
    # checks run only when a screen fails.
    if coefficient == 0:
        finite = all(_sum_is_finite(t) for t in (merged, plus, minus) if t is not None)
    elif finite is None:
        finite = _sum_is_finite(merged)
    if not finite:
        _refuse_non_finite(name, zip(origins, (target, plus, minus)), merged, coefficient)
    return merged


def _sum_is_finite(tensor: torch.Tensor) -> bool:
    """False if the tensor holds NaN or Inf (or, rarely, if its sum overflows)."""
    wide = torch.float32 if tensor.dtype == torch.float16 else None  # float16 sums overflow
    return bool(torch.isfinite(tensor.sum(dtype=wide)))


def _refuse_non_finite(name: str, inputs, merged: torch.Tensor, coefficient: float) -> None:
    for origin, tensor in inputs:
        if tensor is not None and not torch.isfinite(tensor).all():
            raise CompatibilityError(
                f"tensor {name} of {origin} contains NaN or Inf; "
                "the checkpoint is corrupt: re-download or re-export it"
            )
    if not torch.isfinite(merged).all():
        raise CompatibilityError(
            f"tensor {name}: target + {coefficient} * vector overflows "
            f"{merged.dtype}; lower alpha or set a wider `dtype` (float32)"
        )


def apply_vector(
    target: torch.Tensor, coefficient: float, plus: torch.Tensor, minus: torch.Tensor | None = None
) -> torch.Tensor:
    """target + coefficient * (plus - minus), computed in float64, rounded once to target.dtype.

    `plus`, `minus` are GRPO and SFT; or `plus` is a stored vector and `minus` is None. A
    vector that holds the float64 difference GRPO - SFT exactly gives the same bits as the pair.
    On CPU the compiled kernel (rv_merge.merge.cpu_kernel) does it in one pass where it
    supports the dtypes; elsewhere, or on an accelerator, torch does (apply_vector_with_torch).
    """
    return _apply(target, coefficient, plus, minus)[0]


def _apply(target: torch.Tensor, coefficient: float, plus: torch.Tensor,
           minus: torch.Tensor | None) -> tuple[torch.Tensor, Optional[bool]]:
    """apply_vector, and whether every result is finite when the kernel that ran knows it."""
    if coefficient == 0:
        return target.clone(), None  # bit for bit, including the sign of zeros
    on_cpu = target.device.type == "cpu"
    out = MERGE_BUFFERS.empty(target.shape, target.dtype) if on_cpu else torch.empty_like(target)
    finite = merge_into(out, target, coefficient, plus, minus)
    if finite is not None:
        return out, finite
    return apply_vector_with_torch(target, coefficient, plus, minus, out), None


def block_elements(device: torch.device) -> int:
    """Elements per float64 block of the torch path: 64K on CPU (two 512 KiB buffers stay in
    cache), 16M on an accelerator (a few kernel launches per block; 256 MiB of buffers)."""
    return BLOCK_ELEMENTS if device.type == "cpu" else 1 << 24


def apply_vector_with_torch(target: torch.Tensor, coefficient: float, plus: torch.Tensor,
                            minus: torch.Tensor | None = None, out: torch.Tensor | None = None,
                            block: int | None = None) -> torch.Tensor:
    """apply_vector with torch operations, on any device, `block` elements at a time
    (default: block_elements of the device), in two reused float64 buffers, with same-dtype
    in-place operations (mixed-dtype operations are several times slower on CPU)."""
    if out is None:
        out = torch.empty(target.shape, dtype=target.dtype, device=target.device)
    flat_out, flat_t, flat_plus = (x.reshape(-1) for x in (out, target, plus))
    flat_minus = None if minus is None else minus.reshape(-1)
    block = min(block or block_elements(target.device), max(flat_t.numel(), 1))
    result, other = (torch.empty(block, dtype=torch.float64, device=target.device) for _ in range(2))
    redo_index, redo_values = [], []
    for start in range(0, flat_t.numel(), block):
        part = slice(start, start + block)
        n = flat_t[part].numel()
        x, y = result[:n], other[:n]
        x.copy_(flat_plus[part])
        if flat_minus is not None:
            x.sub_(y.copy_(flat_minus[part]))
        if coefficient != 1:
            x.mul_(coefficient)  # coefficient 1 would be exact anyway
        x.add_(y.copy_(flat_t[part]))
        if target.dtype == torch.bfloat16 and sys.byteorder == "little":
            flat_out[part], suspects = _round_to_bfloat16_fast(x)
            if suspects.numel():
                redo_index.append(suspects + start)
                redo_values.append(x[suspects])
        else:
            flat_out[part] = round_once(x, target.dtype)
    if redo_index:
        index = torch.cat(redo_index)
        flat_out[index] = _round_via_odd(torch.cat(redo_values), torch.bfloat16)
    return out


def round_once(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Round float64 values to `dtype` with one correct rounding (to nearest, ties to even).

    torch converts float64 to bfloat16/float16 through float32, which rounds twice: wrong
    exactly when the float32 value lands on a tie of the narrower format while the float64
    value did not. Rounding to float32 "to odd" instead (truncate, then set the last bit if
    anything was dropped) makes the second rounding exact, as float32 keeps more than two
    extra bits over either 16-bit format. For bfloat16 only the few elements whose float32
    value is a tie need that (see _round_to_bfloat16_fast).
    """
    if dtype in (torch.float64, torch.float32):
        return values.to(dtype)
    if dtype == torch.bfloat16 and sys.byteorder == "little":
        flat = values.reshape(-1)
        rounded, suspects = _round_to_bfloat16_fast(flat)
        if suspects.numel():
            rounded[suspects] = _round_via_odd(flat[suspects], dtype)
        return rounded.reshape(values.shape)
    return _round_via_odd(values, dtype)


def _round_to_bfloat16_fast(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Round 1-D float64 values through float32; also return the positions that may be wrong.

    Those are the values that float32 rounded (inexact) onto a bfloat16 tie (low 16 bits
    0x8000): rare. Exact ties are common (sums of bfloat16 numbers often fit in float32)
    and are rounded correctly. `nonzero` on a long mask is slow, so the mask is scanned
    8 bytes at a time first.
    """
    single = values.float()
    rounded = single.to(torch.bfloat16)
    mask = single.view(torch.int16)[0::2] == -0x8000  # low halves on little-endian
    mask &= single.double() != values
    whole = mask.numel() - mask.numel() % 8
    groups = mask[:whole].view(torch.int64).nonzero().squeeze(1)
    if not groups.numel() and whole == mask.numel():
        return rounded, groups
    candidates = torch.cat([
        (groups[:, None] * 8 + torch.arange(8, device=values.device)).reshape(-1),
        torch.arange(whole, mask.numel(), device=values.device),
    ])
    return rounded, candidates[mask[candidates]]


def _round_via_odd(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    single = values.float()
    widened = single.double()
    bits = single.view(torch.int32)
    bits = bits - (widened.abs() > values.abs()).int()  # undo rounding away from zero
    bits = bits | (widened != values).int()  # sticky bit: inexact -> odd
    return bits.view(torch.float32).to(dtype)


