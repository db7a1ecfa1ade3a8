"""The `reasoning_vector` merge method: mergekit's declarative signature over one kernel.

Registered by name when mergekit's `merge_methods` package is imported (see
hooks/_rv_merge_hook.py), so plain `mergekit-yaml` finds it. The arithmetic itself is
rv_merge.merge.arithmetic.merged_tensor, shared with in-memory merges.
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
from rv_merge.merge.arithmetic import merged_tensor


@merge_method(
    name="reasoning_vector",
    pretty_name="Reasoning Vector",
    reference_url="https://arxiv.org/abs/2509.01363",
    contract=InputContract(
        base=BasePolicy.REQUIRED, min_inputs=2, max_inputs=3, min_non_base=1, max_non_base=2
    ),
)
def reasoning_vector(
    group: TensorGroup,
    role: PerNonBase[Literal["sft", "grpo", "vector"]],
    alpha: float,
    sign: Literal[1, -1] = 1,
) -> torch.Tensor:
    """target + sign * alpha * v, where v is GRPO - SFT, or a stored vector (role: vector)."""
    by_role = {role[entry.id]: entry for entry in group.non_base}
    if set(by_role) not in ({"sft", "grpo"}, {"vector"}):
        raise RecipeError(
            f"tensor {group.metadata.name}: the sources need roles sft and grpo, or one "
            f"role vector; got {sorted(role.values())}"
        )
    plus, minus = (by_role["vector"], None) if "vector" in by_role else (by_role["grpo"], by_role["sft"])
    origins = tuple(str(entry.id) for entry in (group.base, plus, minus) if entry is not None)
    return merged_tensor(group.metadata.name, sign * alpha, group.base.tensor, plus.tensor,
                         None if minus is None else minus.tensor, origins)


def register_method() -> None:
    """Register `reasoning_vector` with mergekit (idempotent)."""
    if reasoning_vector.spec.name not in {m.spec.name for m in registry.registered_methods()}:
        registry.register(reasoning_vector)


register_method()
