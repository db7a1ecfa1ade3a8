"""Export a low-rank vector as a PEFT LoRA adapter (what peft and vLLM load).

A LoRA adapter adds B @ A * (lora_alpha / r) to the weight of a linear layer. The export
sets lora_alpha = r (scaling 1) and folds sign * alpha into B, so loading the adapter onto
the target gives target + sign * alpha * (B @ A) for every linear layer.

What a LoRA adapter cannot carry, and what happens to it (listed in the adapter's README.md
and returned by `export_lora`):
- 1-D tensors (RMSNorm weights, q/k/v biases): no low-rank form; left out.
- embeddings (and an untied lm_head): peft can train embedding LoRAs, but vLLM does not
  load them; left out.
Their share of the vector's squared norm is reported. To apply them as well, use the
vector folder itself as a recipe source (`role: vector`), which applies every tensor.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from rv_merge.atomic_files import write_folder
from rv_merge.errors import VectorFileError
from rv_merge.recipe.vector_folder import FILE, SafetensorsStream, read_metadata

PREFIX = "base_model.model."
WEIGHT = ".weight"
NOT_LINEAR = ("embed_tokens.weight", "lm_head.weight", "wte.weight", "word_embeddings.weight")


def export_lora(vector: Path, out: Path, scale: float = 1.0, base_model: str = "") -> dict:
    """Write `vector`'s low-rank linear layers as a PEFT adapter folder; return a summary."""
    from safetensors import safe_open

    metadata = read_metadata(vector)
    lowrank = {n: i for n, i in metadata["tensors"].items() if i["encoding"] == "lowrank" and not n.endswith(NOT_LINEAR)}
    if not lowrank:
        raise VectorFileError(f"{vector}: no low-rank tensors; make them first with "
                              "`rv vector compress VECTOR OUT --method lowrank --rank N`")
    ranks = {i["rank"] for i in lowrank.values()}
    rank = max(ranks)
    left_out = {n: i for n, i in metadata["tensors"].items() if n not in lowrank}
    total = sum(i["norm"] ** 2 for i in metadata["tensors"].values())
    left_share = sum(i["norm"] ** 2 for i in left_out.values()) / total if total else 0.0
    modules = sorted({n.removesuffix(WEIGHT).rsplit(".", 1)[-1] for n in lowrank})

    def write(folder: str) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True)
        stream = SafetensorsStream(folder / "adapter_model.safetensors")
        with safe_open(str(Path(vector) / FILE), "pt") as handle:
            for name, info in lowrank.items():
                b, a = handle.get_tensor(f"{name}.lora_B"), handle.get_tensor(f"{name}.lora_A")
                if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
                    raise VectorFileError(f"{vector}: tensor {name} holds NaN or Inf; the vector file is corrupt: "
                                          "compress it again from its source")
                pad = rank - info["rank"]  # peft needs one r per adapter: pad smaller ranks with zeros
                b = _pad(b * scale, 1, pad)
                a = _pad(a, 0, pad)
                module = PREFIX + name.removesuffix(WEIGHT)
                stream.add(f"{module}.lora_A.weight", a.contiguous())
                stream.add(f"{module}.lora_B.weight", b.contiguous())
        stream.finish({"format": "pt"})
        config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": rank,
                  "target_modules": modules, "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False,
                  "base_model_name_or_path": base_model, "inference_mode": True, "modules_to_save": None,
                  "use_rslora": False, "init_lora_weights": True}
        (folder / "adapter_config.json").write_text(json.dumps(config, indent=1))
        (folder / "README.md").write_text(_readme(vector, rank, scale, modules, left_out, left_share))

    write_folder(out, write)
    return {"rank": rank, "modules": modules, "lora_tensors": len(lowrank), "left_out": sorted(left_out),
            "left_out_norm_share": left_share}


def _pad(tensor, dim: int, count: int):
    if count == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = count
    return torch.cat([tensor, tensor.new_zeros(shape)], dim=dim)


def _readme(vector: Path, rank: int, scale: float, modules: list[str], left_out: dict, share: float) -> str:
    lines = [
        "# LoRA adapter exported by rv-merge", "",
        f"From the vector `{vector}`: rank {rank}, scaling 1 (lora_alpha = r), sign * alpha = {scale} "
        f"folded into lora_B. Target modules: {', '.join(modules)}.", "",
        f"Not in this adapter ({len(left_out)} tensors, {share:.2%} of the vector's squared norm): "
        "tensors a LoRA cannot express (norms, biases) and embeddings (vLLM loads no embedding LoRA). "
        "Use the vector folder as a recipe source (`role: vector`) to apply them too.", "",
    ]
    lines += [f"- `{name}` ({info['encoding']}, shape {info['shape']})" for name, info in sorted(left_out.items())]
    return "\n".join(lines) + "\n"
