"""Benchmark: tokens per second of `rv eval`'s in-process runner against plain `lm-eval run`,
on the same documents, at the demo's batch size (64) and at 16.

One model (the demo's SFT model, which answers in the task's format; built by `rv demo`),
task rv_gsm8k on the demo's held-out problems, zero-shot, greedy, at most 48 new tokens.
rv runs with an empty result cache, so every job is computed; wall time includes loading
the model (and, for `lm-eval run`, starting the process). Tokens are counted with the
model's tokenizer over the generated texts; the script checks both tools produced the same
accuracy. Appends a dated table to BENCHMARKS.md.

    .venv/bin/python bench/bench_eval.py [--limit 100]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import date
from importlib.metadata import version
from pathlib import Path

from transformers import AutoTokenizer

from rv_merge.evaluate import suite
from rv_merge.evaluate.context import EvalContext
from rv_merge.evaluate.jobs import Job, ModelUnderTest
from rv_merge.evaluate.runner import run_jobs
from rv_merge.recipe.model_locations import fingerprint_folder
from rv_merge.recipe.schema import EvalSettings

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "bench" / "work" / "eval"
MODEL = REPO / "models" / "smollm2" / "sft"
DATA = REPO / "models" / "smollm2" / "data"
TASK = "rv_gsm8k"


def rv_eval(limit: int, batch_size: int, tokenizer) -> tuple[float, int, float]:
    settings = EvalSettings(tasks=[TASK], limit=limit, num_fewshot=0, max_gen_toks=48, think=False,
                            batch_size=batch_size)
    context = EvalContext(tasks_dir=suite.TASKS_DIR, store=WORK / f"rv-{batch_size}", data=DATA.resolve(),
                          offline=True)
    started = time.monotonic()
    result, = run_jobs([Job(ModelUnderTest("sft", MODEL, fingerprint_folder(MODEL)), TASK)], settings, context,
                       progress=lambda line: None)
    wall = time.monotonic() - started
    tokens = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in result.details["responses"])
    return wall, tokens, result.metrics["exact_match,flexible-extract"]["value"]


def lm_eval_run(limit: int, batch_size: int, tokenizer) -> tuple[float, int, float]:
    out = WORK / f"lm-eval-{batch_size}"
    command = [str(Path(sys.executable).parent / "lm-eval"), "run", "--model", "hf", "--model_args",
               f"pretrained={MODEL},dtype=float32", "--device", "cpu", "--tasks", TASK, "--include_path",
               str(suite.TASKS_DIR), "--metadata", json.dumps({"rv_data": str(DATA.resolve())}), "--limit",
               str(limit), "--num_fewshot", "0", "--gen_kwargs", "max_gen_toks=48", "--batch_size", str(batch_size),
               "--output_path", str(out), "--log_samples"]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    wall = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"lm-eval run failed:\n{done.stderr[-3000:]}")
    logged = [json.loads(line) for path in out.rglob(f"samples_{TASK}_*.jsonl") for line in path.open()]
    samples = [s for s in logged if s.get("filter") == "flexible-extract"]  # one entry per document
    tokens = sum(len(tokenizer(s["resps"][0][0], add_special_tokens=False)["input_ids"]) for s in samples)
    accuracy = sum(s["exact_match"] for s in samples) / len(samples)
    return wall, tokens, accuracy


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=100)
    args = parser.parse_args()
    if not (MODEL / "config.json").is_file():
        sys.exit(f"{MODEL}: run `rv demo` first (it builds the demo's SFT model)")
    shutil.rmtree(WORK, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    rows = []
    for batch_size in (16, 64):
        for label, run in (("`rv eval` (in process)", rv_eval), ("`lm-eval run`", lm_eval_run)):
            wall, tokens, accuracy = run(args.limit, batch_size, tokenizer)
            rows.append((f"{label}, batch {batch_size}", wall, tokens, accuracy))
            print(f"{rows[-1][0]}: {wall:.1f} s, {tokens} tokens, accuracy {accuracy:.3f}", flush=True)
    baseline = rows[1][1] / rows[1][2]  # lm-eval run at batch 16: seconds per token
    lines = [
        "", f"## Evaluation speed: `rv eval` vs `lm-eval run` ({date.today().isoformat()})", "",
        f"Machine: {platform.machine()}, {shutil.os.cpu_count()} cores, Python {platform.python_version()}, "
        f"torch {version('torch')}, transformers {version('transformers')}, lm-eval {version('lm_eval')}.",
        f"Model: the demo's SFT model (SmolLM2-135M, float32). Task {TASK}, {args.limit} held-out demo problems "
        "(the same documents in every row), zero-shot, greedy, at most 48 new tokens. Wall time includes "
        "loading the model (and starting lm-eval's process).",
        "Command: `.venv/bin/python bench/bench_eval.py" + (f" --limit {args.limit}`" if args.limit != 100 else "`"),
        "", "| run | wall (s) | generated tokens | tokens/s | speed / lm-eval run at batch 16 | accuracy |",
        "|---|---|---|---|---|---|",
        *[f"| {label} | {wall:.1f} | {tokens} | {tokens / wall:.1f} | {baseline / (wall / tokens):.2f} | {acc:.3f} |"
          for label, wall, tokens, acc in rows], ""]
    with open(REPO / "BENCHMARKS.md", "a", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
