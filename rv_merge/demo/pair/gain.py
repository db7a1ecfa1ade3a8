"""Does the pair carry something? GRPO vs SFT on the held-out problems, paired.

Scored by the eval runner on the `rv_gsm8k` task over the held-out split, with the demo
recipes' own settings, so the results land in the shared result cache and `rv eval` of the
demo recipes reuses them (the SFT and GRPO baselines are not evaluated twice).
"""

from __future__ import annotations

from pathlib import Path

from rv_merge.evaluate.context import EvalContext
from rv_merge.evaluate.jobs import Job, ModelUnderTest
from rv_merge.evaluate.runner import run_jobs
from rv_merge.recipe.model_locations import fingerprint_folder
from rv_merge.recipe.schema import EvalSettings
from rv_merge.statistics import Estimate, main_metric, paired_delta

TASK = "rv_gsm8k"


def grpo_gain(sft: Path, grpo: Path, data: Path, settings: EvalSettings,
              context: EvalContext) -> tuple[Estimate, list[float], list[float]]:
    """GRPO - SFT on the held-out problems in the data folder `data`, paired."""
    models = [ModelUnderTest(role, path, fingerprint_folder(path)) for role, path in (("sft", sft), ("grpo", grpo))]
    results = run_jobs([Job(m, TASK) for m in models], settings, context.with_data(data.resolve()))
    metric = main_metric(results[0].per_sample)
    sft_scores, grpo_scores = (r.per_sample[metric] for r in results)
    return paired_delta(sft_scores, grpo_scores), sft_scores, grpo_scores
