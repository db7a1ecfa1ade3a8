"""The on-disk form of per-layer steering vectors: a folder beside its model's config.

    steering.safetensors   one tensor `steering_vectors`, float32, shape [L, d], plus the
                           metadata (JSON under the `rv_steering` key)
    config.json, tokenizer files ...   copied from the model the vectors were made for

Row l is added to the output of decoder layer l (`model.layers[l]` in transformers,
0-based), at every position, prompt included: for pre-norm models (Llama, Qwen2, Mistral)
exactly the bias of layer l's `mlp.down_proj` (arXiv 2505.18706). The metadata says so
(`site`, `layer_indexing`), with the model type, sizes, a default scale, the fingerprint of
the model the vectors were made for and how they were made.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from rv_merge.atomic_files import write_folder
from rv_merge.errors import VectorFileError
from rv_merge.recipe.model_locations import fingerprint_folder
from rv_merge.recipe.vector_folder import copy_model_files

FILE = "steering.safetensors"
TENSOR = "steering_vectors"
METADATA_KEY = "rv_steering"
FORMAT = "rv-steering/1"
SITE = "decoder-layer output (residual stream after layer l; = mlp.down_proj bias of layer l in pre-norm models)"
LAYER_INDEXING = "0-based: row l is transformers' model.layers[l]"


@dataclass
class SteeringVectors:
    vectors: torch.Tensor  # [L, d] float32
    metadata: dict = field(default_factory=dict)

    @property
    def layers(self) -> int:
        return self.vectors.shape[0]

    @property
    def hidden_size(self) -> int:
        return self.vectors.shape[1]


def model_shape(config: dict) -> tuple[str, int, int]:
    """(model type, layers, hidden size) from a model's config.json contents."""
    try:
        return config["model_type"], int(config["num_hidden_layers"]), int(config["hidden_size"])
    except KeyError as missing:
        raise VectorFileError(f"the model's config.json has no {missing}: not a decoder-only model rv steer knows")


def new_vectors(model: Path, vectors: torch.Tensor, made_by: dict, scale: float = 1.0) -> SteeringVectors:
    """Vectors for `model` (a folder), checked against its config: one finite row per layer."""
    model_type, layers, hidden = model_shape(json.loads((model / "config.json").read_text()))
    if tuple(vectors.shape) != (layers, hidden):
        raise VectorFileError(f"steering vectors of shape {tuple(vectors.shape)} do not fit {model} "
                              f"({layers} layers x hidden size {hidden})")
    if not torch.isfinite(vectors).all():
        raise VectorFileError("steering vectors hold NaN or Inf values; nothing was written")
    metadata = {"format": FORMAT, "model_type": model_type, "layers": layers, "hidden_size": hidden,
                "site": SITE, "layer_indexing": LAYER_INDEXING, "scale": scale,
                "model": str(model), "model_fingerprint": fingerprint_folder(model), "made_by": made_by}
    return SteeringVectors(vectors.detach().to(torch.float32).contiguous(), metadata)


def save_vectors(steering: SteeringVectors, out: Path, model: Path) -> None:
    """Write the folder atomically: the vectors, and `model`'s config and tokenizer."""

    def write(staging: str) -> None:
        folder = Path(staging)
        folder.mkdir(parents=True)
        copy_model_files(model, folder)
        save_file({TENSOR: steering.vectors}, str(folder / FILE),
                  metadata={"format": "pt", METADATA_KEY: json.dumps(steering.metadata)})

    write_folder(out, write)


def load_vectors(folder: Path) -> SteeringVectors:
    path = Path(folder) / FILE
    if not path.is_file():
        raise VectorFileError(f"{folder}: no {FILE}; make one with rv steer extract or rv steer train")
    with safe_open(str(path), "pt") as handle:
        metadata = json.loads((handle.metadata() or {}).get(METADATA_KEY, "{}"))
        vectors = handle.get_tensor(TENSOR)
    if metadata.get("format") != FORMAT or vectors.dim() != 2:
        raise VectorFileError(f"{path}: not an rv steering file (format {metadata.get('format')!r})")
    return SteeringVectors(vectors, metadata)

