"""lm-eval hooks for the rv_bbh tasks: data loading and perturbations (see rv_merge.evaluate).

The three chain-of-thought exemplars per subtask are read at run time from lm-eval's own
installed BBH task files (the original BBH CoT prompts), not copied into this repository.
"""

from rv_merge.evaluate import bbh, perturb

load = bbh.load


def reorder(dataset):
    return perturb.perturb_docs(dataset, "rv_bbh_reorder", perturb.bbh_reorder, "input")


def irrelevant(dataset):
    return perturb.perturb_docs(dataset, "rv_bbh_irrelevant", perturb.bbh_irrelevant, "input")
