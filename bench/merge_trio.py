"""Random target/SFT/GRPO trios with the real shapes of Qwen2.5 models, for bench_merge.py.

Each file is written tensor by tensor (the safetensors layout: an 8-byte header length, a
JSON header with every tensor's offsets, then the raw data), so building a 7B trio needs the
memory of one tensor, not of a model. Values: base ~ N(0, 0.02); target and SFT add noise
of 0.005, GRPO 0.001 (so GRPO - SFT is a small, dense difference, as after RL), bfloat16.
Each tensor has its own seeded generator: a trio is the same whoever builds it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch

# Published configs of the Qwen2.5 base models (config.json on the Hub).
QWEN25_SHAPES = {
    "0.5B": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "1.5B": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                 num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "3B": dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
               num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "7B": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
               num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False),
}
ROLES = ("target", "sft", "grpo")
NOISE = {"target": 0.005, "sft": 0.005, "grpo": 0.001}


def qwen25_config(size: str):
    from transformers import Qwen2Config

    return Qwen2Config(**QWEN25_SHAPES[size], max_position_embeddings=32768, architectures=["Qwen2ForCausalLM"])


def tensor_shapes(size: str) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor a checkpoint of this size stores (a tied head is not stored)."""
    from transformers import Qwen2ForCausalLM

    config = qwen25_config(size)
    with torch.device("meta"):
        state = Qwen2ForCausalLM(config).state_dict()
    return {name: tuple(t.shape) for name, t in state.items()
            if not (config.tie_word_embeddings and name == "lm_head.weight")}


def parameter_count(size: str) -> int:
    return sum(_numel(shape) for shape in tensor_shapes(size).values())


def trio_bytes(size: str) -> int:
    """Disk bytes of one model of this size in bfloat16."""
    return 2 * parameter_count(size)


def build_trio(size: str, root: Path) -> dict[str, Path]:
    """Write (or find) root/<size>/{target,sft,grpo}/ with config, tokenizer and model.safetensors."""
    from rv_merge.demo.toy_models import build_tokenizer

    folders = {role: root / size / role for role in ROLES}
    done = root / size / "complete"
    if done.is_file():
        return folders
    shutil.rmtree(root / size, ignore_errors=True)
    shapes = tensor_shapes(size)
    offsets, position = {}, 0
    for name, shape in shapes.items():
        offsets[name] = (position, position + 2 * _numel(shape))
        position = offsets[name][1]
    header = {name: {"dtype": "BF16", "shape": list(shape), "data_offsets": list(offsets[name])}
              for name, shape in shapes.items()}
    header["__metadata__"] = {"format": "pt"}
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)
    handles = {}
    for role, folder in folders.items():
        folder.mkdir(parents=True)
        qwen25_config(size).save_pretrained(folder)
        build_tokenizer(folder)
        handles[role] = open(folder / "model.safetensors", "wb")
        handles[role].write(len(header_bytes).to_bytes(8, "little") + header_bytes)
    try:
        for index, (name, shape) in enumerate(shapes.items()):
            generator = torch.Generator().manual_seed(int(hashlib.sha256(name.encode()).hexdigest()[:8], 16))
            base = torch.randn(shape, generator=generator).mul_(0.02)
            for role in ROLES:
                noisy = torch.randn(shape, generator=generator).mul_(NOISE[role]).add_(base)
                handles[role].write(noisy.to(torch.bfloat16).view(torch.int16).numpy().tobytes())
            if index % 50 == 0:
                print(f"  {size} trio: {index}/{len(shapes)} tensors", flush=True)
    finally:
        for handle in handles.values():
            handle.close()
    done.write_text("")
    return folders


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count
