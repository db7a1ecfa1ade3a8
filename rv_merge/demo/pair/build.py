"""Build (once) everything the SmolLM2 demo needs, under models/smollm2/.

    instruct/           SmolLM2-135M-Instruct (the target, and the pair's initialization)
    data/gsm8k/         held-out word problems in GSM8K's layout (the demo recipes' eval.data)
    sft/, grpo/         the pair
    pair.json           GRPO vs SFT on held-out problems: the check that the pair carries something;
                        GRPO's trainable parameters and training time (when trained by this build)

Each step is skipped when its output exists, so a second run costs nothing. pair.json records
the fingerprints of the SFT and GRPO models it was computed from: when either was retrained
it is recomputed, and a GRPO model trained from an earlier SFT model is retrained.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from rv_merge.atomic_files import write_json
from rv_merge.demo.pair.base_model import build_base_model
from rv_merge.demo.pair.gain import grpo_gain
from rv_merge.demo.pair.problems import write_splits
from rv_merge.demo.pair.train import Budget, train_grpo, train_sft
from rv_merge.evaluate.context import EvalContext
from rv_merge.recipe.model_locations import fingerprint_folder
from rv_merge.recipe.schema import EvalSettings
from rv_merge.recipe.weight_files import read_safetensors_headers

ROOT = Path("models/smollm2")


def build_pair(settings: EvalSettings, context: EvalContext, root: Path = ROOT, budget: Budget = Budget()) -> dict:
    """Build what is missing; return pair.json's summary. `settings`, `context`: how the check scores."""
    started = time.monotonic()
    base = build_base_model(root / "instruct")
    data = root / "data"
    if not (data / "gsm8k" / "test.jsonl").is_file():
        write_splits(data / "gsm8k", seed=budget.seed)
    sft = root / "sft"
    if not (sft / "config.json").is_file():
        print(f"training SFT: {budget.sft_steps} steps (a few minutes on 2 cores) ...", flush=True)
        train_sft(base, sft, budget)
    grpo = root / "grpo"
    summary_path = root / "pair.json"
    record = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    trained_from = record.get("fingerprints", {}).get("sft")
    if (grpo / "config.json").is_file() and trained_from and trained_from != fingerprint_folder(sft):
        print(f"{sft} was retrained after {grpo} was trained from it: retraining GRPO", flush=True)
        shutil.rmtree(grpo)
    grpo_seconds = None
    if not (grpo / "config.json").is_file():
        print(f"training GRPO from SFT: {budget.grpo_steps} steps (a few minutes on 2 cores) ...", flush=True)
        grpo_started = time.monotonic()
        train_grpo(sft, grpo, budget)
        grpo_seconds = round(time.monotonic() - grpo_started)
    fingerprints = {"sft": fingerprint_folder(sft), "grpo": fingerprint_folder(grpo)}
    changed = record.get("fingerprints") != fingerprints  # new, a model retrained, or an older format
    if changed:
        print("checking GRPO against SFT on held-out problems ...", flush=True)
        gain, sft_scores, grpo_scores = grpo_gain(sft, grpo, data, settings, context)
        record = {"sft_accuracy": sum(sft_scores) / len(sft_scores),
                  "grpo_accuracy": sum(grpo_scores) / len(grpo_scores),
                  "gain": gain.value, "gain_interval": list(gain.interval), "gain_p_value": gain.p_value,
                  "gain_method": gain.method, "problems": gain.n,
                  "gain_shown": gain.excludes_zero and gain.value > 0,
                  "budget": asdict(budget), "build_seconds": round(time.monotonic() - started),
                  "fingerprints": fingerprints}
    if grpo_seconds or "grpo_training" not in record:  # a record from before these were kept: no time
        record["grpo_training"] = {"trainable_parameters": _parameter_count(grpo), "seconds": grpo_seconds}
        changed = True
    if changed:
        write_json(summary_path, record)
    return record


def _parameter_count(model: Path) -> int:
    """Every number in the model's weight files: what full fine-tuning trains."""
    shapes = read_safetensors_headers(sorted(model.glob("*.safetensors"))).values()
    return sum(math.prod(shape) for _, shape in shapes)
