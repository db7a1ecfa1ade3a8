"""lm-eval hooks for the rv_gsm8k tasks: data loading and perturbations (see rv_merge.evaluate)."""

from rv_merge.evaluate import data, perturb


def load(rv_data=None, **_metadata):
    return data.load("gsm8k", "openai/gsm8k", "main", {"test": "test.jsonl"}, rv_data)


def distractor(dataset):
    return perturb.perturb_docs(dataset, "rv_gsm8k_distractor", perturb.gsm8k_distractor, "question")


def wrong_hint(dataset):
    return perturb.perturb_docs(dataset, "rv_gsm8k_wrong_hint", perturb.gsm8k_wrong_hint, "question")


def surface(dataset):
    return perturb.perturb_docs(dataset, "rv_gsm8k_surface", perturb.gsm8k_surface, "question")
