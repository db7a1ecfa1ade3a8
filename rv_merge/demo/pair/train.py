"""Train the demo pair from SmolLM2-135M-Instruct: SFT on demonstrations, then GRPO.

Both stages use `trl` on the CPU, seeded. The prompt format is the one the rv_gsm8k task
uses ("Q: ...\\nA:"), and answers end with "The answer is N." so both answer extractors
of the task can read them.

SFT demonstrations mix two styles, as many instruction datasets do: a worked solution, or
the final answer alone (`Budget.direct_fraction` of them, chosen per problem by a seeded
hash). GRPO's reward is 1 when the completion's answer is right; working the problem out
earns it far more often than answering at once, so the reward favours reasoning first: a
choice the SFT model already makes sometimes, so advantages are not all zero.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from rv_merge.demo.pair.problems import generate
from rv_merge.rewards import answer_reward, prompt


@dataclass(frozen=True)
class Budget:
    sft_examples: int = 800
    sft_steps: int = 100
    sft_learning_rate: float = 5e-5
    direct_fraction: float = 0.5  # SFT demonstrations that give only the final answer
    grpo_prompts: int = 2000
    grpo_steps: int = 40
    prompts_per_step: int = 2
    num_generations: int = 8
    grpo_learning_rate: float = 2e-5
    max_completion_length: int = 48
    seed: int = 0
    # Mixed precision: weights and optimizer in float32, matrix products in bfloat16 (torch
    # autocast), faster than float32 on CPUs with bfloat16 instructions
    # (bench/bench_training_precision.py). The vector is still the float32 difference.
    bf16: bool = True


def completion(answer_field: str, direct: bool = False) -> str:
    """A worked solution ending in "The answer is N.", or (direct) that last sentence alone."""
    work, number = answer_field.split("####")
    return f" The answer is {number.strip()}." if direct else f" {work.strip()} The answer is {number.strip()}."


def is_direct(question: str, budget: Budget) -> bool:
    """Whether the SFT demonstration of this problem gives the answer alone (seeded hash)."""
    digest = hashlib.sha256(f"{budget.seed}:{question}".encode()).digest()
    return int.from_bytes(digest[:4], "little") / 2**32 < budget.direct_fraction


def sft_problems(budget: Budget) -> list[dict]:
    """The problems the pair's SFT model is trained on."""
    return generate("train", budget.sft_examples, budget.seed)


def grpo_problems(budget: Budget) -> list[dict]:
    """The prompts of the pair's GRPO stage: the next problems after SFT's, never the same ones."""
    return generate("train", budget.sft_examples + budget.grpo_prompts, budget.seed)[budget.sft_examples:]


def train_sft(base: Path, out: Path, budget: Budget, problems: list[dict] | None = None,
              callbacks: list | None = None) -> Path:
    """Fine-tune `base` on demonstrations of `problems` (default: the pair's, `sft_problems`);
    `callbacks`: trl/transformers trainer callbacks (the benchmark times steps with one)."""
    import datasets
    from trl import SFTConfig, SFTTrainer

    rows = [{"prompt": prompt(p["question"]), "completion": completion(p["answer"], is_direct(p["question"], budget))}
            for p in (sft_problems(budget) if problems is None else problems)]
    config = SFTConfig(output_dir=str(out) + ".work", max_steps=budget.sft_steps, per_device_train_batch_size=4,
                       learning_rate=budget.sft_learning_rate, use_cpu=True, bf16=budget.bf16, seed=budget.seed, logging_steps=10,
                       save_strategy="no", report_to=[], max_length=160, completion_only_loss=True)
    trainer = SFTTrainer(model=str(base), args=config, train_dataset=datasets.Dataset.from_list(rows),
                         callbacks=callbacks)
    trainer.train()
    return _save(trainer, out)


def train_grpo(sft: Path, out: Path, budget: Budget, callbacks: list | None = None) -> Path:
    import datasets
    from trl import GRPOConfig, GRPOTrainer

    rows = [{"prompt": prompt(p["question"]), "answer": p["answer"].split("####")[1].strip()}
            for p in grpo_problems(budget)]
    # No gradient checkpointing: a 135M model fits easily, and recomputation costs time.
    config = GRPOConfig(output_dir=str(out) + ".work", max_steps=budget.grpo_steps,
                        per_device_train_batch_size=budget.num_generations * budget.prompts_per_step,
                        num_generations=budget.num_generations, max_completion_length=budget.max_completion_length,
                        learning_rate=budget.grpo_learning_rate, beta=0.0, temperature=1.0, use_cpu=True, bf16=budget.bf16,
                        gradient_checkpointing=False, seed=budget.seed, logging_steps=5, save_strategy="no",
                        report_to=[])
    trainer = GRPOTrainer(model=str(sft), reward_funcs=answer_reward, args=config,
                          train_dataset=datasets.Dataset.from_list(rows), callbacks=callbacks)
    trainer.train()
    return _save(trainer, out)


def _save(trainer, out: Path) -> Path:
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    trainer.model.save_pretrained(staging, safe_serialization=True)
    trainer.processing_class.save_pretrained(staging)
    shutil.rmtree(str(out) + ".work", ignore_errors=True)
    staging.rename(out)
    return out
