"""What one `rv eval` run evaluates: models, (model, task) jobs, and their results.

The paper's comparisons: every task for the baselines and the merged model; the "think step
by step" variant (where a task has one) for GRPO and for the merged model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from rv_merge.evaluate import suite
from rv_merge.merge.in_memory import InMemoryMerge
from rv_merge.recipe.schema import EvalSettings


@dataclass(frozen=True)
class Steering:
    """Steering vectors added to the loaded target by hooks (rv_merge.steering.apply)."""

    folder: Path
    scale: float
    layers: Optional[tuple[int, int]] = None  # first, last (0-based, inclusive); None: all


@dataclass(frozen=True)
class ModelUnderTest:
    label: str  # "target", "sft", "grpo", "merged", a sweep point "alpha=0.5" or "steer:NAME=1"
    path: Path
    fingerprint: str
    # In-memory merges (alpha sweeps): `path` is the target; its loaded weights are
    # overwritten with target + coefficient * v (see rv_merge.merge.in_memory).
    merge: Optional[InMemoryMerge] = None
    coefficient: Optional[float] = None
    steering: Optional[Steering] = None  # `path` is the target, steered by hooks while evaluated


@dataclass(frozen=True)
class Job:
    model: ModelUnderTest
    task: str

    @property
    def name(self) -> str:
        return f"{self.model.label} / {self.task}"


@dataclass
class JobResult:
    job: Job
    metrics: dict  # "metric,filter" -> {"value", "stderr", "n"}
    per_sample: dict  # "metric,filter" -> list of per-document scores, in document order
    wall_s: float
    cached: bool = False
    details: dict = field(default_factory=dict)
    computed_with: dict = field(default_factory=dict)  # backend, device, dtype, library versions


def plan_jobs(settings: EvalSettings, models: dict[str, ModelUnderTest], tasks_dir: Path) -> list[Job]:
    """Every task for the baselines and the merged model; think variants for GRPO and merged."""
    labels = [label for label in ("target", "sft", "grpo") if label in settings.baselines] + ["merged"]
    jobs = [Job(models[label], task) for label in labels for task in settings.tasks]
    if settings.think:
        think = think_variants(tasks_dir)
        for label in [l for l in ("grpo", "merged") if l in labels]:
            jobs += [Job(models[label], think[task]) for task in settings.tasks if task in think]
    return jobs


def think_variants(tasks_dir: Path) -> dict[str, str]:
    """base task or group -> its think variant."""
    variants = {t.base: t.task for t in suite.list_tasks(tasks_dir) if t.kind == "rv_think"}
    variants.update({g.base: g.name for g in suite.list_groups(tasks_dir) if g.kind == "rv_think"})
    return variants
