"""Steering vectors in the formats other tools load.

- llama.cpp control vector (GGUF): `general.architecture = controlvector`,
  `controlvector.model_hint`, `controlvector.layer_count`, and one float32 tensor
  `direction.N` per layer, added at the output of layer N (0-based, as here). llama.cpp
  rejects N = 0, so layer 0's vector is left out, and the export says so.
  Use: `llama-cli -m MODEL.gguf --control-vector-scaled FILE SCALE`.
- lm-eval's `steered` model (lm_eval/models/hf_steered.py): a torch file of
  {"layers.{l}": {"steering_vector", "steering_coefficient", "action": "add", "bias": None,
  "head_index": None}}, hook names relative to `model.base_model`. (lm-eval reads it with
  torch.load(weights_only=False): only load files you trust.)
- `.npy` of shape [L, d], like the authors' `steering_vectors.npy` (arXiv 2505.18706).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rv_merge.atomic_files import write_file
from rv_merge.steering.artifact import SteeringVectors


def export_control_vector(steering: SteeringVectors, out: Path, scale: float = 1.0) -> list[str]:
    """Write a llama.cpp control-vector GGUF; return notes on what could not be written."""
    from gguf import GGUFWriter

    notes = []
    rows = scale * steering.vectors.double()
    if bool(rows[0].any()):
        notes.append(f"layer 0's vector (norm {float(rows[0].norm()):.4g}) is left out: llama.cpp control vectors "
                     "cannot hold layer 0")

    def write(path: Path) -> None:
        writer = GGUFWriter(str(path), arch="controlvector")
        writer.add_string("controlvector.model_hint", steering.metadata.get("model_type", ""))
        writer.add_uint32("controlvector.layer_count", steering.layers - 1)
        for index in range(1, steering.layers):
            writer.add_tensor(f"direction.{index}", rows[index].to(torch.float32).numpy())
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()

    write_file(out, write)
    return notes


def export_lm_eval_steered(steering: SteeringVectors, out: Path, scale: float = 1.0) -> None:
    """Write the `.pt` that `lm-eval --model steered --model_args steer_path=...` reads."""
    config = {f"layers.{index}": {"steering_vector": steering.vectors[index].clone(), "steering_coefficient": scale,
                                  "action": "add", "bias": None, "head_index": None}
              for index in range(steering.layers)}
    write_file(out, lambda path: torch.save(config, path))


def export_numpy(steering: SteeringVectors, out: Path, scale: float = 1.0) -> None:
    """Write [L, d] float32 as `.npy`."""
    array = (scale * steering.vectors.double()).to(torch.float32).numpy()

    def write(path: Path) -> None:
        with open(path, "wb") as handle:  # a handle: np.save would add ".npy" to the temporary name
            np.save(handle, array)

    write_file(out, write)
