"""Alpha sweeps without writing models: set a loaded model's weights to target + c * v.

For each coefficient c = sign * alpha, every weight is recomputed from the files on disk,
tensor by tensor, with the merge kernel's own arithmetic (rv_merge.method.apply_vector, after
the same casts mergekit applies), and copied into the loaded model. So each step gives
bit for bit the weights `mergekit-yaml` would write for that alpha, and errors never
accumulate from one alpha to the next. Memory: the model plus three tensors.
"""

from __future__ import annotations

import torch

from rv_merge.checks import locate_model
from rv_merge.errors import RecipeError
from rv_merge.method import apply_vector
from rv_merge.recipe import Recipe
from rv_merge.vectors.extract import load_weight, weight_files
from rv_merge.vectors.store import dense_tensor


class InMemoryMerge:
    """The merged weights of one recipe, for any coefficient, computed from its sources."""

    def __init__(self, recipe: Recipe, source: str):
        self.dtype = getattr(torch, recipe.dtype) if recipe.dtype else None
        self.target = weight_files(locate_model(recipe.target, source))
        self.vector = locate_model(recipe.source("vector"), source) if recipe.source("vector") else None
        if self.vector is None:
            self.sft = weight_files(locate_model(recipe.source("sft"), source))
            self.grpo = weight_files(locate_model(recipe.source("grpo"), source))

    def tensor(self, name: str, coefficient: float) -> torch.Tensor:
        """What the merge writes for `name`: target + coefficient * v, in the merge dtype."""
        target = load_weight(self.target, name)
        if self.vector is not None:
            return apply_vector(target.to(self.dtype or target.dtype), coefficient, dense_tensor(self.vector, name))
        sft, grpo = load_weight(self.sft, name), load_weight(self.grpo, name)
        dtype = self.dtype or torch.promote_types(torch.promote_types(target.dtype, sft.dtype), grpo.dtype)
        target, sft, grpo = (x.to(dtype) for x in (target, sft, grpo))
        return apply_vector(target, coefficient, grpo, sft)

    def apply(self, model: torch.nn.Module, coefficient: float) -> None:
        """Overwrite `model`'s weights in place with the merge for `coefficient`."""
        parameters = model.state_dict()
        missing = sorted(set(self.target) - set(parameters))
        if missing:
            raise RecipeError(f"the loaded model has no weight {missing[0]}; it is not the target's architecture")
        with torch.no_grad():
            for name in self.target:
                parameters[name].copy_(self.tensor(name, coefficient))


def sweep_label(alpha: float) -> str:
    return f"alpha={alpha:g}"
