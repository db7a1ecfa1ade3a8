"""How much of a vector the output dtype rounds away.

RL updates are small: added to a target written in bfloat16, many entries of the vector
change nothing, because target + v rounds back to the target. This counts, per output dtype,
the share of the vector's non-zero entries for which the output equals the rounded target,
and the share of the vector's squared norm those entries hold (float64, one tensor at a
time). `rv vector info --target` reports it for each dtype; `rv check --rounding` for a
recipe's own output dtype and coefficient, before any merge.
"""

from __future__ import annotations

import torch

from rv_merge.merge.arithmetic import merge_dtype, round_once
from rv_merge.recipe.loading import load_recipe
from rv_merge.recipe.model_locations import locate_model
from rv_merge.recipe.schema import Recipe
from rv_merge.recipe.vector_folder import dense_tensor, read_metadata
from rv_merge.recipe.weight_files import load_weight, weight_files

OUTPUT_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


class RoundingLoss:
    """Running counts over tensors; `shares()` gives the result per dtype."""

    def __init__(self, dtypes: dict[str, torch.dtype] = OUTPUT_DTYPES):
        self.dtypes = dtypes
        self.nonzero, self.norm_sq = 0, 0.0
        self.lost = {label: [0, 0.0] for label in dtypes}

    def add(self, target: torch.Tensor, vector: torch.Tensor) -> None:
        """`target` and `vector` in float64, same shape; the output is target + vector."""
        nonzero = vector != 0
        squares = vector * vector
        self.nonzero += int(nonzero.sum())
        self.norm_sq += float(squares.sum())
        for label, dtype in self.dtypes.items():
            lost = nonzero & (round_once(target + vector, dtype) == round_once(target, dtype))
            self.lost[label][0] += int(lost.sum())
            self.lost[label][1] += float(squares[lost].sum())

    def shares(self) -> dict[str, dict]:
        if not self.nonzero or not self.norm_sq:
            return {}
        return {label: {"entries": entries / self.nonzero, "norm_sq": norm / self.norm_sq}
                for label, (entries, norm) in self.lost.items()}


def describe_loss(label: str, loss: dict, alpha_note: str = "alpha 1") -> str:
    return (f"written in {label}, target + vector ({alpha_note}) equals the rounded target in "
            f"{loss['entries']:.1%} of the entries where the vector is non-zero, which hold "
            f"{loss['norm_sq']:.1%} of its squared norm: that much of the vector is rounded away")


def recipe_rounding_loss(path: str) -> list[str]:
    """`rv check --rounding`: the loss for the recipe's coefficient and merge dtype (its `dtype`,
    else the promoted dtype of its models, as the merge computes it)."""
    recipe = load_recipe(path)
    alpha, sign = recipe.parameters.alpha, recipe.parameters.sign
    if not isinstance(alpha, (int, float)):
        return [f"rounding: not computed for a per-layer or filtered alpha ({alpha})"]
    shares = recipe_rounding_shares(recipe, path)
    return [f"rounding: {describe_loss(label, loss, f'alpha {alpha}, sign {sign:+d}')}"
            for label, loss in shares.items()] or ["rounding: the vector is zero where it meets the target"]


def recipe_rounding_shares(recipe: Recipe, path: str) -> dict[str, dict]:
    """{output dtype: {"entries", "norm_sq"}} lost for a recipe with one number as alpha ({} if
    the vector is zero wherever it meets the target)."""
    alpha, sign = recipe.parameters.alpha, recipe.parameters.sign
    target_files = weight_files(locate_model(recipe.target, path))
    sources = {role: locate_model(ref, path) for role, ref in recipe.sources.items()}
    vector_names = set(read_metadata(sources["vector"])["tensors"]) if "vector" in sources else set()
    pair = None if "vector" in sources else (weight_files(sources["sft"]), weight_files(sources["grpo"]))
    counts = None
    for name in target_files:
        target = load_weight(target_files, name)
        if pair is None and name in vector_names:
            models, difference = [target], dense_tensor(sources["vector"], name)
        elif pair is not None and name in pair[0] and name in pair[1]:
            sft, grpo = load_weight(pair[0], name), load_weight(pair[1], name)
            models, difference = [target, sft, grpo], grpo.double() - sft.double()
        else:
            continue
        if counts is None:
            dtype = merge_dtype([m.dtype for m in models], OUTPUT_DTYPES.get(recipe.dtype or ""))
            label = str(dtype).removeprefix("torch.")
            counts = RoundingLoss({label: dtype})
        if difference.shape == target.shape:
            counts.add(target.double(), sign * float(alpha) * difference)
    return counts.shares() if counts else {}
