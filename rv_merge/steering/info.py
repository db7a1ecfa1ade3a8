"""`rv steer info`: what a set of steering vectors looks like, layer by layer.

Per layer: the vector's norm; with a model, its norm relative to the mean norm of that
layer's output over a few prompts (how hard it pushes the residual stream); the cosine with
the previous layer's vector; and a logit lens: the tokens whose unembedding rows score
highest against the vector (softmax(W_U v), without the final norm, as in arXiv 2505.18706).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import torch

from rv_merge.steering.artifact import SteeringVectors
from rv_merge.steering.extract import layer_output_means


def steering_info(steering: SteeringVectors, model: Optional[Path] = None, prompts: Optional[list[str]] = None,
                  top_k: int = 5) -> list[dict]:
    """One row per layer: layer, norm, relative_to_residual, cosine_with_previous, top_tokens."""
    vectors = steering.vectors.double()
    norms = vectors.norm(dim=1)
    residual = (layer_output_means(model, prompts, lambda hidden: hidden.norm(dim=-1).sum())
                if model is not None and prompts else None)
    tokens = _logit_lens(model, vectors, top_k) if model is not None else None
    rows = []
    for layer in range(steering.layers):
        previous = vectors[layer - 1] if layer else None
        cosine = (float(vectors[layer] @ previous / (norms[layer] * norms[layer - 1]))
                  if previous is not None and norms[layer] and norms[layer - 1] else None)
        rows.append({"layer": layer, "norm": float(norms[layer]),
                     "relative_to_residual": float(norms[layer] / residual[layer]) if residual is not None else None,
                     "cosine_with_previous": cosine, "top_tokens": tokens[layer] if tokens else None})
    return rows


def _logit_lens(model: Path, vectors: torch.Tensor, top_k: int) -> list[list[str]]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    unembedding = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).get_output_embeddings().weight
    scores = vectors @ unembedding.double().T  # [L, vocab]
    return [[tokenizer.decode([int(i)]) for i in row.topk(top_k).indices] for row in scores]


def format_steering_info(rows: list[dict]) -> str:
    lines = [f"{'layer':>5} {'norm':>10} {'rel.resid':>9} {'cos prev':>8}  logit lens (top tokens)"]
    for row in rows:
        rel = f"{row['relative_to_residual']:9.4f}" if row["relative_to_residual"] is not None else f"{'-':>9}"
        cos = f"{row['cosine_with_previous']:8.3f}" if row["cosine_with_previous"] is not None else f"{'-':>8}"
        top = " ".join(repr(t) for t in row["top_tokens"]) if row["top_tokens"] else "-"
        lines.append(f"{row['layer']:>5} {row['norm']:>10.4g} {rel} {cos}  {top}")
    total = math.sqrt(sum(row["norm"] ** 2 for row in rows))
    lines.append(f"total norm {total:.4g} over {len(rows)} layers")
    return "\n".join(lines)


def plot_steering_info(rows: list[dict], path: Path, title: str) -> None:
    from rv_merge.report.plots import plot_per_layer

    plot_per_layer(rows, [("norm", "norm"), ("relative_to_residual", "norm / residual norm"),
                          ("cosine_with_previous", "cosine with previous layer")], path, title)
