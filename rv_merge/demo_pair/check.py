"""Does the pair carry something? GRPO vs SFT on held-out problems, paired, greedy."""

from __future__ import annotations

from pathlib import Path

from rv_merge.demo_pair.problems import generate
from rv_merge.demo_pair.train import final_number, prompt
from rv_merge.report import Estimate, paired_delta


def correct(model_dir: Path, problems: list[dict], batch_size: int = 16, max_new_tokens: int = 48) -> list[float]:
    """1.0 per problem answered right (zero-shot, the training prompt format), else 0.0."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    scores = []
    for start in range(0, len(problems), batch_size):
        batch = problems[start:start + batch_size]
        inputs = tokenizer([prompt(p["question"]) for p in batch], return_tensors="pt", padding=True)
        with torch.no_grad():
            output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=tokenizer.pad_token_id)
        texts = tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        scores += [float(final_number(t) == p["answer"].split("####")[1].strip()) for t, p in zip(texts, batch)]
    return scores


def grpo_gain(sft: Path, grpo: Path, count: int = 200, seed: int = 0) -> tuple[Estimate, list[float], list[float]]:
    """GRPO - SFT accuracy on `count` held-out problems, with its paired standard error."""
    problems = generate("test", count, seed)
    sft_scores, grpo_scores = correct(sft, problems), correct(grpo, problems)
    return paired_delta(sft_scores, grpo_scores), sft_scores, grpo_scores
