"""Training-free steering vectors: how a tuned model's residual stream differs from its base's.

Over a set of prompts, the mean output of every decoder layer (all positions of all
prompts) is measured for the base model and for the tuned one (for example SFT and GRPO,
or a target and target + v). With D_l = mean_tuned(layer l) - mean_base(layer l), a
steering vector added at layer l's output stays in the residual stream for every later
layer, so the vectors are the increments: v_0 = D_0, v_l = D_l - D_(l-1). Steering the base
with them moves the mean of every layer's output by D_l, to first order; how much of the
tuned model's behaviour that keeps is what evaluation measures (L x d numbers instead of
the whole weight difference).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch

from rv_merge.rewards import prompt
from rv_merge.errors import DataError
from rv_merge.recipe.model_locations import fingerprint_folder
from rv_merge.steering.apply import decoder_layers
from rv_merge.steering.artifact import SteeringVectors, new_vectors


def read_problems(path: Path, with_answers: bool = False) -> list[dict]:
    """Rows of a GSM8K-format JSONL file ({"question", "answer": "... #### N"}), refused with
    the line at fault; `with_answers`: each row must have its answer."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("question"), str) or (
                    with_answers and "####" not in str(row.get("answer", ""))):
                wanted = '{"question": ..., "answer": "... #### N"}' if with_answers else '{"question": ...}'
                raise DataError(f"{path}:{number}: expected a JSON object {wanted}")
            rows.append(row)
    if not rows:
        raise DataError(f"{path}: no problems")
    return rows


def read_prompts(path: Path, limit: int) -> list[str]:
    """Up to `limit` questions of a GSM8K-format JSONL file, as the demo task's prompts."""
    return [prompt(row["question"]) for row in read_problems(path)[:limit]]


def mean_layer_outputs(model_folder: Path, prompts: list[str]) -> torch.Tensor:
    """[L, d] float64: each decoder layer's output averaged over every token of every prompt."""
    return layer_output_means(model_folder, prompts, lambda hidden: hidden.sum(dim=0))


@torch.inference_mode()
def layer_output_means(model_folder: Path, prompts: list[str],
                       measure: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """[L, ...] float64: per decoder layer, `measure(output [tokens, d])` summed over the prompts
    and divided by their token count (the prompts run one at a time: no padding in the means)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_folder)
    model = AutoModelForCausalLM.from_pretrained(model_folder, dtype=torch.float32).eval()
    sums: dict[int, torch.Tensor] = {}

    def hook(index):
        def add(_module, _inputs, output):
            hidden = (output[0] if isinstance(output, tuple) else output)[0].double()
            sums[index] = sums.get(index, 0) + measure(hidden)
        return add

    layers = decoder_layers(model)
    handles = [layer.register_forward_hook(hook(i)) for i, layer in enumerate(layers)]
    count = 0
    try:
        for prompt in prompts:
            ids = tokenizer(prompt, return_tensors="pt")
            model(**ids)
            count += ids["input_ids"].shape[1]
    finally:
        for handle in handles:
            handle.remove()
    return torch.stack([sums[i] for i in range(len(layers))]) / count


def extract_increments(base: Path, tuned: Path, prompts: list[str]) -> SteeringVectors:
    """Steering vectors for `base` that move its layer outputs toward `tuned`'s (see above)."""
    differences = mean_layer_outputs(tuned, prompts) - mean_layer_outputs(base, prompts)
    increments = differences.clone()
    increments[1:] -= differences[:-1]
    made_by = {"method": "mean layer-output difference, as increments per layer", "base": str(base),
               "tuned": str(tuned), "tuned_fingerprint": fingerprint_folder(tuned), "prompts": len(prompts)}
    steering = new_vectors(base, increments.to(torch.float32), made_by)
    if not bool(steering.vectors.any()):
        raise DataError(f"{base} and {tuned} give the same layer outputs on these prompts: the vectors are zero")
    return steering
