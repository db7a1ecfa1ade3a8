"""`rv steer train`: GRPO (trl) where the only trainable numbers are one vector per layer.

Every weight of the model is frozen; a zero-initialised [L, d] parameter is added to the
output of each decoder layer by forward hooks (the same site as rv_merge.steering.apply,
any architecture). Settings follow the authors' (arXiv 2505.18706; github
corl-team/steering-reasoning): learning rate 5e-4 to 1e-3, constant schedule with 3%
warm-up, max_grad_norm 2, KL 0, temperature 1, no gradient checkpointing. The trainer is
checked to optimise exactly L x d numbers, and every model weight to be bit-identical after
training. Rewards: 1 when the completion's final number is the problem's answer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from rv_merge.rewards import answer_reward, prompt
from rv_merge.errors import DataError
from rv_merge.steering.apply import add_to_output, decoder_layers
from rv_merge.steering.artifact import SteeringVectors, new_vectors, save_vectors


@dataclass(frozen=True)
class SteeringBudget:
    steps: int = 40
    prompts_per_step: int = 2
    num_generations: int = 8
    learning_rate: float = 1e-3
    max_completion_length: int = 48
    seed: int = 0
    bf16: bool = True  # matrix products in bfloat16, the vectors and optimizer in float32


def train_steering(model_folder: Path, problems: list[dict], budget: SteeringBudget, work: Path,
                   reward=answer_reward) -> SteeringVectors:
    """Train steering vectors for `model_folder` on GSM8K-format `problems` ({question, answer})."""
    import datasets
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    rows = [{"prompt": prompt(p["question"]), "answer": p["answer"].split("####")[-1].strip()} for p in problems]
    if not rows:
        raise DataError("no training problems")
    torch.manual_seed(budget.seed)
    model = AutoModelForCausalLM.from_pretrained(model_folder, dtype=torch.float32)
    frozen = {name: p.detach().clone() for name, p in model.named_parameters()}
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    layers = decoder_layers(model)
    model.steering_vectors = torch.nn.Parameter(torch.zeros(len(layers), model.config.hidden_size))
    for index, layer in enumerate(layers):
        layer.register_forward_hook(
            lambda _m, _i, output, index=index: add_to_output(output, model.steering_vectors[index]))
    config = GRPOConfig(output_dir=str(work), max_steps=budget.steps,
                        per_device_train_batch_size=budget.num_generations * budget.prompts_per_step,
                        num_generations=budget.num_generations, max_completion_length=budget.max_completion_length,
                        learning_rate=budget.learning_rate, lr_scheduler_type="constant_with_warmup",
                        warmup_steps=max(1, round(0.03 * budget.steps)), max_grad_norm=2.0, beta=0.0, temperature=1.0, use_cpu=True, bf16=budget.bf16,
                        gradient_checkpointing=False, seed=budget.seed, logging_steps=5, save_strategy="no",
                        report_to=[])
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=config, train_dataset=datasets.Dataset.from_list(rows))
    trainer.create_optimizer()
    trained = sum(p.numel() for group in trainer.optimizer.param_groups for p in group["params"])
    expected = len(layers) * model.config.hidden_size
    if trained != expected:
        raise RuntimeError(f"the optimizer holds {trained} numbers, not the {expected} of the steering vectors")
    started = time.monotonic()
    trainer.train()
    changed = [name for name, p in model.named_parameters() if name in frozen and not torch.equal(p, frozen[name])]
    if changed:
        raise RuntimeError(f"training changed frozen weights: {changed[:3]}")
    made_by = {"method": "GRPO (trl), only the steering vectors trainable", "trainable_parameters": trained,
               "steps": budget.steps, "prompts_per_step": budget.prompts_per_step,
               "num_generations": budget.num_generations, "learning_rate": budget.learning_rate,
               "max_completion_length": budget.max_completion_length, "seed": budget.seed, "bf16": budget.bf16,
               "problems": len(rows), "training_seconds": round(time.monotonic() - started)}
    return new_vectors(model_folder, model.steering_vectors.detach().clone(), made_by)


def train_steering_folder(model_folder: Path, problems: list[dict], budget: SteeringBudget, out: Path) -> None:
    """`train_steering`, then write the vectors to the steering folder `out` (atomically; trl's
    scratch goes beside it, and is removed when empty, as trl leaves it without checkpoints)."""
    work = out.with_name(out.name + ".work")
    steering = train_steering(model_folder, problems, budget, work)
    save_vectors(steering, out, model_folder)
    try:
        work.rmdir()  # only if empty: whatever is in it stays
    except OSError:
        pass
    made_by = steering.metadata["made_by"]
    print(f"wrote {out}: {made_by['trainable_parameters']} trained numbers in {made_by['training_seconds']} s")
