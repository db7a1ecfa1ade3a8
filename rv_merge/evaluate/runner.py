"""Run (model, task) jobs through lm-eval, one loaded model at a time, caching each result.

Results come from, and go to, rv_merge.evaluate.result_cache as soon as each job is done, so
an interrupted run resumes where it stopped. Progress lines name the model, the task, how
many jobs are done and the time left.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Callable

import datasets
import transformers
from lm_eval.tasks import TaskManager

from rv_merge.evaluate.context import Backend, EvalContext
from rv_merge.evaluate.greedy_generation import RowDroppingHFLM
from rv_merge.evaluate.jobs import Job, JobResult, ModelUnderTest
from rv_merge.evaluate.lm_eval_job import evaluate_job
from rv_merge.evaluate.result_cache import job_key, load_result, store_result, task_fingerprint
from rv_merge.evaluate.servers import run_on_servers
from rv_merge.patches.lm_eval import loaded_module
from rv_merge.recipe.schema import EvalSettings
from rv_merge.steering.apply import add_hooks
from rv_merge.steering.artifact import load_vectors


def run_jobs(
    jobs: list[Job],
    settings: EvalSettings,
    context: EvalContext,
    progress: Callable[[str], None] = print,
) -> list[JobResult]:
    """Run (or fetch from the cache) every job, writing each result as soon as it is done."""
    _quiet_libraries()
    backend = context.backend
    context.results_cache.mkdir(parents=True, exist_ok=True)
    task_prints = {task: task_fingerprint(task, context.tasks_dir, context.data) for task in {job.task for job in jobs}}
    paths = {job: context.results_cache / f"{job_key(job, settings, backend, task_prints[job.task])}.json"
             for job in jobs}
    results: dict[Job, JobResult] = {}
    for index, job in enumerate(jobs, 1):
        if paths[job].is_file():
            results[job] = load_result(job, paths[job])
            progress(f"[{index}/{len(jobs)}] {job.name}: cached")
    todo, queued = [], set()  # jobs with one key (the same model and task under two labels) run once
    for job in jobs:
        if job not in results and paths[job] not in queued:
            queued.add(paths[job])
            todo.append(job)
    tracker = _Progress(jobs, len(todo), progress)

    def finished(job: Job, result: JobResult) -> None:
        store_result(paths[job], result)
        results[job] = result
        tracker.done(job, result)

    if backend.name == "server":
        run_on_servers(todo, settings, context, tracker.start, finished)
    else:
        task_manager = TaskManager(include_path=str(context.tasks_dir), include_defaults=False,
                                   metadata=context.task_metadata)
        loaded: dict = {}
        for job in todo:
            tracker.start(job)
            if job.model.label not in loaded:
                loaded = _switch_model(job.model, loaded, backend, settings)
            model_args = None if backend.name == "hf" else backend.args_for(job.model.path)
            finished(job, evaluate_job(loaded[job.model.label], model_args, job, backend, settings, task_manager))
    return [results[job] if job in results else load_result(job, paths[job]) for job in jobs]


class _Progress:
    """Progress lines (thread-safe): the model, the task, how many are done, the time left."""

    def __init__(self, jobs: list[Job], todo: int, progress: Callable[[str], None]):
        self.index = {job: i for i, job in enumerate(jobs, 1)}
        self.total, self.todo, self.progress = len(jobs), todo, progress
        self.started, self.times, self.lock = time.monotonic(), [], threading.Lock()

    def start(self, job: Job) -> None:
        with self.lock:
            left = self.todo - len(self.times)
            eta = f", about {_duration(sum(self.times) / len(self.times) * left)} left" if self.times else ""
            self.progress(f"[{self.index[job]}/{self.total}] {job.name}: running{eta}")

    def done(self, job: Job, result: JobResult) -> None:
        with self.lock:
            self.times.append(result.wall_s)
            self.progress(f"[{self.index[job]}/{self.total}] {job.name}: done in {_duration(result.wall_s)} "
                          f"(total {_duration(time.monotonic() - self.started)})")


def _quiet_libraries() -> None:
    """Our progress lines replace the libraries' per-request chatter."""
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    logging.getLogger("lm_eval").setLevel(logging.ERROR)


def _switch_model(model: ModelUnderTest, loaded: dict, backend: Backend, settings: EvalSettings) -> dict:
    """One model in memory. An in-memory merge or a steered target reuses a loaded copy of its
    target (rewriting the weights, or adding hooks) instead of loading anything; a steered
    target needs the target's own weights, so it follows a merge only after a reload."""
    if model.merge is None and model.steering is None:
        return {model.label: _model(model, backend, settings)}
    previous = next(iter(loaded.values()), None)
    for handle in getattr(previous, "rv_hooks", []):
        handle.remove()
    reusable = getattr(previous, "rv_target_path", None) == model.path and not (
        model.steering and getattr(previous, "rv_weights_changed", False))
    if not reusable:
        previous = _model(model, backend, settings)
        previous.rv_target_path, previous.rv_weights_changed = model.path, False
    previous.rv_hooks = []
    if model.merge is not None:
        model.merge.apply(loaded_module(previous), model.coefficient)
        previous.rv_weights_changed = True
    else:
        steering = model.steering
        previous.rv_hooks = add_hooks(loaded_module(previous), load_vectors(steering.folder), steering.scale,
                                      steering.layers)
    return {model.label: previous}


def _model(model: ModelUnderTest, backend: Backend, settings: EvalSettings):
    """An lm-eval model object (loaded once per model) or, for other backends, the name."""
    if backend.name != "hf":
        return backend.name
    return RowDroppingHFLM(pretrained=str(model.path), dtype=backend.dtype, device=backend.device,
                batch_size=settings.batch_size, trust_remote_code=False)


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"
