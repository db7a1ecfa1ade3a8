"""Evaluate a recipe's merged model and its baselines, one (model, task) job at a time.

Each job's result is cached under a key made of the model's fingerprint, the task's
fingerprint (its YAML files, hooks, rv_merge.evaluate sources and data files), the
generation settings, the seed and the backend. A re-run serves unchanged jobs from the cache;
an interrupted run resumes with the jobs it had not finished. lm-eval's own response cache is
never used: it keys on the request only, so it would serve one checkpoint's answers to
another.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from rv_merge.evaluate import suite
from rv_merge.recipe import EvalSettings

EVALUATE_SOURCES = Path(__file__).resolve().parent
BACKENDS = ("hf", "vllm", "local-completions")


@dataclass(frozen=True)
class ModelUnderTest:
    label: str  # "target", "grpo", "merged" or a sweep point "alpha=0.5"
    path: Path
    fingerprint: str
    # In-memory merges (alpha sweeps): `path` is the target; its loaded weights are
    # overwritten with target + coefficient * v (see rv_merge.evaluate.sweep).
    merge: object = None  # an InMemoryMerge
    coefficient: float | None = None


@dataclass(frozen=True)
class Job:
    model: ModelUnderTest
    task: str

    @property
    def name(self) -> str:
        return f"{self.model.label} / {self.task}"


@dataclass(frozen=True)
class Backend:
    """Which lm-eval model backend runs the jobs, with extra `model_args` passed through.

    hf: transformers on CPU or GPU (`device`); vllm: `tensor_parallel_size=..,
    data_parallel_size=..`; local-completions: an OpenAI-compatible server that serves each
    model under its local path (`base_url=..., num_concurrent=..`).
    """

    name: str = "hf"
    model_args: str = ""
    device: str = "cpu"
    dtype: str = "float32"

    def __post_init__(self):
        if self.name not in BACKENDS:
            raise ValueError(f"backend {self.name!r}: choose one of {', '.join(BACKENDS)}")

    def args_for(self, model: ModelUnderTest) -> str:
        key = "model" if self.name == "local-completions" else "pretrained"
        base = f"{key}={model.path}"
        if self.name == "hf":
            base += f",dtype={self.dtype},device={self.device}"
        if self.name == "local-completions":
            base += f",tokenizer={model.path}"
        return base + (f",{self.model_args}" if self.model_args else "")


@dataclass
class JobResult:
    job: Job
    metrics: dict  # "metric,filter" -> {"value", "stderr", "n"}
    per_sample: dict  # "metric,filter" -> list of per-document scores, in document order
    wall_s: float
    cached: bool = False
    details: dict = field(default_factory=dict)


def plan_jobs(settings: EvalSettings, models: dict[str, ModelUnderTest]) -> list[Job]:
    """The paper's comparisons: every task for the baselines and the merged model; the think
    variants (where a task has one) for GRPO and for the merged model."""
    labels = [label for label in ("target", "sft", "grpo") if label in settings.baselines] + ["merged"]
    jobs = [Job(models[label], task) for label in labels for task in settings.tasks]
    if settings.think:
        think = think_variants()
        for label in [l for l in ("grpo", "merged") if l in labels]:
            jobs += [Job(models[label], think[task]) for task in settings.tasks if task in think]
    return jobs


def think_variants() -> dict[str, str]:
    """base task or group -> its think variant."""
    variants = {t.base: t.task for t in suite.list_tasks() if t.kind == "rv_think"}
    variants.update({g.base: g.name for g in suite.list_groups() if g.kind == "rv_think"})
    return variants


def task_fingerprint(task: str) -> str:
    """Hash of everything that defines a task's prompts and scores."""
    digest = hashlib.sha256()
    for path in sorted(suite.task_files(task)) + sorted(EVALUATE_SOURCES.glob("*.py")):
        digest.update(str(path.name).encode() + b"\0" + path.read_bytes())
    data_root = os.environ.get("RV_EVAL_DATA")
    if data_root:
        for benchmark in suite.benchmarks_of(task):
            for path in sorted((Path(data_root) / benchmark).rglob("*")):
                if path.is_file():
                    digest.update(str(path.relative_to(data_root)).encode() + b"\0" + path.read_bytes())
    else:
        digest.update(b"hub")
    return digest.hexdigest()[:20]


