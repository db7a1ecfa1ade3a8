"""Small Qwen2-architecture models with a real (trained) tokenizer, built offline.

They stand in for real checkpoints in the tests and the offline demo: a target and an
SFT/GRPO pair that share one initialization, the way the paper's checkpoints do. Everything
is deterministic for a given seed.
"""

from __future__ import annotations

from pathlib import Path

import torch

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
ROLES = ("target", "sft", "grpo")


def _corpus(seed: int) -> list[str]:
    """Arithmetic word-problem sentences to train the tokenizer on."""
    generator = torch.Generator().manual_seed(seed)
    names = ["Ana", "Bo", "Chen", "Dara", "Eli", "Femi", "Gus", "Hana"]
    things = ["apples", "books", "coins", "pencils", "stamps", "marbles"]
    lines = []
    for _ in range(400):
        a, b, n, t = (int(x) for x in torch.randint(0, 97, (4,), generator=generator))
        name, thing = names[n % len(names)], things[t % len(things)]
        lines.append(f"{name} has {a} {thing} and buys {b} more. {a} + {b} = {a + b}. #### {a + b}")
    return lines


def build_tokenizer(out_dir: Path, vocab_size: int = 320, corpus_seed: int = 0):
    """Train a byte-level BPE tokenizer and save it (with a chat template) into out_dir."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(_corpus(corpus_seed), trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(out_dir)
    return tokenizer


def build_toy_trio(
    root: str | Path,
    *,
    seed: int = 0,
    tied: bool = True,
    dtype: torch.dtype = torch.bfloat16,
    hidden_size: int = 32,
    layers: int = 2,
    vocab_size: int = 320,
) -> dict[str, Path]:
    """Write root/{target,sft,grpo}: one initialization, three small perturbations.

    target = init + noise, sft = init + noise', grpo = sft + small noise: so GRPO - SFT is a
    small vector, as after RL fine-tuning. Returns the three folders by role.
    """
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    root = Path(root)
    tokenizer_dir = root / "_tokenizer"
    tokenizer = build_tokenizer(tokenizer_dir, vocab_size=vocab_size)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,  # room for few-shot prompts in the eval demo
        tie_word_embeddings=tied,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    init = Qwen2ForCausalLM(config).state_dict()
    generator = torch.Generator().manual_seed(seed + 1)

    def perturbed(base: dict, scale: float) -> dict:
        return {
            k: v + scale * torch.randn(v.shape, generator=generator) for k, v in base.items()
        }

    sft = perturbed(init, 0.02)
    weights = {"target": perturbed(init, 0.02), "sft": sft, "grpo": perturbed(sft, 0.005)}
    folders = {}
    for role in ROLES:
        model = Qwen2ForCausalLM(config)
        model.load_state_dict(weights[role])
        folder = root / role
        model.to(dtype).save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)
        GenerationConfig(
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            do_sample=False,
        ).save_pretrained(folder)
        folders[role] = folder
    return folders
