"""`rv eval`: recipe -> merged model (store) -> evaluations (cached) -> results and report."""

from __future__ import annotations

import datetime
import difflib
import json
import shlex
import sys
import time
from importlib.metadata import version
from pathlib import Path

from pydantic import ValidationError

from rv_merge.atomic_files import write_json
from rv_merge.errors import RecipeError, UsageError
from rv_merge.evaluate import suite
from rv_merge.evaluate.conditions import Conditions, conditions_for, vector_summary
from rv_merge.evaluate.context import EvalContext
from rv_merge.evaluate.jobs import Job, JobResult, plan_jobs, think_variants
from rv_merge.evaluate.runner import run_jobs
from rv_merge.evaluate.sandbox import isolation
from rv_merge.merge.model_store import merge_key
from rv_merge.recipe.loading import describe, load_recipe
from rv_merge.recipe.model_locations import locate_model
from rv_merge.recipe.schema import EvalSettings, Recipe
from rv_merge.report.index import write_index
from rv_merge.report.markdown import write_report
from rv_merge.statistics import mean_estimate
from rv_merge.steering.artifact import load_vectors
from rv_merge.vectors.rounding import recipe_rounding_shares

HUB_DATA = "the standard datasets on the Hugging Face Hub"


def evaluate_recipes(paths: list[str], context: EvalContext, overrides: dict, reports_dir: Path,
                     command: str) -> list[Path]:
    """Evaluate every recipe named (files or folders of them), then rebuild the index."""
    folders = []
    for path in recipe_files(paths):
        folders.append(evaluate_recipe(path, context, overrides, reports_dir, command))
        print(f"report: {folders[-1] / 'report.md'}")
    write_index(reports_dir)
    print(f"index: {reports_dir / 'README.md'}")
    return folders


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
            raise UsageError(f"{name}: no such recipe file or folder")
    if not found:
        raise UsageError(f"no recipes (*.yml) in {', '.join(paths)}")
    return found


