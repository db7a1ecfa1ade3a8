"""Benchmark: an alpha sweep in memory (`rv eval` with `eval.alphas`) against what a user
would otherwise run: `mergekit-multi` writing one merged model per alpha, then `lm-eval`
on each.

Both evaluate the same task with the same settings on the same documents; the script also
checks that both give the same accuracy for every alpha. Appends a dated table to
BENCHMARKS.md. Needs the demo pair (`rv demo` builds it into models/smollm2).

    .venv/bin/python bench/bench_sweep.py [--limit 30] [--alphas 0 0.25 0.5 1 1.5]
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
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "bench" / "work" / "sweep"
BIN = Path(sys.executable).parent
RECIPE = REPO / "recipes" / "smollm2-add.yml"
TASK = "rv_gsm8k"


def run(command: list[str], env: dict) -> float:
    started = time.monotonic()
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=30, help="documents of the task")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0, 0.25, 0.5, 1, 1.5])
    args = parser.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    base = yaml.safe_load(RECIPE.read_text())
    data = str(REPO / base["eval"]["data"])
    settings = {"tasks": [TASK], "limit": args.limit, "num_fewshot": 0, "max_gen_toks": 64, "batch_size": 16,
                "think": False, "baselines": [], "data": data}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "RV_STORE": str(WORK / "store")}

    sweep = {**base, "parameters": {**base["parameters"], "alpha": 1.0},
             "eval": {**settings, "alphas": args.alphas}}
    (WORK / "sweep.yml").write_text(yaml.safe_dump(sweep, sort_keys=False))
    in_memory = run([str(BIN / "rv"), "eval", str(WORK / "sweep.yml"), "--reports", str(WORK / "reports")], env)
    meta = json.loads((WORK / "reports" / "sweep" / "results.json").read_text())
    label_alpha = meta["sweep"]
    swept = {label_alpha[r["model"]]: r["metrics"]["exact_match,flexible-extract"]["value"] for r in meta["results"]}

    documents = [{"name": f"alpha-{alpha:g}", **{k: v for k, v in base.items() if k != "eval"},
                  "parameters": {**base["parameters"], "alpha": alpha}} for alpha in args.alphas]
    (WORK / "multi.yml").write_text(yaml.safe_dump_all(documents, sort_keys=False))
    merge_s = run([str(BIN / "mergekit-multi"), str(WORK / "multi.yml"), "-I", str(WORK / "multi"), "--quiet"], env)
    eval_s, separate = 0.0, {}
    for alpha in args.alphas:
        out = WORK / "lm-eval" / f"alpha-{alpha:g}"
        eval_s += run([str(BIN / "lm-eval"), "run", "--model", "hf", "--model_args",
                       f"pretrained={WORK / 'multi' / f'alpha-{alpha:g}'},dtype=float32", "--device", "cpu",
                       "--tasks", TASK, "--include_path", str(REPO / "evals" / "tasks"), "--limit", str(args.limit),
                       "--num_fewshot", "0", "--gen_kwargs", "max_gen_toks=64", "--batch_size", "16",
                       "--seed", "1234", "--metadata", json.dumps({"rv_data": data}), "--output_path", str(out)], env)
        result = json.loads(next(out.rglob("results_*.json")).read_text())
        separate[alpha] = result["results"][TASK]["exact_match,flexible-extract"]
    agree = all(abs(swept[a] - separate[a]) == 0 for a in args.alphas)
    ratio = (merge_s + eval_s) / in_memory

    import torch
    from importlib.metadata import version

    section = [
        "", f"## Alpha sweep in memory vs mergekit-multi + lm-eval ({date.today().isoformat()})", "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}, mergekit {version('mergekit')}, lm-eval {version('lm_eval')}.",
        f"Model: the SmolLM2-135M demo pair (`{RECIPE.relative_to(REPO)}`), float32; {len(args.alphas)} alphas "
        f"{args.alphas}; task {TASK}, {args.limit} documents, zero-shot, greedy, max 64 new tokens, batch 16.",
        f"Command: `.venv/bin/python bench/bench_sweep.py --limit {args.limit}`", "",
        "| run | wall (s) | / in-memory sweep |", "|---|---|---|",
        f"| `rv eval` with `eval.alphas` (one process, one model loaded, weights rewritten per alpha) | {in_memory:.1f} | 1.00 |",
        f"| `mergekit-multi` (writes {len(args.alphas)} models) | {merge_s:.1f} | {merge_s / in_memory:.2f} |",
        f"| + `lm-eval run` on each model | {eval_s:.1f} | {eval_s / in_memory:.2f} |",
        f"| mergekit-multi + lm-eval, total | {merge_s + eval_s:.1f} | {ratio:.2f} |", "",
        "Accuracy per alpha, in memory / separate models: " + ", ".join(
            f"{a:g}: {swept[a]:.3f} / {separate[a]:.3f}" for a in args.alphas)
        + f" ({'identical' if agree else 'DIFFERENT'}).",
    ]
    with open(REPO / "BENCHMARKS.md", "a", encoding="utf-8") as handle:
        handle.write("\n".join(section) + "\n")
    print("\n".join(section))
    if not agree:
        sys.exit("the in-memory sweep and the separate models disagree")


if __name__ == "__main__":
    main()
