"""Benchmark: the tokenizer check of every merge, with tokenizers the size of Qwen2.5's.

Before it merges, rv-merge makes sure that every model maps each token to the same id
(rv_merge/recipe/vocabulary_check.py). Loading a tokenizer of 151,665 tokens takes most of a
second, and the random trios of bench_merge.py carry a 320-token toy tokenizer, so their
merge times leave this cost out. This measures it, in one run, three ways, in turn:
- `rv-merge, identical files`: the check on a target, SFT and GRPO whose tokenizer files are
  byte for byte the same (a pair fine-tuned from the target's family usually is): one load;
- `rv-merge, configs differ`: the same tokenizer.json, but the target's tokenizer_config.json
  names another end-of-sequence token (as a base and an instruct model do): two loads;
- `load each`: what a check that loads every model's tokenizer and compares the maps does
  (rv-merge's check before commit 6078811, or a user by hand): three loads.
The tokenizer is synthetic (byte-level BPE, random merges, seeded) with Qwen2.5's counts:
151,643 tokens and 22 special ones. Results: a dated section of BENCHMARKS.md.

    .venv/bin/python bench/bench_tokenizer_check.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import shutil
import statistics
import time
from datetime import date
from importlib.metadata import version
from pathlib import Path

from rv_merge.recipe.vocabulary_check import check_tokenizers

ROOT = Path(__file__).resolve().parent
WORK = ROOT / "work" / "tokenizer_check"
REGULAR_TOKENS, SPECIAL_TOKENS = 151_643, 22  # Qwen2.5's tokenizer


def build_qwen_sized_tokenizer(folder: Path, seed: int = 0) -> int:
    """A byte-level BPE tokenizer with Qwen2.5's token counts; returns its length."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(seed)
    tokens = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocabulary = {token: i for i, token in enumerate(tokens)}
    merges = []
    while len(vocabulary) < REGULAR_TOKENS:  # merge two existing tokens, short ones more often
        a, b = (tokens[min(int(rng.expovariate(1 / 3000)), len(tokens) - 1)] for _ in range(2))
        if len(a) + len(b) <= 16 and a + b not in vocabulary:
            vocabulary[a + b] = len(vocabulary)
            tokens.append(a + b)
            merges.append((a, b))
    core = Tokenizer(models.BPE(vocab=vocabulary, merges=merges))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + [f"<|special_{i}|>" for i in range(19)]
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|endoftext|>",
                                        pad_token="<|endoftext|>", additional_special_tokens=special)
    tokenizer.save_pretrained(folder)
    return len(tokenizer)


def models_for(case: str, base: Path) -> dict[str, Path]:
    """target, sft and grpo folders holding copies of the tokenizer in `base`, by role."""
    folders = {role: WORK / case / role for role in ("target", "sft", "grpo")}
    for folder in folders.values():
        shutil.copytree(base, folder)
    if case == "rv-merge, configs differ":
        config_file = folders["target"] / "tokenizer_config.json"
        config = json.loads(config_file.read_text())
        config["eos_token"] = "<|im_end|>"  # an instruct target: another (existing) end token
        config_file.write_text(json.dumps(config, indent=2))
    return folders


def load_each(folders: dict[str, Path]) -> None:
    from transformers import AutoTokenizer

    vocabularies = [AutoTokenizer.from_pretrained(folder).get_vocab() for folder in folders.values()]
    for other in vocabularies[1:]:
        if other != vocabularies[0]:
            raise SystemExit("the benchmark's tokenizers differ: the cases are not comparable")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    size = build_qwen_sized_tokenizer(WORK / "base")
    from transformers import AutoTokenizer

    cases = ("rv-merge, identical files", "rv-merge, configs differ", "load each")
    folders = {case: models_for(case, WORK / "base") for case in cases}
    load_each(folders["load each"])  # unmeasured: transformers' first load imports more
    loads, load = [], AutoTokenizer.from_pretrained
    AutoTokenizer.from_pretrained = lambda path, **kwargs: loads.append(path) or load(path, **kwargs)
    runs = {case: [] for case in cases}
    loaded = {}
    for _ in range(args.repeats):  # in turn, so that a drift of the machine hits every case alike
        for case in cases:
            loads.clear()
            start = time.perf_counter()
            if case == "load each":
                load_each(folders[case])
            else:
                check_tokenizers(folders[case], "bench", align_vocabularies=False)
            runs[case].append(time.perf_counter() - start)
            loaded[case] = len(loads)
            print(f"  {case}: {runs[case][-1]:.3f} s, {len(loads)} loads", flush=True)
    shutil.rmtree(WORK)
    append_section(size, args.repeats, runs, loaded, ROOT.parent / "BENCHMARKS.md")


def append_section(size: int, repeats: int, runs: dict[str, list[float]], loaded: dict[str, int],
                   benchmarks: Path) -> None:
    baseline = statistics.median(runs["load each"])
    lines = [
        f"\n## Tokenizer check with Qwen2.5-sized tokenizers ({date.today().isoformat()})\n",
        f"Machine: {platform.machine()}, Python {platform.python_version()}, transformers "
        f"{version('transformers')}, tokenizers {version('tokenizers')}, rv-merge {version('rv-merge')}.",
        f"A synthetic byte-level BPE tokenizer of {size:,} tokens (Qwen2.5's count), the same files in "
        "target, SFT and GRPO; in the second case the target's tokenizer_config.json names another "
        "end-of-sequence token. Time of the whole tokenizer check, median of "
        f"{repeats} rounds that run the cases in turn (after one unmeasured load).",
        f"Command: `.venv/bin/python bench/bench_tokenizer_check.py --repeats {repeats}`\n",
        "| case | tokenizers loaded | check (s) | / load each | per round (s) |",
        "|---|---|---|---|---|",
    ]
    for case, times in runs.items():
        median = statistics.median(times)
        lines.append(f"| {case} | {loaded[case]} | {median:.2f} | {median / baseline:.2f} | "
                     f"{', '.join(f'{t:.2f}' for t in times)} |")
    with open(benchmarks, "a", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
