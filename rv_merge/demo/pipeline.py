"""The offline default job: recipe -> merge -> evaluate -> report, on a real model pair.

`rv demo` builds (once, cached) SmolLM2-135M-Instruct, an SFT and a GRPO model trained from
it on word problems (rv_merge.demo.pair), two sibling targets fine-tuned from the same init
and never RL-trained (rv_merge.demo.pair.siblings), and the pair's vector in three forms
(exact, low-rank, and that low-rank form as a PEFT LoRA adapter) and as steering vectors
(extracted without training, and trained from SFT by GRPO on the full GRPO's budget). It then
runs `rv eval` on the demo recipes (steering GRPO against full GRPO; the paper's conditions and
an alpha curve per target; the merge written in float32 and in bfloat16; a vector file as a
source), writing reports/<recipe>/, the index
and the demo's summary (reports/smollm2-demo.md). No network, no GPU. A second run finds
everything built and every evaluation in the cache; a retrained model makes what was built
from it (vectors, pair.json, siblings.json, merges, results) stale, and it is rebuilt.

`rv demo --toy` runs the same pipeline in a few minutes on tiny random Qwen2 models (their
scores say nothing about reasoning: they show the pipeline works).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from rv_merge.demo.pair.base_model import chat_reply
from rv_merge.demo.pair.build import ROOT, build_pair
from rv_merge.demo.pair.siblings import build_siblings
from rv_merge.demo.pair.train import Budget, grpo_problems
from rv_merge.demo.summary import write_demo_summary
from rv_merge.demo.toy_models import build_toy_trio
from rv_merge.evaluate.context import EvalContext
from rv_merge.evaluate.recipe_eval import command_line, evaluate_recipes
from rv_merge.merge.merge_file import merge_file
from rv_merge.report.index import write_index
from rv_merge.steering.artifact import load_vectors, save_vectors
from rv_merge.steering.extract import extract_increments, read_prompts
from rv_merge.steering.train import SteeringBudget, train_steering_folder
from rv_merge.recipe.compatibility import check_recipe_file
from rv_merge.recipe.loading import load_recipe
from rv_merge.recipe.model_locations import fingerprint_folder
from rv_merge.recipe.vector_folder import read_metadata
from rv_merge.vectors import commands as vector_commands
from rv_merge.vectors.info import format_info, plot_info, vector_info

TOY_DIR = Path("models/toy")
TOY_RECIPE = Path("recipes/toy-add.yml")
TOY_OUTPUT = Path("outputs/toy-add")
PAIR_RECIPE = Path("recipes/smollm2-add.yml")
VECTORS = Path("vectors/smollm2")
EXTRACTED_STEERING = VECTORS / "steer-extracted"  # both in the demo recipes' eval.steering
TRAINED_STEERING = VECTORS / "steer-grpo"
RANK = 16
DEMO_RECIPES = ["recipes/smollm2-add.yml", "recipes/smollm2-steer.yml", "recipes/smollm2-near.yml", "recipes/smollm2-far.yml",
                "recipes/smollm2-near-add.yml", "recipes/smollm2-near-add-bf16.yml", f"recipes/smollm2-vector-r{RANK}.yml"]
REPORTS = Path("reports")


def run_demo(context: EvalContext, toy: bool = False) -> None:
    """`rv demo`, run from the repository root; `context` is where evaluations read and write."""
    if not TOY_RECIPE.is_file():
        raise SystemExit(f"rv demo: run it from the repository root ({TOY_RECIPE} not found)")
    if toy:
        run_toy_demo(context)
    else:
        run_pair_demo(context)


def run_pair_demo(context: EvalContext) -> None:
    summary = build_pair(load_recipe(PAIR_RECIPE).eval, context)
    print(f"pair check on {summary['problems']} held-out problems: SFT {summary['sft_accuracy']:.3f}, "
          f"GRPO {summary['grpo_accuracy']:.3f}, gain {summary['gain']:+.3f} (95% interval "
          f"[{summary['gain_interval'][0]:+.3f}, {summary['gain_interval'][1]:+.3f}], exact McNemar "
          f"p = {summary['gain_p_value']:.2g}; shown: {'yes' if summary['gain_shown'] else 'NO'})")
    siblings = build_siblings(ROOT, Budget())
    for name, sibling in siblings.items():
        distance = sibling["distance_from_sft"]["overall"]
        print(f"sibling target {name}: update vs SFT's cosine {distance['cosine']:.3f}, "
              f"norm ratio {distance['norm_ratio']:.3f}")
    build_vectors()
    build_extracted_steering()
    build_trained_steering(Budget())
    write_vector_info(REPORTS)
    evaluate_recipes(DEMO_RECIPES, context, {}, REPORTS, command_line())
    print(f"demo summary: {write_demo_summary(REPORTS, ROOT)}")
    write_index(REPORTS)  # again, to link the summary and render it
    print(f"reports site: {REPORTS / 'index.html'}")


def build_vectors() -> None:
    """The exact vector and its low-rank and LoRA forms; all rebuilt if the pair changed since."""
    exact, low_rank, lora = VECTORS / "exact", VECTORS / f"lowrank-r{RANK}", VECTORS / f"lora-r{RANK}"
    stale = exact.exists() and any(
        fingerprint_folder(ROOT / role) != read_metadata(exact)["sources"][role]["fingerprint"] for role in ("sft", "grpo"))
    if stale:
        print(f"{exact}: the pair was retrained since this vector was extracted: rebuilding the vectors")
    steps = [
        (exact, lambda: vector_commands.extract(exact, recipe=str(PAIR_RECIPE), force=stale)),
        (low_rank, lambda: vector_commands.compress(exact, low_rank, "lowrank", rank=RANK, force=stale)),
        (lora, lambda: vector_commands.lora(low_rank, lora, base_model="HuggingFaceTB/SmolLM2-135M-Instruct",
                                            force=stale)),
    ]
    for out, build in steps:
        if out.exists() and not stale:
            print(f"{out}: already built")
        else:
            build()


def build_extracted_steering() -> None:
    """Steering vectors extracted from the pair without training (rv steer extract: SFT's layer
    outputs moved toward GRPO's), 30 x 576 numbers; rebuilt if the pair was retrained."""
    out, sft, grpo = EXTRACTED_STEERING, ROOT / "sft", ROOT / "grpo"
    if out.exists():
        metadata = load_vectors(out).metadata
        if (metadata["model_fingerprint"], metadata["made_by"]["tuned_fingerprint"]) == (
                fingerprint_folder(sft), fingerprint_folder(grpo)):
            print(f"{out}: already built")
            return
        print(f"{out}: the pair was retrained since these vectors were extracted: extracting again")
    steering = extract_increments(sft, grpo, read_prompts(ROOT / "data" / "gsm8k" / "train.jsonl", 64))
    save_vectors(steering, out, sft)
    print(f"wrote {out}: steering vectors extracted from the pair ({steering.layers} x {steering.hidden_size})")


def build_trained_steering(budget: Budget) -> None:
    """Steering vectors trained from SFT with the full GRPO model's budget: the same problems,
    steps, prompts per step, completions and completion length, and seed; the learning rate is
    the authors' steering one (full fine-tuning's is far too small for 17,280 numbers)."""
    out, sft = TRAINED_STEERING, ROOT / "sft"
    steering_budget = SteeringBudget(steps=budget.grpo_steps, prompts_per_step=budget.prompts_per_step,
                                     num_generations=budget.num_generations,
                                     max_completion_length=budget.max_completion_length, seed=budget.seed,
                                     bf16=budget.bf16)
    if out.exists():
        metadata = load_vectors(out).metadata
        made_by = {key: metadata["made_by"].get(key) for key in asdict(steering_budget)}
        if metadata["model_fingerprint"] == fingerprint_folder(sft) and made_by == asdict(steering_budget):
            print(f"{out}: already built")
            return
        print(f"{out}: SFT was retrained or the budget changed since these vectors were trained: training again")
    print(f"training steering vectors from SFT: {steering_budget.steps} GRPO steps, only 30 x 576 numbers "
          "trainable ...", flush=True)
    train_steering_folder(sft, grpo_problems(budget), steering_budget, out)


def write_vector_info(reports: Path) -> None:
    """reports/smollm2-vector.md and .png: where the vector sits, and what rank 16 keeps of it."""
    exact, low_rank = VECTORS / "exact", VECTORS / f"lowrank-r{RANK}"
    info = vector_info(exact, low_rank, ROOT / "near")
    reports.mkdir(exist_ok=True)
    command = f"rv vector info {exact} --compare {low_rank} --target {ROOT / 'near'}"
    (reports / "smollm2-vector.md").write_text(
        f"# The SmolLM2 demo vector\n\nWritten by `rv demo`; the same table: `{command}`.\n\n"
        f"![per layer](smollm2-vector.png)\n\n```\n{format_info(info, exact, low_rank)}\n```\n", encoding="utf-8")
    plot_info(info, reports / "smollm2-vector.png", f"{exact} vs {low_rank}")
    print(f"vector summary: {reports / 'smollm2-vector.md'}")


def run_toy_demo(context: EvalContext) -> None:
    if not (TOY_DIR / "grpo" / "config.json").is_file():
        print(f"building toy target, SFT and GRPO models in {TOY_DIR} ...")
        build_toy_trio(TOY_DIR)
    for line in check_recipe_file(str(TOY_RECIPE)):
        print(line)
    merge_file(str(TOY_RECIPE), str(TOY_OUTPUT), quiet=True)
    print(f"merged {TOY_RECIPE} -> {TOY_OUTPUT}")
    sample = chat_reply(TOY_OUTPUT, "Ana has 3 apples", max_new_tokens=8, skip_special_tokens=False)
    print(f"sample from the merged model: {sample!r}")
    print(f"(the same merge with plain mergekit: mergekit-yaml {TOY_RECIPE} OUT)")
    evaluate_recipes([str(TOY_RECIPE)], context, {}, REPORTS, command_line())  # its eval.data: the sample set
