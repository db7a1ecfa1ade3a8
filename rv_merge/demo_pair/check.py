"""Does the pair carry something? GRPO vs SFT on the held-out problems, paired.

Scored by the eval runner on the `rv_gsm8k` task over the held-out split, with the demo
recipes' own settings, so the results land in the shared result cache and `rv eval` of the
demo recipes reuses them (the SFT and GRPO baselines are not evaluated twice).
"""

from __future__ import annotations

import os
from pathlib import Path

from rv_merge.evaluate import runner
from rv_merge.recipe import EvalSettings
from rv_merge.report import Estimate, main_metric, paired_delta
from rv_merge.store import fingerprint_folder, store_root

TASK = "rv_gsm8k"


def grpo_gain(sft: Path, grpo: Path, data: Path, settings: EvalSettings) -> tuple[Estimate, list[float], list[float]]:
    """GRPO - SFT on the held-out problems in `data` (RV_EVAL_DATA layout), paired."""
    models = [runner.ModelUnderTest(role, path, fingerprint_folder(path)) for role, path in (("sft", sft), ("grpo", grpo))]
    before = os.environ.get("RV_EVAL_DATA")
    os.environ["RV_EVAL_DATA"] = str(data.resolve())
    try:
        results = runner.run_jobs([runner.Job(m, TASK) for m in models], settings, runner.Backend(),
                                  store_root() / "results")
    finally:
        if before is None:
            os.environ.pop("RV_EVAL_DATA")
        else:
            os.environ["RV_EVAL_DATA"] = before
    metric = main_metric(results[0].per_sample)
    sft_scores, grpo_scores = (r.per_sample[metric] for r in results)
    return paired_delta(sft_scores, grpo_scores), sft_scores, grpo_scores
