"""Apply steering vectors to a model: as forward hooks (any architecture, nothing written) or
folded into a model folder as `mlp.down_proj` biases (Llama family, loads anywhere).

Both add scale * v[l] to the output of decoder layer l for l in the layer range. Folding is
exact for pre-norm models whose MLP output is the last thing added in the layer (Llama,
Mistral, Qwen2): the bias of down_proj is added to the residual stream at every position.
transformers gives an MLP bias only to Llama-family configs (`mlp_bias=True`; gate and up
get zero biases, written explicitly because vLLM refuses checkpoints with missing
parameters). Qwen2 and other architectures have no such flag: use the hooks (or the lm-eval
`steered` export) there.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import torch

from rv_merge.atomic_files import write_folder
from rv_merge.errors import CompatibilityError
from rv_merge.steering.artifact import SteeringVectors

FOLDABLE = ("llama",)  # configs whose MLP takes `mlp_bias` in transformers


def layer_range(steering: SteeringVectors, layers: Optional[tuple[int, int]]) -> range:
    """The layers to steer: `layers` = (first, last), inclusive, 0-based; None: all of them."""
    if layers is None:
        return range(steering.layers)
    first, last = layers
    if not 0 <= first <= last < steering.layers:
        raise CompatibilityError(f"layer range {first}-{last} is outside the vectors' layers 0-{steering.layers - 1}")
    return range(first, last + 1)


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        raise CompatibilityError(f"{type(model).__name__}: no `model.layers`; rv steer knows decoder-only models")
    return layers


def add_hooks(model: torch.nn.Module, steering: SteeringVectors, scale: float = 1.0,
              layers: Optional[tuple[int, int]] = None) -> list:
    """Make decoder layer l add scale * v[l] to its output (l in the layer range); return the
    hook handles (`handle.remove()` undoes it)."""
    modules = decoder_layers(model)
    if len(modules) != steering.layers or model.config.hidden_size != steering.hidden_size:
        raise CompatibilityError(f"steering vectors for {steering.layers} layers x {steering.hidden_size} do not fit "
                                 f"this model ({len(modules)} layers x {model.config.hidden_size})")
    handles = []
    for index in layer_range(steering, layers):
        shift = (scale * steering.vectors[index].double()).to(next(modules[index].parameters()).dtype)
        handles.append(modules[index].register_forward_hook(
            lambda _module, _inputs, output, shift=shift: add_to_output(output, shift)))
    return handles


@contextmanager
def steered(model: torch.nn.Module, steering: SteeringVectors, scale: float = 1.0,
            layers: Optional[tuple[int, int]] = None) -> Iterator[torch.nn.Module]:
    """While inside, decoder layer l adds scale * v[l] to its output (l in the layer range)."""
    handles = add_hooks(model, steering, scale, layers)
    try:
        yield model
    finally:
        for handle in handles:
            handle.remove()


def add_to_output(output, shift: torch.Tensor):
    """A decoder layer's output plus `shift` (transformers 4.x layers return tuples, 5.x tensors)."""
    if isinstance(output, tuple):
        return (output[0] + shift.to(output[0].device), *output[1:])
    return output + shift.to(output.device)


def fold_into_model(model_folder: Path, steering: SteeringVectors, out: Path, scale: float = 1.0,
                    layers: Optional[tuple[int, int]] = None) -> None:
    """Write `out`: the model with scale * v[l] as layer l's down_proj bias (Llama family only)."""
    from safetensors.torch import load_file, save_file

    from rv_merge.recipe.vector_folder import copy_model_files

    config = json.loads((model_folder / "config.json").read_text())
    if config.get("model_type") not in FOLDABLE:
        raise CompatibilityError(
            f"{model_folder}: model type {config.get('model_type')!r} has no MLP bias in transformers, so the "
            f"vectors cannot be folded into a standard folder (foldable: {', '.join(FOLDABLE)}); apply them "
            "with hooks (rv eval with a steering recipe) or export them for lm-eval's `steered` model")
    if config.get("mlp_bias"):
        raise CompatibilityError(f"{model_folder}: already has MLP biases; fold into the model without them")
    files = sorted(model_folder.glob("*.safetensors"))
    if len(files) != 1:
        raise CompatibilityError(f"{model_folder}: folding reads one model.safetensors file, found {len(files)}")
    weights = load_file(str(files[0]))
    steered_layers = set(layer_range(steering, layers))
    for index in range(steering.layers):
        prefix = f"model.layers.{index}.mlp."
        down = weights[prefix + "down_proj.weight"]
        bias = scale * steering.vectors[index].double() if index in steered_layers else torch.zeros(down.shape[0])
        weights[prefix + "down_proj.bias"] = bias.to(down.dtype)
        for name in ("gate_proj", "up_proj"):
            weights[f"{prefix}{name}.bias"] = torch.zeros(weights[f"{prefix}{name}.weight"].shape[0], dtype=down.dtype)

    def write(staging: str) -> None:
        folder = Path(staging)
        folder.mkdir(parents=True)
        copy_model_files(model_folder, folder)
        (folder / "config.json").write_text(json.dumps({**config, "mlp_bias": True}, indent=2))
        save_file(weights, str(folder / files[0].name), metadata={"format": "pt"})

    write_folder(out, write)
