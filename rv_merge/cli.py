"""`rv`: the rv-merge command line (check, merge, eval, report, tasks, vector, steer, demo).

This is the edge: the only place that reads environment variables (RV_EVAL_DATA, RV_STORE,
RV_TASKS_DIR, HF_HUB_OFFLINE, HF_DATASETS_OFFLINE), once, into an explicit EvalContext
passed down. Each command imports its stage when it runs, so `rv check` does not pay for
importing mergekit and lm-eval.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from rv_merge.errors import RvError, UsageError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rv", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser("check", help="check a recipe and its models without merging")
    check.add_argument("recipe")
    check.add_argument("--allow-pickle", action="store_true", help="accept pickled .bin weights")
    check.add_argument("--rounding", action="store_true",
                       help="also read every weight and say how much of the vector the output dtype rounds away")

    merge = commands.add_parser("merge", help="check, then merge a recipe into OUT atomically")
    merge.add_argument("recipe")
    merge.add_argument("out")
    merge.add_argument("--force", action="store_true", help="replace a non-empty OUT")
    merge.add_argument("--allow-pickle", action="store_true", help="accept pickled .bin weights")
    merge.add_argument("--device", default="cpu", help="device for the arithmetic (cpu, cuda)")
    merge.add_argument("--out-shard-size", default="5B", help="shard size, e.g. 1B, 200M")
    merge.add_argument("--quiet", action="store_true", help="no progress bars")

    evaluate = commands.add_parser("eval", help="merge (if needed), evaluate against baselines, write reports")
    evaluate.add_argument("recipes", nargs="+", help="recipe files or folders of recipes")
    evaluate.add_argument("--backend", default="hf", choices=["hf", "vllm", "local-completions", "server"],
                          help="server: rv starts one inference server per model from --serve")
    evaluate.add_argument("--serve", default="", help="server backend: the command that serves one model, with "
                          "{model} and {port} (and optionally {gpu}), e.g. 'vllm serve {model} --port {port}'")
    evaluate.add_argument("--parallel", type=int, default=1, help="server backend: servers (jobs) at once")
    evaluate.add_argument("--serve-timeout", type=float, default=600.0,
                          help="server backend: seconds to wait for a server to be ready")
    evaluate.add_argument("--model-args", default="", help="extra lm-eval model_args, e.g. "
                          "tensor_parallel_size=2 (vllm), num_concurrent=8 (server), "
                          "or base_url=http://host:8000/v1/completions (local-completions)")
    evaluate.add_argument("--device", default="cpu", help="hf backend: cpu, cuda, cuda:1")
    evaluate.add_argument("--dtype", default="float32", help="hf backend: float32, bfloat16, auto")
    evaluate.add_argument("--data", help="offline data folder (default: $RV_EVAL_DATA, else each recipe's "
                          "eval.data; evals/data is a sample)")
    evaluate.add_argument("--limit", type=int, help="documents per task (overrides the recipe)")
    evaluate.add_argument("--reports", default="reports", help="reports folder")

    report = commands.add_parser("report", help="rebuild reports and the index from stored results")
    report.add_argument("--reports", default="reports", help="reports folder")
    report.add_argument("--readme", help="also put the demo's tables into this README (between its demo markers)")

    tasks = commands.add_parser("tasks", help="list the evaluation tasks in evals/tasks")
    tasks.add_argument("--json", action="store_true", help="machine-readable output")

    from rv_merge.vectors.arguments import add_vector_parser

    add_vector_parser(commands)
    from rv_merge.steering import commands as steering_commands

    steering_commands.add_parser(commands)

    demo = commands.add_parser("demo", help="offline: build the SmolLM2 pair and its vectors, evaluate the demo recipes")
    demo.add_argument("--toy", action="store_true", help="tiny random models instead: the pipeline in minutes")

    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            run_check(args.recipe, allow_pickle=args.allow_pickle, rounding=args.rounding)
        elif args.command == "merge":
            run_merge_command(args)
        elif args.command == "eval":
            run_eval(args)
        elif args.command == "report":
            run_report(Path(args.reports), Path(args.readme) if args.readme else None)
        elif args.command == "tasks":
            run_tasks(as_json=args.json)
        elif args.command == "vector":
            from rv_merge.vectors import commands as vector_commands

            vector_commands.run(args)
        elif args.command == "steer":
            steering_commands.run(args)
        elif args.command == "demo":
            run_demo_command(args.toy)
    except RvError as error:
        print(f"rv {args.command}: error: {error.message}", file=sys.stderr)
        return error.exit_code
    return 0


def eval_context(backend=None, data: str | None = None):
    """The evaluation context from flags and the user-facing environment variables."""
    from rv_merge.evaluate.context import DEFAULT_STORE, Backend, EvalContext

    data = data or os.environ.get("RV_EVAL_DATA")
    if data and not Path(data).is_dir():
        raise UsageError(f"--data {data}: no such folder")
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"
    return EvalContext(tasks_dir=tasks_dir(),
                       store=Path(os.environ.get("RV_STORE", DEFAULT_STORE)), backend=backend or Backend(),
                       data=Path(data).resolve() if data else None, offline=offline)


def tasks_dir() -> Path:
    """The task suite: evals/tasks, or another copy of it named by RV_TASKS_DIR."""
    from rv_merge.evaluate import suite

    return Path(os.environ.get("RV_TASKS_DIR", suite.TASKS_DIR))


def run_check(recipe_path: str, allow_pickle: bool = False, rounding: bool = False) -> None:
    from rv_merge.recipe.compatibility import check_recipe_file

    for line in check_recipe_file(recipe_path, allow_pickle):
        print(line)
    if rounding:
        from rv_merge.vectors.rounding import recipe_rounding_loss

        for line in recipe_rounding_loss(recipe_path):
            print(line)


def run_eval(args: argparse.Namespace) -> None:
    from rv_merge.evaluate.context import Backend
    from rv_merge.evaluate.recipe_eval import command_line, evaluate_recipes

    if args.backend == "server" and not ("{model}" in args.serve and "{port}" in args.serve):
        raise UsageError("--backend server needs --serve with {model} and {port}, e.g. "
                         "--serve 'transformers serve {model} --host 127.0.0.1 --port {port} --dtype float32'")
    if args.serve and args.backend != "server":
        raise UsageError("--serve starts servers for --backend server; add --backend server")
    if args.parallel < 1 or args.serve_timeout <= 0:
        raise UsageError("--parallel must be 1 or more and --serve-timeout positive")
    backend = Backend(args.backend, args.model_args, args.device, args.dtype, args.serve, args.parallel,
                      args.serve_timeout)
    context = eval_context(backend, args.data)
    evaluate_recipes(args.recipes, context, {"limit": args.limit}, Path(args.reports), command_line())


def run_report(reports_dir: Path, readme: Path | None = None) -> None:
    from rv_merge.demo.summary import has_demo_results, splice_into_readme, write_demo_summary
    from rv_merge.evaluate import suite
    from rv_merge.report.index import write_index
    from rv_merge.report.markdown import write_report

    folders = sorted(p.parent for p in reports_dir.glob("*/results.json"))
    if not folders:
        raise UsageError(f"{reports_dir}: no stored results (*/results.json); run `rv eval` first")
    variants = suite.adversarial_variants(tasks_dir())
    for folder in folders:
        write_report(folder, variants)
        print(f"rebuilt {folder / 'report.md'}")
    if has_demo_results(reports_dir):
        print(f"rebuilt {write_demo_summary(reports_dir)}")
    write_index(reports_dir)
    print(f"index: {reports_dir / 'README.md'}; site: {reports_dir / 'index.html'}")
    if readme:
        splice_into_readme(readme, reports_dir)
        print(f"updated the demo section of {readme}")


def run_tasks(as_json: bool = False) -> None:
    from rv_merge.evaluate import suite

    tasks = suite.list_tasks(tasks_dir())
    print(json.dumps(suite.as_json(tasks), indent=1) if as_json else suite.format_table(tasks))


def run_merge_command(args: argparse.Namespace) -> None:
    from rv_merge.recipe.loading import load_recipe

    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.force:
        raise UsageError(f"{out} exists and is not empty; pass --force to replace it")
    load_recipe(args.recipe)  # fail on a bad recipe before importing mergekit (3 s)
    from mergekit.options import parse_kmb

    from rv_merge.merge.merge_file import merge_file

    merge_file(args.recipe, str(out), allow_pickle=args.allow_pickle, device=args.device,
               out_shard_size=parse_kmb(args.out_shard_size), quiet=args.quiet)
    print(f"wrote {out}")


def run_demo_command(toy: bool) -> None:
    # The demo never reaches the Hub; huggingface_hub and datasets read these when imported.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from rv_merge.demo.pipeline import run_demo

    run_demo(eval_context(), toy=toy)


if __name__ == "__main__":
    sys.exit(main())
