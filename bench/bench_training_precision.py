"""Benchmark: seconds per training step of the demo's SFT and GRPO stages in float32 against
mixed precision (bf16 autocast: weights and optimizer in float32, matrix products in
bfloat16), the choice `rv_merge.demo.pair.train.Budget.bf16` makes.

The same model (SmolLM2-135M-Instruct, then the demo's SFT model for GRPO; built by
`rv demo`), data, batch and seed as the demo; each setting trains `--steps` steps, twice,
alternating float32 and bf16 so that drift of the machine hits both alike. A step's time is
measured between trl's step callbacks; the first two steps of each run (warm-up) are left
out; the table gives the median. Nothing is saved. Appends a dated table to BENCHMARKS.md.

    .venv/bin/python bench/bench_training_precision.py [--steps 12]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import date
from importlib.metadata import version
from pathlib import Path

from transformers import TrainerCallback

from rv_merge.demo.pair import train
from rv_merge.demo.pair.train import Budget

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models" / "smollm2"


class StepTimes(TrainerCallback):
    def __init__(self):
        self.times, self.begun = [], None

    def on_step_begin(self, args, state, control, **kwargs):
        self.begun = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.monotonic() - self.begun)


def timed_steps(stage: str, budget: Budget) -> list[float]:
    """Per-step seconds of `steps` steps of the demo's `stage` ("sft" or "grpo") with `budget`."""
    callback = StepTimes()
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "model"
        if stage == "sft":
            train.train_sft(MODELS / "instruct", out, budget, callbacks=[callback])
        else:
            train.train_grpo(MODELS / "sft", out, budget, callbacks=[callback])
    return callback.times[2:]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    if not (MODELS / "sft" / "config.json").is_file():
        raise SystemExit(f"{MODELS}: run `rv demo` first (it builds the models trained here)")
    rows = []
    for stage in ("sft", "grpo"):
        times = {False: [], True: []}
        for _ in range(2):
            for bf16 in (False, True):
                budget = replace(Budget(), sft_steps=args.steps, grpo_steps=args.steps, bf16=bf16)
                times[bf16] += timed_steps(stage, budget)
                print(f"{stage} bf16={bf16}: median {statistics.median(times[bf16]):.2f} s/step", flush=True)
        float32, mixed = statistics.median(times[False]), statistics.median(times[True])
        rows.append(f"| {stage.upper()} | {float32:.2f} | {mixed:.2f} | {float32 / mixed:.2f} | {len(times[True])} |")
    lines = ["", f"## Training precision: float32 vs bf16 autocast ({date.today().isoformat()})", "",
             f"Machine: {platform.machine()}, {shutil.os.cpu_count()} cores, Python {platform.python_version()}, "
             f"torch {version('torch')}, transformers {version('transformers')}, trl {version('trl')}.",
             "The demo's SFT stage (batch 4, from SmolLM2-135M-Instruct) and GRPO stage (2 prompts x 8 "
             "completions of at most 48 tokens, from the demo's SFT model), seed 0; float32 and bf16 runs "
             "alternated, two of each; median seconds per step without each run's first two steps.",
             f"Command: `.venv/bin/python bench/bench_training_precision.py --steps {args.steps}`", "",
             "| stage | float32 (s/step) | bf16 autocast (s/step) | speed-up | steps timed per setting |",
             "|---|---|---|---|---|", *rows, ""]
    with open(REPO / "BENCHMARKS.md", "a", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