def settings_for(recipe: Recipe, source: str, overrides: dict, context: EvalContext) -> tuple[EvalSettings, EvalContext]:
    """The recipe's eval settings with command-line overrides, and the context with the recipe's
    data folder; unknown tasks and missing offline data are refused here, before any work."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:  # overrides are validated like the file (model_copy would skip validation)
        settings = EvalSettings.model_validate({**(recipe.eval or EvalSettings()).model_dump(), **given})
    except ValidationError as error:
        raise RecipeError(f"{source}: eval settings with command-line {sorted(given)}: {describe(error)}") from None
    known = suite.all_names(context.tasks_dir)
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
    if settings.alphas and context.backend.name != "hf":
        raise RecipeError(f"{source}: eval.alphas runs in memory with the hf backend; "
                          f"with {context.backend.name}, write one recipe per alpha")
    if context.backend.name == "server" and "transformers serve" in context.backend.serve:
        scored_by_likelihood = [t for t in settings.tasks
                                if suite.output_types(t, context.tasks_dir) - {"generate_until"}]
        if scored_by_likelihood:
            raise RecipeError(
                f"{source}: {', '.join(scored_by_likelihood)} score answers by log-likelihood, which needs a "
                "server that returns prompt logprobs (`echo` with `logprobs`); transformers serve ignores both. "
                "Drop them from eval.tasks for this run, or serve with vLLM")
    if settings.data and context.data is None:
        if not Path(settings.data).is_dir():
            raise RecipeError(f"{source}: eval.data: no such folder `{settings.data}`")
        context = context.with_data(Path(settings.data).resolve())
    needs_data = {b for t in settings.tasks for b in suite.benchmarks_of(t, context.tasks_dir)} - {"humaneval"}
    if context.offline and needs_data and context.data is None:
        raise RecipeError(
            f"{source}: offline, and {', '.join(sorted(needs_data))} need local data: pass --data DIR "
            "(or set RV_EVAL_DATA); evals/data holds a small sample set"
        )
    return settings, context


def evaluate_recipe(path: Path, context: EvalContext, overrides: dict, reports_dir: Path, command: str) -> Path:
    """Evaluate one recipe end to end; return its report folder."""
    started, wall = datetime.datetime.now(datetime.timezone.utc), time.monotonic()
    source = str(path)
    recipe = load_recipe(path)
    settings, context = settings_for(recipe, source, overrides, context)
    conditions = conditions_for(recipe, source, settings, context.store)
    models = conditions.models
    jobs = plan_jobs(settings, models, context.tasks_dir)
    jobs += [Job(models[label], task) for label in conditions.sweep if label != "merged" for task in settings.tasks]
    jobs += steering_jobs(settings, conditions, context.tasks_dir)
    results = run_jobs(jobs, settings, context)

    folder = reports_dir / path.stem
    folder.mkdir(parents=True, exist_ok=True)
    per_sample = {f"{r.job.model.label}|{r.job.task}|{metric}": scores
                  for r in results for metric, scores in r.per_sample.items()}
    meta = _results_metadata(path, recipe, settings, context, conditions, results)
    meta.update({"command": command, "started": started.isoformat(timespec="seconds"),
                 "wall_s": time.monotonic() - wall,
                 "rounding_loss": _rounding_loss(recipe, source, conditions, context.store)})
    write_json(folder / "per_sample.json", per_sample)
    write_json(folder / "results.json", meta)
    write_report(folder, suite.adversarial_variants(context.tasks_dir))
    return folder


def _results_metadata(path: Path, recipe: Recipe, settings: EvalSettings, context: EvalContext,
                      conditions: Conditions, results: list[JobResult]) -> dict:
    """results.json: what was measured, on which models, with which settings and versions."""
    source = str(path)
    think = think_variants(context.tasks_dir)
    backend = context.backend
    merged = conditions.models["merged"]
    return {
        "name": path.stem,
        "recipe_file": str(path),
        "recipe": recipe.model_dump(mode="json", exclude={"eval"}),
        "settings": settings.model_dump(mode="json"),
        "think_tasks": {t: think[t] for t in settings.tasks if settings.think and t in think},
        "models": {
            **{role: {"reference": ref, "path": str(locate_model(ref, source)),
                      "fingerprint": conditions.fingerprints[role]}
               for role, ref in conditions.references.items()},
            "merged": {"reference": "in memory" if conditions.sweep else "store",
                       "path": str(conditions.merged_path or "-"),
                       "fingerprint": merged.fingerprint, "merged_in_this_run": conditions.merged_now},
        },
        "vector": vector_summary(recipe, source),
        "sweep": dict(conditions.sweep),
        "steering": _steering_metadata(settings, conditions),
        "backend": {"name": backend.name, "model_args": backend.model_args, "dtype": backend.dtype,
                    "device": backend.device},
        "results": [{"model": r.job.model.label, "task": r.job.task, "metrics": _with_intervals(r),
                     "wall_s": round(r.wall_s, 3), "cached": r.cached, "computed_with": r.computed_with}
                    for r in results],
        "documents": {r.job.task: max((len(s) for s in r.per_sample.values()), default=0) for r in results},
        "document_keys": {r.job.task: r.details["documents"] for r in results},
        "data": f"data folder {context.data}" if context.data else HUB_DATA,
        "sandbox": isolation(),
        "versions": {name: version(name) for name in ("rv-merge", "lm_eval", "mergekit", "torch", "transformers")},
        "jobs_run": sum(not r.cached for r in results),
        "jobs_cached": sum(r.cached for r in results),
    }


def steering_jobs(settings: EvalSettings, conditions: Conditions, tasks_dir: Path) -> list[Job]:
    """Every task for each steered target; the think variants for the first scale of each entry
    that asks for them."""
    labels = list(conditions.steering)
    jobs = [Job(conditions.models[label], task) for label in labels for task in settings.tasks]
    if settings.think:
        think = think_variants(tasks_dir)
        firsts: dict[str, str] = {}  # vectors -> the label of their first scale
        wanted = {entry.display_name for entry in settings.steering if entry.think}
        for label, condition in conditions.steering.items():
            if condition["vectors"] in wanted:
                firsts.setdefault(condition["vectors"], label)
        jobs += [Job(conditions.models[label], think[task]) for label in firsts.values()
                 for task in settings.tasks if task in think]
    return jobs


def _steering_metadata(settings: EvalSettings, conditions: Conditions) -> dict | None:
    if not settings.steering:
        return None
    entries = []  # lists, in the recipe's order (results.json is written with sorted keys)
    for entry in settings.steering:
        vectors = load_vectors(Path(entry.vectors))
        entries.append({"name": entry.display_name, "vectors": entry.vectors, "layers": entry.layers,
                        "numbers": vectors.layers * vectors.hidden_size,
                        "made_by": vectors.metadata.get("made_by", {}), "made_for": vectors.metadata.get("model")})
    return {"entries": entries,
            "conditions": [{"label": label, **condition} for label, condition in conditions.steering.items()]}


def _rounding_loss(recipe: Recipe, source: str, conditions: Conditions, store: Path) -> dict | None:
    """How much of the vector the output dtype rounds away (rv_merge.vectors.rounding); kept in
    the store per merge (the same key as the merged model), since it reads every weight."""
    if not isinstance(recipe.parameters.alpha, (int, float)):
        return None
    inputs = {role: conditions.fingerprints[role] for role in ("target", *recipe.sources)}
    path = store / "rounding" / f"{merge_key(recipe, inputs)}.json"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, recipe_rounding_shares(recipe, source))
    return json.loads(path.read_text())


def _with_intervals(result: JobResult) -> dict:
    """The job's metrics, each with a 95% interval (and a standard error where lm-eval gave
    none) from its per-document scores (rv_merge.statistics)."""
    metrics = {}
    for key, metric in result.metrics.items():
        scores = result.per_sample.get(key)
        if scores:
            estimate = mean_estimate(scores)
            metric = {**metric, "stderr": metric.get("stderr") if metric.get("stderr") is not None
                      else estimate.stderr, "interval": [estimate.low, estimate.high],
                      "interval_method": estimate.method}
        metrics[key] = metric
    return metrics


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in ["rv", *sys.argv[1:]])
