"""The merged model's output head when the target and the donors tie it differently.

Fine-tuning often unties a model's head: an SFT or GRPO checkpoint of a target that ties
`lm_head` to `embed_tokens` may store an `lm_head` of its own. Every model's *effective*
head is its `lm_head`, or its embeddings where it has none; mergekit computes exactly that
(a missing `lm_head` is read from `embed_tokens`), so the merged head is always

    target's effective head + sign * alpha * (GRPO's effective head - SFT's effective head).

What remains is the output's config, which comes from the target:

- target untied: nothing to do (the output has the target's separate head);
- target tied, and every donor's effective head equals its embeddings (no `lm_head`, or one
  identical to `embed_tokens`): the merged head equals the merged embeddings, so the output
  stays tied; a head mergekit wrote anyway is dropped (DROP_HEAD);
- target tied, a donor's head differs from its embeddings: the output gets its own head and
  `tie_word_embeddings: false` (UNTIE), since tying would throw the vector's head away.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

from rv_merge.recipe.vector_folder import dense_tensor
from rv_merge.recipe.weight_files import load_weight, weight_files

HEAD = "lm_head.weight"
AS_MERGED, DROP_HEAD, UNTIE = "as merged", "drop lm_head", "untie"


class CheckedModel(Protocol):
    label: str
    path: Path
    tensors: dict
    weights_format: str


def output_head(target: CheckedModel, target_tied: bool, donors: list[CheckedModel]) -> str:
    """AS_MERGED, DROP_HEAD or UNTIE (see the module docstring)."""
    if not target_tied:
        return AS_MERGED
    if all(_head_is_embedding(donor) for donor in donors):
        return DROP_HEAD if any(HEAD in donor.tensors for donor in donors) else AS_MERGED
    return UNTIE


def describe(plan: str, target: CheckedModel) -> str:
    """The line `rv check` prints about the output head."""
    if plan == UNTIE:
        return (f"ok   {target.label} ties lm_head to its embeddings but the pair's heads differ from theirs: the "
                "output gets its own lm_head (target embeddings + vector head) and tie_word_embeddings: false")
    if plan == DROP_HEAD:
        return "ok   the pair stores lm_head equal to its embeddings: treated as tied, the output stays tied"
    return f"ok   lm_head as in {target.label}"


def embedding_name(tensors: dict) -> str | None:
    """The input embedding among a model's tensor names (the weight a missing lm_head ties to)."""
    return next((name for name in tensors if name.endswith("embed_tokens.weight")), None)


def _head_is_embedding(model: CheckedModel) -> bool:
    """True when the model has no separate head, or its head equals its embeddings bit for bit."""
    if HEAD not in model.tensors:
        return True
    embedding = embedding_name(model.tensors)
    if embedding is None:
        return False
    if model.weights_format.startswith("rv vector"):
        return torch.equal(dense_tensor(model.path, HEAD), dense_tensor(model.path, embedding))
    if model.weights_format != "safetensors":
        return False  # pickled weights are not opened here: untying is exact either way
    files = weight_files(model.path)
    return torch.equal(load_weight(files, HEAD), load_weight(files, embedding))
