"""One (model, task) job through lm-eval: evaluate, then collect metrics, per-document scores,
which document each score belongs to and what the model generated.

Used by the in-process runner (rv_merge.evaluate.runner) and by the server runner
(rv_merge.evaluate.servers) alike.
"""

from __future__ import annotations

import json
import time

import lm_eval
from lm_eval.tasks import TaskManager

from rv_merge.evaluate.context import Backend
from rv_merge.evaluate.jobs import Job, JobResult
from rv_merge.evaluate.result_cache import computed_with
from rv_merge.recipe.schema import EvalSettings


def evaluate_job(model, model_args: str | None, job: Job, backend: Backend, settings: EvalSettings,
                 task_manager: TaskManager) -> JobResult:
    """Evaluate one job: `model` is an lm-eval model object (hf) or an lm-eval model name with
    its `model_args` (API backends)."""
    begin = time.monotonic()
    output = _simple_evaluate(model, model_args, job, settings, task_manager)
    result = _collect(job, output, time.monotonic() - begin)
    result.computed_with = computed_with(backend)
    return result


def _simple_evaluate(model, model_args: str | None, job: Job, settings: EvalSettings, task_manager) -> dict:
    gen_kwargs = {"max_gen_toks": settings.max_gen_toks} if settings.max_gen_toks else None
    return lm_eval.simple_evaluate(
        model=model,
        model_args=model_args,
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
    responses: dict[str, list] = {}  # per filter: what the model generated (generation tasks)
    for name in subtasks:
        for sample in sorted(output["samples"][name], key=lambda s: s["doc_id"]):
            documents.setdefault(sample["filter"], []).append(_document_key(job.task, name, sample))
            generated = sample["resps"][0][0] if sample.get("resps") and sample["resps"][0] else None
            responses.setdefault(sample["filter"], []).append(generated if isinstance(generated, str) else None)
            for metric in sample["metrics"]:
                per_sample.setdefault(f"{metric},{sample['filter']}", []).append(float(sample[metric]))
    for key, scores in per_sample.items():
        if key in metrics:
            metrics[key]["n"] = len(scores)
    details = {"n-shot": output.get("n-shot", {}), "versions": output.get("versions", {}),
               "lm_eval_version": output.get("lm_eval_version"),
               "documents": next(iter(documents.values()), []),
               "responses": next(iter(responses.values()), [])}
    return JobResult(job, metrics, per_sample, wall_s, details=details)


def _document_key(task: str, subtask: str, sample: dict) -> str:
    """`<subtask>/<index of the clean document>`, alike for a task and its perturbed variants:
    the subtask without the group's name (rv_bbh_reorder_snarks -> snarks), and the document
    a perturbed one came from (a rotated SciQ question records its `source`)."""
    recorded = json.loads(sample["doc"].get("perturbation") or "{}")
    suffix = "" if subtask == task else subtask.removeprefix(task + "_")
    return f"{suffix}/{recorded.get('source', sample['doc_id'])}"
