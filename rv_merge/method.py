"""The `reasoning_vector` merge method: target + sign * alpha * (GRPO - SFT).

One small kernel plus mergekit's declarative signature. It is registered by name when
mergekit's `merge_methods` package is imported (see hooks/_rv_merge_hook.py), so plain
`mergekit-yaml` finds it.

Exactness: the arithmetic runs in float64, a block of elements at a time, and rounds once
(correctly) to the input dtype: the result is bit-identical to a float64 reference rounded
to that dtype.
"""

from __future__ import annotations

from typing import Literal

import torch

from mergekit.merge_methods import (
    BasePolicy,
    InputContract,
    PerNonBase,
    TensorGroup,
    merge_method,
    registry,
)

from rv_merge.errors import RecipeError

# Elements converted to float64 at once: bounds the extra memory (3 inputs x 8 bytes x 4M
# = 96 MiB) whatever the size of the tensor.
BLOCK_ELEMENTS = 1 << 22


@merge_method(
    name="reasoning_vector",
    pretty_name="Reasoning Vector",
    reference_url="https://arxiv.org/abs/2509.01363",
    contract=InputContract(
        base=BasePolicy.REQUIRED, min_inputs=3, max_inputs=3, min_non_base=2, max_non_base=2
    ),
)
def reasoning_vector(
    group: TensorGroup,
    role: PerNonBase[Literal["sft", "grpo"]],
    alpha: float,
    sign: Literal[1, -1] = 1,
) -> torch.Tensor:
    target = group.base.tensor
    by_role = {role[entry.id]: entry for entry in group.non_base}
    if set(by_role) != {"sft", "grpo"}:
        raise RecipeError(
            f"tensor {group.metadata.name}: the two models need roles sft and grpo, "
            f"got {sorted(role.values())}"
        )
    sft, grpo = by_role["sft"].tensor, by_role["grpo"].tensor
    for entry in group.entries:
        if not torch.isfinite(entry.tensor).all():
            raise RecipeError(
                f"tensor {group.metadata.name} of {entry.id} contains NaN or Inf; "
                "the checkpoint is corrupt: re-download or re-export it"
            )
    merged = apply_vector(target, sft, grpo, sign * alpha)
    if not torch.isfinite(merged).all():
        raise RecipeError(
            f"tensor {group.metadata.name}: target + {sign * alpha} * vector overflows "
            f"{merged.dtype}; lower alpha or set a wider `dtype` (float32)"
        )
    return merged


def apply_vector(
    target: torch.Tensor, sft: torch.Tensor, grpo: torch.Tensor, coefficient: float
) -> torch.Tensor:
    """target + coefficient * (grpo - sft), computed in float64, rounded once to target.dtype."""
    if coefficient == 0:
        return target.clone()  # bit for bit, including the sign of zeros
    out = torch.empty(target.shape, dtype=target.dtype, device=target.device)
    flat_out, flat_t, flat_s, flat_g = (
        x.reshape(-1) for x in (out, target, sft, grpo)
    )
    for start in range(0, flat_t.numel(), BLOCK_ELEMENTS):
        block = slice(start, start + BLOCK_ELEMENTS)
        vector = flat_g[block].double() - flat_s[block].double()
        flat_out[block] = round_once(flat_t[block].double() + coefficient * vector, target.dtype)
    return out


def round_once(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Round float64 values to `dtype` with one correct rounding (to nearest, ties to even).

    torch converts float64 to bfloat16/float16 through float32, which rounds twice and can
    land on the wrong neighbour at a tie. Rounding to float32 "to odd" first (truncate, then
    set the last bit if anything was dropped) keeps the second rounding exact, because
    float32 carries more than two extra bits over either 16-bit format.
    """
    if dtype in (torch.float64, torch.float32):
        return values.to(dtype)
    single = values.float()
    widened = single.double()
    bits = single.view(torch.int32)
    bits = bits - (widened.abs() > values.abs()).int()  # undo rounding away from zero
    bits = bits | (widened != values).int()  # sticky bit: inexact -> odd
    return bits.view(torch.float32).to(dtype)


def register_method() -> None:
    """Register `reasoning_vector` with mergekit (idempotent)."""
    if reasoning_vector.spec.name not in {m.spec.name for m in registry.registered_methods()}:
        registry.register(reasoning_vector)


register_method()
