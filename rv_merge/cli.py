"""`rv`: the rv-merge command line (check, merge, eval, report, tasks, vector, demo)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rv_merge.errors import RecipeError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rv", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser("check", help="check a recipe and its models without merging")
    check.add_argument("recipe")
    check.add_argument("--allow-pickle", action="store_true", help="accept pickled .bin weights")

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
    evaluate.add_argument("--backend", default="hf", choices=["hf", "vllm", "local-completions"])
    evaluate.add_argument("--model-args", default="", help="extra lm-eval model_args, e.g. "
                          "tensor_parallel_size=2 (vllm) or base_url=http://host:8000/v1/completions")
    evaluate.add_argument("--device", default="cpu", help="hf backend: cpu, cuda, cuda:1")
    evaluate.add_argument("--dtype", default="float32", help="hf backend: float32, bfloat16, auto")
    evaluate.add_argument("--data", help="offline data folder (sets RV_EVAL_DATA; evals/data is a sample)")
    evaluate.add_argument("--limit", type=int, help="documents per task (overrides the recipe)")
    evaluate.add_argument("--reports", default="reports", help="reports folder")

    report = commands.add_parser("report", help="rebuild reports and the index from stored results")
    report.add_argument("--reports", default="reports", help="reports folder")

    tasks = commands.add_parser("tasks", help="list the evaluation tasks in evals/tasks")
    tasks.add_argument("--json", action="store_true", help="machine-readable output")

    from rv_merge.vectors import commands as vector_commands

    vector_commands.add_parser(commands)

    demo = commands.add_parser("demo", help="offline: build the SmolLM2 pair and its vectors, evaluate the demo recipes")
    demo.add_argument("--toy", action="store_true", help="tiny random models instead: the pipeline in minutes")

    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            run_check(args.recipe, allow_pickle=args.allow_pickle)
        elif args.command == "merge":
            run_merge_command(args)
        elif args.command == "eval":
            run_eval(args)
        elif args.command == "report":
            run_report(Path(args.reports))
        elif args.command == "tasks":
            run_tasks(as_json=args.json)
        elif args.command == "vector":
            vector_commands.run(args)
        elif args.command == "demo":
            from rv_merge.demo import run_demo

            run_demo(toy=args.toy)
    except RecipeError as error:
        print(f"rv {args.command}: error: {error.message}", file=sys.stderr)
        return error.exit_code
    return 0


def run_check(recipe_path: str, allow_pickle: bool = False) -> None:
    from rv_merge.checks import check_recipe
    from rv_merge.recipe import load_recipe

    recipe = load_recipe(recipe_path)
    print(f"ok   {recipe_path}: valid reasoning_vector recipe "
          f"(alpha {recipe.parameters.alpha}, sign {recipe.parameters.sign:+d})")
    for line in check_recipe(recipe, recipe_path, allow_pickle=allow_pickle):
        print(line)
    print(f"{recipe_path}: all checks passed")


def run_eval(args: argparse.Namespace) -> None:
    from rv_merge.evaluate import recipe_eval, runner
    from rv_merge.report import write_index

    if args.data:
        if not Path(args.data).is_dir():
            raise RecipeError(f"--data {args.data}: no such folder")
        os.environ["RV_EVAL_DATA"] = str(Path(args.data).resolve())
    backend = runner.Backend(args.backend, args.model_args, args.device, args.dtype)
    files = recipe_eval.recipe_files(args.recipes)
    for path in files:
        folder = recipe_eval.evaluate_recipe(path, backend, {"limit": args.limit}, Path(args.reports),
                                             recipe_eval.command_line())
        print(f"report: {folder / 'report.md'}")
    write_index(Path(args.reports))
    print(f"index: {Path(args.reports) / 'README.md'}")


def run_report(reports_dir: Path) -> None:
    from rv_merge.report import write_index, write_report

    folders = sorted(p.parent for p in reports_dir.glob("*/results.json"))
    if not folders:
        raise RecipeError(f"{reports_dir}: no stored results (*/results.json); run `rv eval` first")
    for folder in folders:
        write_report(folder)
        print(f"rebuilt {folder / 'report.md'}")
    write_index(reports_dir)
    print(f"index: {reports_dir / 'README.md'}, {reports_dir / 'index.html'}")


def run_tasks(as_json: bool = False) -> None:
    import json

    from rv_merge.evaluate import suite

    tasks = suite.list_tasks()
    print(json.dumps(suite.as_json(tasks), indent=1) if as_json else suite.format_table(tasks))


def run_merge_command(args: argparse.Namespace) -> None:
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.force:
        raise RecipeError(f"{out} exists and is not empty; pass --force to replace it")
    from rv_merge.recipe import load_recipe

    load_recipe(args.recipe)  # fail on a bad recipe before importing mergekit (3 s)
    if args.allow_pickle:
        from rv_merge.checks import ALLOW_PICKLE_ENV

        os.environ[ALLOW_PICKLE_ENV] = "1"
    from mergekit.options import parse_kmb

    from rv_merge.merge import merge_file

    merge_file(args.recipe, str(out), device=args.device,
               out_shard_size=parse_kmb(args.out_shard_size), quiet=args.quiet)
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
