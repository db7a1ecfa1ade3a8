"""Alpha sweeps without writing models: set a loaded model's weights to target + c * v.

For each coefficient c = sign * alpha, every weight is recomputed from the files on disk,
tensor by tensor, with the merge's own computation (rv_merge.merge.arithmetic.merged_tensor:
the same casts, screens and rounding as `mergekit-yaml`), and copied into the loaded model.
So each step gives bit for bit the weights mergekit would write for that alpha, and errors
never accumulate from one alpha to the next. Memory: the model plus three tensors.

The recipe passes the same compatibility checks as a merge first. Aligning vocabularies by
token string (`tokenizer_source`) is mergekit's own embedding surgery, which is not repeated
here: such recipes are refused for in-memory sweeps.
"""

from __future__ import annotations

import torch

from rv_merge.errors import CompatibilityError, RecipeError
from rv_merge.merge.arithmetic import merged_tensor
from rv_merge.recipe.compatibility import check_recipe
from rv_merge.recipe.head_tying import UNTIE
from rv_merge.recipe.model_locations import locate_model
from rv_merge.recipe.schema import Recipe
from rv_merge.recipe.weight_files import load_weight, weight_files
from rv_merge.recipe.vector_folder import dense_tensor


class InMemoryMerge:
    """The merged weights of one recipe, for any coefficient, computed from its sources."""

    def __init__(self, recipe: Recipe, source: str):
        if recipe.align_vocabularies:
            raise RecipeError(f"{source}: eval.alphas merges in memory, which does not align vocabularies "
                              "(`tokenizer_source`); write one recipe per alpha instead")
        if check_recipe(recipe, source).output_head == UNTIE:
            raise RecipeError(f"{source}: eval.alphas merges into the loaded target, whose lm_head is tied to its "
                              "embeddings, but this pair's heads are untied: write one recipe per alpha instead")
        self.dtype = getattr(torch, recipe.dtype) if recipe.dtype else None
        self.target = weight_files(locate_model(recipe.target, source))
        self.references = {"target": recipe.target, **recipe.sources}
        self.vector = locate_model(recipe.source("vector"), source) if recipe.source("vector") else None
        if self.vector is None:
            self.sft = weight_files(locate_model(recipe.source("sft"), source))
            self.grpo = weight_files(locate_model(recipe.source("grpo"), source))

    def tensor(self, name: str, coefficient: float) -> torch.Tensor:
        """What the merge writes for `name`: target + coefficient * v, in the merge dtype."""
        target = load_weight(self.target, name)
        if self.vector is not None:
            origins = (self.references["target"], self.references["vector"])
            return merged_tensor(name, coefficient, target, dense_tensor(self.vector, name), None, origins,
                                 self.dtype)
        origins = tuple(self.references[role] for role in ("target", "grpo", "sft"))
        return merged_tensor(name, coefficient, target, load_weight(self.grpo, name), load_weight(self.sft, name),
                             origins, self.dtype)

    def apply(self, model: torch.nn.Module, coefficient: float) -> None:
        """Overwrite `model`'s weights in place with the merge for `coefficient`."""
        parameters = model.state_dict()
        missing = sorted(set(self.target) - set(parameters))
        if missing:
            raise CompatibilityError(f"the loaded model has no weight {missing[0]}; it is not the target's architecture")
        with torch.no_grad():
            for name in self.target:
                parameters[name].copy_(self.tensor(name, coefficient))


def sweep_label(alpha: float) -> str:
    return f"alpha={alpha:g}"
