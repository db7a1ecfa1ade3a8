"""`rv eval`: recipe -> merged model (store) -> evaluations (cached) -> report."""

from __future__ import annotations

import datetime
import difflib
import os
import shlex
import sys
import time
from importlib.metadata import version
from pathlib import Path

from rv_merge.checks import locate_model
from rv_merge.errors import RecipeError
from rv_merge.evaluate import runner, suite
from rv_merge.recipe import EvalSettings, Recipe, load_recipe
from rv_merge.store import fingerprint_model, merged_model, store_root

HUB_DATA = "the standard datasets on the Hugging Face Hub"


def recipe_files(paths: list[str]) -> list[Path]:
    """Recipe files named directly or found in the folders named."""
    found = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found += sorted(path.glob("*.yml")) + sorted(path.glob("*.yaml"))
        elif path.is_file():
            found.append(path)
        else:
            raise RecipeError(f"{name}: no such recipe file or folder")
    if not found:
        raise RecipeError(f"no recipes (*.yml) in {', '.join(paths)}")
    return found


def settings_for(recipe: Recipe, source: str, overrides: dict) -> EvalSettings:
    """The recipe's eval settings with command-line overrides; unknown tasks and missing
    offline data are refused here, before any work."""
    settings = (recipe.eval or EvalSettings()).model_copy(update={k: v for k, v in overrides.items() if v is not None})
    known = suite.all_names()
    for task in settings.tasks:
        if task not in known:
            close = difflib.get_close_matches(task, sorted(known), n=1)
            hint = f"did you mean `{close[0]}`?" if close else "`rv tasks` lists them"
            raise RecipeError(f"{source}: eval.tasks: unknown task `{task}`; {hint}")
    if settings.data and not os.environ.get("RV_EVAL_DATA"):
        if not Path(settings.data).is_dir():
            raise RecipeError(f"{source}: eval.data: no such folder `{settings.data}`")
        os.environ["RV_EVAL_DATA"] = str(Path(settings.data).resolve())
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"
    needs_data = {b for t in settings.tasks for b in suite.benchmarks_of(t)} - {"humaneval"}
    if offline and needs_data and not os.environ.get("RV_EVAL_DATA"):
        raise RecipeError(
            f"{source}: offline, and {', '.join(sorted(needs_data))} need local data: pass --data DIR "
            "(or set RV_EVAL_DATA); evals/data holds a small sample set"
        )
    return settings


def evaluate_recipe(path: Path, backend: runner.Backend, overrides: dict, reports_dir: Path,
                    command: str) -> Path:
    """Evaluate one recipe end to end; return its report folder."""
    started, wall = datetime.datetime.now(datetime.timezone.utc), time.monotonic()
    source = str(path)
    recipe = load_recipe(path)
    data_before = os.environ.get("RV_EVAL_DATA")
    try:
        settings = settings_for(recipe, source, overrides)  # may set RV_EVAL_DATA from eval.data
        return _evaluate(path, recipe, settings, backend, reports_dir, command, started, wall)
    finally:
        if data_before is None:
            os.environ.pop("RV_EVAL_DATA", None)


def _evaluate(path: Path, recipe: Recipe, settings: EvalSettings, backend: runner.Backend,
              reports_dir: Path, command: str, started: datetime.datetime, wall: float) -> Path:
    from rv_merge.evaluate.sandbox import isolation
    from rv_merge.report import write_report

    source = str(path)
    references = {"target": recipe.target, "sft": recipe.source("sft"), "grpo": recipe.source("grpo")}
    fingerprints = {role: fingerprint_model(ref, source) for role, ref in references.items()}
    print(f"{path}: merging (or reusing the stored merge) ...", flush=True)
    merged_path, merged_now = merged_model(recipe, source, fingerprints)
    models = {label: runner.ModelUnderTest(label, locate_model(references[label], source), fingerprints[label])
              for label in ("target", "grpo")}
    models["merged"] = runner.ModelUnderTest("merged", merged_path, merged_path.name)
    jobs = runner.plan_jobs(settings, models)
    results = runner.run_jobs(jobs, settings, backend, store_root() / "results")

    folder = reports_dir / path.stem
    folder.mkdir(parents=True, exist_ok=True)
    per_sample = {f"{r.job.model.label}|{r.job.task}|{metric}": scores
                  for r in results for metric, scores in r.per_sample.items()}
    think = runner.think_variants()
    meta = {
        "name": path.stem,
        "recipe_file": str(path),
        "recipe": recipe.model_dump(mode="json", exclude={"eval"}),
        "settings": settings.model_dump(mode="json"),
        "think_tasks": {t: think[t] for t in settings.tasks if settings.think and t in think},
        "models": {
            **{label: {"reference": references[label], "path": str(models[label].path),
                       "fingerprint": fingerprints[label]} for label in ("target", "grpo")},
            "sft": {"reference": references["sft"], "fingerprint": fingerprints["sft"]},
            "merged": {"reference": "store", "path": str(merged_path), "fingerprint": merged_path.name,
                       "merged_in_this_run": merged_now},
        },
        "backend": {"name": backend.name, "model_args": backend.model_args, "dtype": backend.dtype,
                    "device": backend.device},
        "results": [{"model": r.job.model.label, "task": r.job.task, "metrics": r.metrics,
                     "wall_s": round(r.wall_s, 3), "cached": r.cached} for r in results],
        "documents": {r.job.task: max((len(s) for s in r.per_sample.values()), default=0) for r in results},
        "data": f"RV_EVAL_DATA={os.environ['RV_EVAL_DATA']}" if os.environ.get("RV_EVAL_DATA") else HUB_DATA,
        "sandbox": isolation(),
        "versions": {name: version(name) for name in ("rv-merge", "lm_eval", "mergekit", "torch", "transformers")},
        "command": command,
        "started": started.isoformat(timespec="seconds"),
        "wall_s": time.monotonic() - wall,
        "jobs_run": sum(not r.cached for r in results),
        "jobs_cached": sum(r.cached for r in results),
    }
    runner.write_json(folder / "per_sample.json", per_sample)
    runner.write_json(folder / "results.json", meta)
    write_report(folder)
    return folder


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in ["rv", *sys.argv[1:]])
