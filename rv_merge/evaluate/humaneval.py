"""HumanEval scoring: build each program, run it in the sandbox, record why it failed."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from rv_merge.evaluate.sandbox import Limits, run_program

LIMITS = Limits(timeout_s=10.0, cpu_s=10, memory_mb=1024)


def run_sample(doc: dict, completion: str):
    """The prompt and the model's completion as the solution, then the tests and `check`."""
    return run_program(doc["prompt"] + completion, doc["test"], doc["entry_point"], LIMITS)


def execute(resps: list[list[str]], docs: list[dict]) -> list[list[dict]]:
    """lm-eval filter: replace each completion by its sandboxed outcome."""
    jobs = [(doc, completion) for doc, completions in zip(docs, resps) for completion in completions]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        outcomes = list(pool.map(lambda job: run_sample(*job), jobs))
    results, position = [], 0
    for completions in resps:
        results.append([
            {"completion": completion, "passed": outcome.passed, "reason": outcome.reason}
            for completion, outcome in zip(completions, outcomes[position:position + len(completions)])
        ])
        position += len(completions)
    return results


def score(doc: dict, results: list) -> dict[str, float]:
    """lm-eval process_results: pass@1 of the first (greedy) completion."""
    outcome = results[0]
    if isinstance(outcome, list):  # lm-eval hands over the filtered list per document
        outcome = outcome[0]
    return {"pass@1": float(outcome["passed"])}
