"""Run (model, task) jobs through lm-eval, one loaded model at a time, caching each result.

Results come from, and go to, rv_merge.evaluate.result_cache as soon as each job is done, so
an interrupted run resumes where it stopped. Progress lines name the model, the task, how
many jobs are done and the time left.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Callable

import datasets
import lm_eval
import transformers
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager

from rv_merge.evaluate.context import Backend, EvalContext
from rv_merge.evaluate.jobs import Job, JobResult, ModelUnderTest
from rv_merge.evaluate.result_cache import computed_with, job_key, load_result, store_result, task_fingerprint
from rv_merge.patches.lm_eval import loaded_module
from rv_merge.recipe.schema import EvalSettings


def run_jobs(
    jobs: list[Job],
    settings: EvalSettings,
    context: EvalContext,
    progress: Callable[[str], None] = print,
) -> list[JobResult]:
    """Run (or fetch from the cache) every job, writing each result as soon as it is done."""
    _quiet_libraries()
    backend = context.backend
    task_manager = TaskManager(include_path=str(context.tasks_dir), include_defaults=False,
                               metadata=context.task_metadata)
    context.results_cache.mkdir(parents=True, exist_ok=True)
    task_prints = {task: task_fingerprint(task, context.tasks_dir, context.data) for task in {job.task for job in jobs}}
    paths = [context.results_cache / f"{job_key(job, settings, backend, task_prints[job.task])}.json" for job in jobs]
    results, loaded, started, done_times = [], {}, time.monotonic(), []
    for index, (job, path) in enumerate(zip(jobs, paths), 1):
        if path.is_file():
            results.append(load_result(job, path))
            progress(f"[{index}/{len(jobs)}] {job.name}: cached")
            continue
        todo = sum(not p.is_file() for p in paths[index - 1:])
        eta = f", about {_duration(sum(done_times) / len(done_times) * todo)} left" if done_times else ""
        progress(f"[{index}/{len(jobs)}] {job.name}: running{eta}")
        if job.model.label not in loaded:
            loaded = _switch_model(job.model, loaded, backend, settings)
        begin = time.monotonic()
        output = _evaluate(loaded[job.model.label], job, backend, settings, task_manager)
        result = _collect(job, output, time.monotonic() - begin)
        result.computed_with = computed_with(backend)
        store_result(path, result)
        done_times.append(result.wall_s)
        results.append(result)
        progress(f"[{index}/{len(jobs)}] {job.name}: done in {_duration(result.wall_s)} "
                 f"(total {_duration(time.monotonic() - started)})")
    return results


def _quiet_libraries() -> None:
    """Our progress lines replace the libraries' per-request chatter."""
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    logging.getLogger("lm_eval").setLevel(logging.ERROR)


def _switch_model(model: ModelUnderTest, loaded: dict, backend: Backend, settings: EvalSettings) -> dict:
    """One model in memory. An in-memory merge reuses a loaded copy of its target (rewriting
    the weights) instead of loading anything."""
    if model.merge is None:
        return {model.label: _model(model, backend, settings)}
    previous = next(iter(loaded.values()), None)
    if getattr(previous, "rv_target_path", None) != model.path:
        previous = _model(model, backend, settings)
        previous.rv_target_path = model.path
    model.merge.apply(loaded_module(previous), model.coefficient)
    return {model.label: previous}


def _model(model: ModelUnderTest, backend: Backend, settings: EvalSettings):
    """An lm-eval model object (loaded once per model) or, for other backends, the name."""
    if backend.name != "hf":
        return backend.name
    return HFLM(pretrained=str(model.path), dtype=backend.dtype, device=backend.device,
                batch_size=settings.batch_size, trust_remote_code=False)


def _evaluate(model, job: Job, backend: Backend, settings: EvalSettings, task_manager) -> dict:
    gen_kwargs = {"max_gen_toks": settings.max_gen_toks} if settings.max_gen_toks else None
    return lm_eval.simple_evaluate(
        model=model,
        model_args=None if backend.name == "hf" else backend.args_for(job.model.path),
        tasks=[job.task], task_manager=task_manager, limit=settings.limit_for(job.task),
        num_fewshot=settings.num_fewshot, gen_kwargs=gen_kwargs, batch_size=settings.batch_size,
        random_seed=settings.seed, numpy_random_seed=settings.seed, torch_random_seed=settings.seed,
        fewshot_random_seed=settings.seed, apply_chat_template=settings.apply_chat_template,
        log_samples=True, use_cache=None, cache_requests=False, confirm_run_unsafe_code=True,
        bootstrap_iters=0,
    )


def _collect(job: Job, output: dict, wall_s: float) -> JobResult:
    """Metrics of the task (or group) and per-document scores, in a stable order."""
    task_results = output["results"][job.task]
    metrics = {}
    for key, value in task_results.items():
        if "," not in key or "_stderr," in key or not isinstance(value, (int, float)):
            continue
        metric, filter_name = key.split(",", 1)
        stderr = task_results.get(f"{metric}_stderr,{filter_name}")
        metrics[key] = {"value": float(value),
                        "stderr": float(stderr) if isinstance(stderr, (int, float)) else None}
    subtasks = sorted(name for name in output["samples"]) if job.task not in output["samples"] else [job.task]
    per_sample: dict[str, list] = {}
    documents: dict[str, list] = {}  # per filter: the document of each score, see _document_key
    for name in subtasks:
        for sample in sorted(output["samples"][name], key=lambda s: s["doc_id"]):
            documents.setdefault(sample["filter"], []).append(_document_key(job.task, name, sample))
            for metric in sample["metrics"]:
                per_sample.setdefault(f"{metric},{sample['filter']}", []).append(float(sample[metric]))
    for key, scores in per_sample.items():
        if key in metrics:
            metrics[key]["n"] = len(scores)
    details = {"n-shot": output.get("n-shot", {}), "versions": output.get("versions", {}),
               "lm_eval_version": output.get("lm_eval_version"),
               "documents": next(iter(documents.values()), [])}
    return JobResult(job, metrics, per_sample, wall_s, details=details)


def _document_key(task: str, subtask: str, sample: dict) -> str:
    """`<subtask>/<index of the clean document>`, alike for a task and its perturbed variants:
    the subtask without the group's name (rv_bbh_reorder_snarks -> snarks), and the document
    a perturbed one came from (a rotated SciQ question records its `source`)."""
    recorded = json.loads(sample["doc"].get("perturbation") or "{}")
    suffix = "" if subtask == task else subtask.removeprefix(task + "_")
    return f"{suffix}/{recorded.get('source', sample['doc_id'])}"


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"
