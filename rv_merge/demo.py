"""The offline default job: recipe -> merge -> evaluate -> report on toy models.

`rv demo` builds small Qwen2-architecture models (once), checks and merges
`recipes/toy-add.yml`, checks that the merged folder loads and generates, then runs
`rv eval` on the recipe with the sample data in evals/data and writes reports/toy-add.
It needs no network and no GPU; it is what the README's first command runs. The toy models
are random, so their scores say nothing about reasoning: they show the pipeline works.
"""

from __future__ import annotations

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

    from rv_merge.cli import run_check
    from rv_merge.merge import merge_file

    run_check(str(TOY_RECIPE))
    merge_file(str(TOY_RECIPE), str(TOY_OUTPUT), quiet=True)
    print(f"merged {TOY_RECIPE} -> {TOY_OUTPUT}")
    print(f"sample from the merged model: {_generate(TOY_OUTPUT)!r}")
    print(f"(the same merge with plain mergekit: mergekit-yaml {TOY_RECIPE} OUT)")

    import os

    from rv_merge.cli import main

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    code = main(["eval", str(TOY_RECIPE)])  # the recipe's eval.data: the sample data set
    if code:
        raise SystemExit(code)


def _generate(folder: Path) -> str:
    """Load the merged folder with transformers and greedily generate a few tokens."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Ana has 3 apples"}], add_generation_prompt=True, tokenize=False
    )
    inputs = tokenizer(prompt, return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1]:])
