"""lm-eval hooks for the rv_sciq tasks: data loading and perturbations (see rv_merge.evaluate)."""

from rv_merge.evaluate import data, perturb


def load(rv_data=None, **_metadata):
    return data.load("sciq", "allenai/sciq", None, {"test": "test.jsonl"}, rv_data)


def distractor(dataset):
    return perturb.perturb_docs(dataset, "rv_sciq_distractor", perturb.sciq_distractor, "question")


def lettered(dataset):
    return perturb.perturb_docs(dataset, "rv_sciq_mc", perturb.sciq_lettered, "question")


def rotations(dataset):
    return perturb.sciq_rotations(dataset, "rv_sciq_mc_rotate")