def job_key(job: Job, settings: EvalSettings, backend: Backend, task_print: str) -> str:
    """The cache key of one job; `task_print` is task_fingerprint(job.task)."""
    payload = {
        "model": job.model.fingerprint,
        "task": job.task,
        "task_fingerprint": task_print,
        "settings": {**settings.model_dump(mode="json", exclude={"tasks", "baselines", "think", "data", "alphas",
                                                                  "limits"}),
                     "limit": settings.limit_for(job.task)},
        "backend": [backend.name, backend.model_args, backend.dtype],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def run_jobs(
    jobs: list[Job],
    settings: EvalSettings,
    backend: Backend,
    cache_dir: Path,
    progress: Callable[[str], None] = print,
) -> list[JobResult]:
    """Run (or fetch from the cache) every job, writing each result as soon as it is done."""
    from lm_eval.tasks import TaskManager

    _quiet_libraries()
    task_manager = TaskManager(include_path=str(suite.tasks_root()), include_defaults=False)
    cache_dir.mkdir(parents=True, exist_ok=True)
    task_prints = {task: task_fingerprint(task) for task in {job.task for job in jobs}}
    paths = [cache_dir / f"{job_key(job, settings, backend, task_prints[job.task])}.json" for job in jobs]
    results, loaded, started, done_times = [], {}, time.monotonic(), []
    for index, (job, path) in enumerate(zip(jobs, paths), 1):
        if path.is_file():
            results.append(_load(job, path))
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
        write_json(path, _as_json(result))
        done_times.append(result.wall_s)
        results.append(result)
        progress(f"[{index}/{len(jobs)}] {job.name}: done in {_duration(result.wall_s)} "
                 f"(total {_duration(time.monotonic() - started)})")
    return results


def _quiet_libraries() -> None:
    """Our progress lines replace the libraries' per-request chatter."""
    import logging

    import datasets
    import transformers

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
    model.merge.apply(previous.model, model.coefficient)
    return {model.label: previous}


def _model(model: ModelUnderTest, backend: Backend, settings: EvalSettings):
    """An lm-eval model object (loaded once per model) or, for other backends, the name."""
    if backend.name != "hf":
        return backend.name
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=str(model.path), dtype=backend.dtype, device=backend.device,
                batch_size=settings.batch_size, trust_remote_code=False)


def _evaluate(model, job: Job, backend: Backend, settings: EvalSettings, task_manager) -> dict:
    import lm_eval

    gen_kwargs = {"max_gen_toks": settings.max_gen_toks} if settings.max_gen_toks else None
    return lm_eval.simple_evaluate(
        model=model,
        model_args=None if backend.name == "hf" else backend.args_for(job.model),
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
    for name in subtasks:
        for sample in sorted(output["samples"][name], key=lambda s: s["doc_id"]):
            for metric in sample["metrics"]:
                per_sample.setdefault(f"{metric},{sample['filter']}", []).append(float(sample[metric]))
    for key, scores in per_sample.items():
        if key in metrics:
            metrics[key]["n"] = len(scores)
    details = {"n-shot": output.get("n-shot", {}), "versions": output.get("versions", {}),
               "lm_eval_version": output.get("lm_eval_version")}
    return JobResult(job, metrics, per_sample, wall_s, details=details)


def _as_json(result: JobResult) -> dict:
    return {"model": result.job.model.label, "model_fingerprint": result.job.model.fingerprint,
            "task": result.job.task, "metrics": result.metrics, "per_sample": result.per_sample,
            "wall_s": result.wall_s, "details": result.details}


def _load(job: Job, path: Path) -> JobResult:
    data = json.loads(path.read_text())
    return JobResult(job, data["metrics"], data["per_sample"], data["wall_s"], cached=True,
                     details=data.get("details", {}))


def write_json(path: Path, data) -> None:
    """Write JSON under a temporary name, then rename: never a half-written file."""
    temporary = path.with_suffix(f".tmp{os.getpid()}")
    temporary.write_text(json.dumps(data, indent=1, sort_keys=True, default=_plain))
    os.replace(temporary, path)


def _plain(value):
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"
