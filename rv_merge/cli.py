"""`rv`: the rv-merge command line (check, merge, tasks, demo)."""

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

    tasks = commands.add_parser("tasks", help="list the evaluation tasks in evals/tasks")
    tasks.add_argument("--json", action="store_true", help="machine-readable output")

    commands.add_parser("demo", help="offline: build toy models, check and merge recipes/toy-add.yml")

    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            run_check(args.recipe, allow_pickle=args.allow_pickle)
        elif args.command == "merge":
            run_merge_command(args)
        elif args.command == "tasks":
            run_tasks(as_json=args.json)
        elif args.command == "demo":
            from rv_merge.demo import run_demo

            run_demo()
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

    merge_file(args.recipe, str(out), device=args.device,
               out_shard_size=parse_kmb(args.out_shard_size), quiet=args.quiet)
    print(f"wrote {out}")


def merge_file(recipe_path: str, out: str, **options) -> None:
    """Merge a recipe file through mergekit's own `run_merge` (guarded: checks + atomic)."""
    import yaml
    import mergekit.merge
    from mergekit.config import MergeConfiguration
    from mergekit.options import MergeOptions

    from rv_merge.guard import install_guard
    from rv_merge.method import register_method

    register_method()  # both idempotent: the startup hook normally did this already
    install_guard(mergekit.merge)
    text = Path(recipe_path).read_text(encoding="utf-8")
    config = MergeConfiguration.model_validate(yaml.safe_load(text))
    mergekit.merge.run_merge(config, out, MergeOptions(**options), config_source=text)


if __name__ == "__main__":
    sys.exit(main())
