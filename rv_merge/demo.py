"""The offline default job: recipe -> merge -> evaluate -> report on toy models.

`rv demo` builds small Qwen2-architecture models (once), checks and merges
`recipes/toy-add.yml`, checks that the merged folder loads and generates, then runs
`rv eval` on the recipe with the sample data in evals/data and writes reports/toy-add.
It needs no network and no GPU; it is what the README's first command runs. The toy models
are random, so their scores say nothing about reasoning: they show the pipeline works.
"""

from __future__ import annotations

import os
from pathlib import Path

TOY_DIR = Path("models/toy")
TOY_RECIPE = Path("recipes/toy-add.yml")
TOY_OUTPUT = Path("outputs/toy-add")


def run_demo() -> None:
    if not TOY_RECIPE.is_file():
        raise SystemExit(f"rv demo: run it from the repository root ({TOY_RECIPE} not found)")
    if not (TOY_DIR / "grpo" / "config.json").is_file():
        from rv_merge.toy_models import build_toy_trio

        print(f"building toy target, SFT and GRPO models in {TOY_DIR} ...")
        build_toy_trio(TOY_DIR)

    from rv_merge.cli import main, run_check
    from rv_merge.demo_pair.model import chat_reply
    from rv_merge.merge import merge_file

    run_check(str(TOY_RECIPE))
    merge_file(str(TOY_RECIPE), str(TOY_OUTPUT), quiet=True)
    print(f"merged {TOY_RECIPE} -> {TOY_OUTPUT}")
    sample = chat_reply(TOY_OUTPUT, "Ana has 3 apples", max_new_tokens=8, skip_special_tokens=False)
    print(f"sample from the merged model: {sample!r}")
    print(f"(the same merge with plain mergekit: mergekit-yaml {TOY_RECIPE} OUT)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    code = main(["eval", str(TOY_RECIPE)])  # the recipe's eval.data: the sample data set
    if code:
        raise SystemExit(code)

