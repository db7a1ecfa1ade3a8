"""lm-eval hooks for the rv_humaneval tasks: data, perturbations, sandboxed scoring.

Completions are executed by rv_merge.evaluate.sandbox, never in the evaluating process. The
execution happens in the filter step so that each sample's log records the program's
outcome and, when it failed, why (timeout, memory limit, AssertionError, ...).
"""

from rv_merge.evaluate import data, humaneval, perturb, perturb_code


def load(**_metadata):
    import datasets

    return datasets.DatasetDict({"test": datasets.Dataset.from_list(data.humaneval_problems())})


def rename(dataset):
    return perturb.perturb_docs(dataset, "rv_humaneval_rename", perturb_code.humaneval_rename, "task_id")


def typos(dataset):
    return perturb.perturb_docs(dataset, "rv_humaneval_typos", perturb_code.humaneval_typos, "task_id")


execute = humaneval.execute
score = humaneval.score
