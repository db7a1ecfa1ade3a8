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
from rv_merge.evaluate.sweep import InMemoryMerge, sweep_label
from rv_merge.store import fingerprint_model, merge_key, merged_model, store_root
from rv_merge.vectors.store import read_metadata, size_on_disk

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
    for task in [*settings.tasks, *settings.limits]:
        if task not in known:
            close = difflib.get_close_matches(task, sorted(known), n=1)
            hint = f"did you mean `{close[0]}`?" if close else "`rv tasks` lists them"
            raise RecipeError(f"{source}: eval.tasks: unknown task `{task}`; {hint}")
    if settings.alphas and isinstance(recipe.parameters.alpha, list):
        raise RecipeError(f"{source}: eval.alphas sweeps one alpha for all layers; parameters.alpha "
                          "is a per-layer gradient here: make it a number")
    if settings.alphas and recipe.parameters.alpha not in settings.alphas:
        raise RecipeError(f"{source}: eval.alphas {settings.alphas} must include the recipe's "
                          f"parameters.alpha ({recipe.parameters.alpha}), the point reported as `merged`")
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
        if settings.alphas and backend.name != "hf":
            raise RecipeError(f"{source}: eval.alphas runs in memory with the hf backend; "
                              f"with {backend.name}, write one recipe per alpha")
        return _evaluate(path, recipe, settings, backend, reports_dir, command, started, wall)
    finally:
        if data_before is None:
            os.environ.pop("RV_EVAL_DATA", None)


def _evaluate(path: Path, recipe: Recipe, settings: EvalSettings, backend: runner.Backend,
              reports_dir: Path, command: str, started: datetime.datetime, wall: float) -> Path:
    from rv_merge.evaluate.sandbox import isolation
    from rv_merge.report import write_report

    source = str(path)
    references = {"target": recipe.target, **recipe.sources}
    fingerprints = {role: fingerprint_model(ref, source) for role, ref in references.items()}
    inputs = dict(fingerprints)  # what the merged weights depend on
    for role in [r for r in ("sft", "grpo") if r in settings.baselines and r not in references]:
        references[role] = _vector_source(recipe, source, role)
        fingerprints[role] = fingerprint_model(references[role], source)
    models = {label: runner.ModelUnderTest(label, locate_model(references[label], source), fingerprints[label])
              for label in ("target", "sft", "grpo") if label in references and label in {"target", *settings.baselines}}
    sweep = {}
    if settings.alphas:
        print(f"{path}: alpha sweep {settings.alphas}, evaluated in memory (no model written)", flush=True)
        merge, target_path = InMemoryMerge(recipe, source), models["target"].path
        for alpha in settings.alphas:
            label = "merged" if alpha == recipe.parameters.alpha else sweep_label(alpha)
            models[label] = runner.ModelUnderTest(label, target_path, merge_key(_with_alpha(recipe, alpha), inputs),
                                                  merge, recipe.parameters.sign * alpha)
            sweep[label] = alpha
        merged_path, merged_now = None, False
    else:
        print(f"{path}: merging (or reusing the stored merge) ...", flush=True)
        merged_path, merged_now = merged_model(recipe, source, inputs)
        models["merged"] = runner.ModelUnderTest("merged", merged_path, merged_path.name)
    jobs = runner.plan_jobs(settings, models)
    jobs += [runner.Job(models[label], task) for label in sweep if label != "merged" for task in settings.tasks]
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
            **{role: {"reference": ref, "path": str(locate_model(ref, source)), "fingerprint": fingerprints[role]}
               for role, ref in references.items()},
            "merged": {"reference": "in memory" if sweep else "store", "path": str(merged_path or "-"),
                       "fingerprint": models["merged"].fingerprint, "merged_in_this_run": merged_now},
        },
        "vector": _vector_summary(recipe, source),
        "sweep": {label: alpha for label, alpha in sweep.items()},
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


def _with_alpha(recipe: Recipe, alpha: float) -> Recipe:
    return recipe.model_copy(update={"parameters": recipe.parameters.model_copy(update={"alpha": alpha})})


def _vector_source(recipe: Recipe, source: str, role: str) -> str:
    """The SFT or GRPO model a vector was extracted from, as a baseline (still on disk)."""
    vector = locate_model(recipe.source("vector"), source)
    recorded = read_metadata(vector).get("sources", {}).get(role, {}).get("path")
    if not recorded or not Path(recorded).is_dir():
        raise RecipeError(f"{source}: eval.baselines lists {role}, but the {role} model of vector {vector} "
                          f"({recorded or 'not recorded'}) is not on disk; remove it from `baselines`")
    return recorded


def _vector_summary(recipe: Recipe, source: str) -> dict | None:
    """What the report says about a vector source: encoding, size, reconstruction error."""
    if recipe.source("vector") is None:
        return None
    folder = locate_model(recipe.source("vector"), source)
    metadata = read_metadata(folder)
    compression = {k: v for k, v in (metadata.get("compression") or {}).items() if v is not None and k != "inputs"}
    return {"path": str(folder), "encoding": metadata["encoding"], "compression": compression,
            "size_bytes": size_on_disk(folder), "relative_error": metadata.get("relative_error", 0.0)}


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in ["rv", *sys.argv[1:]])
