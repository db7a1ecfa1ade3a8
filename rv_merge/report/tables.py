"""The rows of a report, from one recipe's stored results (results.json, per_sample.json).

Everything here reads what `rv eval` stored, so `rv report` can rebuild every report without
running a model.
"""

from __future__ import annotations

import json
from pathlib import Path

from rv_merge.statistics import (
    Estimate,
    detectable_difference,
    main_metric,
    mean_estimate,
    paired_delta,
    unpaired_delta,
)


class Results:
    """results.json + per_sample.json of one recipe, with lookups."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.meta = json.loads((folder / "results.json").read_text())
        self.samples = json.loads((folder / "per_sample.json").read_text())

    def scores(self, model: str, task: str, metric: str) -> list[float] | None:
        return self.samples.get(f"{model}|{task}|{metric}")

    def estimate(self, model: str, task: str, metric: str, documents: set[str] | None = None) -> Estimate | None:
        scores = self.scores_on(model, task, metric, documents)
        return mean_estimate(scores) if scores else None

    def scores_on(self, model: str, task: str, metric: str, documents: set[str] | None) -> list[float] | None:
        """The scores of the documents in `documents` (all of them if None)."""
        scores, keys = self.scores(model, task, metric), self.meta.get("document_keys", {}).get(task)
        if scores is None or documents is None or keys is None:
            return scores
        return [score for score, key in zip(scores, keys) if key in documents]

    def shared_documents(self, task: str, other: str) -> set[str] | None:
        """The documents (and subtasks) both tasks were evaluated on; None for results stored
        without document keys."""
        keys = self.meta.get("document_keys", {})
        return set(keys[task]) & set(keys[other]) if task in keys and other in keys else None

    def metrics(self, task: str) -> list[str]:
        found = {key.split("|")[2] for key in self.samples if key.split("|")[1] == task}
        return sorted(found, key=lambda m: (m != main_metric(found), m))


def comparison_rows(results: Results) -> list[dict]:
    """One row per task and metric: each model's score and the paired deltas vs the target."""
    meta = results.meta
    rows = []
    for task in meta["settings"]["tasks"]:
        think = meta.get("think_tasks", {}).get(task)
        for metric in results.metrics(task):
            row = {"task": task, "metric": metric, "main": metric == main_metric(results.metrics(task))}
            target = results.scores("target", task, metric)
            for label, model, name in (("target", "target", task), ("grpo", "grpo", task),
                                       ("merged", "merged", task), ("grpo+think", "grpo", think),
                                       ("merged+think", "merged", think)):
                scores = results.scores(model, name, metric) if name else None
                row[label] = mean_estimate(scores) if scores else None
                if scores and target and label != "target" and len(scores) == len(target):
                    row[f"delta {label}"] = paired_delta(target, scores)
            rows.append(row)
    return rows


def power_rows(results: Results) -> list[dict]:
    """Per task (main metric): how many documents merged and target were compared on, how
    often they disagreed, and the smallest difference the run could detect (see
    rv_merge.statistics.detectable_difference)."""
    rows = []
    for task in results.meta["settings"]["tasks"]:
        metric = main_metric(results.metrics(task))
        target, merged = results.scores("target", task, metric), results.scores("merged", task, metric)
        if not target or not merged or len(target) != len(merged):
            continue
        discordance = sum(a != b for a, b in zip(target, merged)) / len(target)
        rows.append({"task": task, "metric": metric, "n": len(target), "discordance": discordance,
                     "detectable": detectable_difference(len(target), discordance)})
    return rows


def pair_rows(results: Results) -> list[dict]:
    """Main metric per task for SFT and GRPO with the paired GRPO - SFT delta: does the pair
    carry something to transfer?"""
    rows = []
    for task in results.meta["settings"]["tasks"]:
        metric = main_metric(results.metrics(task))
        sft, grpo = results.scores("sft", task, metric), results.scores("grpo", task, metric)
        if sft and grpo and len(sft) == len(grpo):
            rows.append({"task": task, "metric": metric, "sft": mean_estimate(sft), "grpo": mean_estimate(grpo),
                         "delta": paired_delta(sft, grpo)})
    return rows


def robustness_rows(results: Results, variants: dict[str, tuple[str, str]]) -> list[dict]:
    """Per adversarial variant: each model's clean and perturbed score, the drop, and whether
    the merged model's gain over the target (significant on the clean task) survives."""
    rows = []
    for variant, (base, perturbation) in variants.items():
        if variant not in results.meta["settings"]["tasks"] or base not in results.meta["settings"]["tasks"]:
            continue
        metric = main_metric(results.metrics(base))
        row = {"variant": variant, "base": base, "metric": metric, "perturbation": perturbation}
        shared = results.shared_documents(base, variant)  # same documents and subtasks on both sides
        for model in ("target", "merged"):
            clean, perturbed = (results.estimate(model, task, metric, shared) for task in (base, variant))
            row[model] = (clean, perturbed, unpaired_delta(perturbed, clean) if clean and perturbed else None)
        clean_gain = _delta(results, base, metric, shared)
        variant_gain = _delta(results, variant, metric, shared)
        row["gain clean"], row["gain variant"] = clean_gain, variant_gain
        if clean_gain is None or variant_gain is None:
            row["survives"] = "n/a"
        elif not (clean_gain.excludes_zero and clean_gain.value > 0):
            row["survives"] = "no clean gain to keep"
        else:
            row["survives"] = "yes" if variant_gain.excludes_zero and variant_gain.value > 0 else "not shown"
        rows.append(row)
    return rows


def _delta(results: Results, task: str, metric: str, documents: set[str] | None = None) -> Estimate | None:
    a, b = (results.scores_on(model, task, metric, documents) for model in ("target", "merged"))
    return paired_delta(a, b) if a and b and len(a) == len(b) else None



def sweep_rows(results: Results) -> list[dict]:
    """Main metric per task and alpha, with the paired delta against the target."""
    rows = []
    for task in results.meta["settings"]["tasks"]:
        metric = main_metric(results.metrics(task))
        target = results.scores("target", task, metric)
        for label, alpha in sorted(results.meta.get("sweep", {}).items(), key=lambda item: item[1]):
            scores = results.scores(label, task, metric)
            if not scores:
                continue
            delta = paired_delta(target, scores) if target and len(target) == len(scores) else None
            rows.append({"task": task, "metric": metric, "alpha": alpha, "score": mean_estimate(scores),
                         "delta": delta, "target": mean_estimate(target) if target else None})
    return rows


def steering_rows(results: Results) -> list[dict]:
    """Main metric per task for each steered target (and its think variant), with the
    paired delta against the target."""
    conditions = (results.meta.get("steering") or {}).get("conditions", [])
    rows = []
    for task in results.meta["settings"]["tasks"] if conditions else []:
        metric = main_metric(results.metrics(task))
        target = results.scores("target", task, metric)
        think = results.meta.get("think_tasks", {}).get(task)
        for condition in conditions:
            for suffix, name in (("", task), (" + think", think)):
                scores = results.scores(condition["label"], name, metric) if name else None
                if scores:
                    delta = paired_delta(target, scores) if target and len(target) == len(scores) else None
                    rows.append({"task": task, "metric": metric,
                                 "condition": f"target + {condition['scale']:g} x {condition['vectors']}{suffix}",
                                 "score": mean_estimate(scores), "delta": delta})
    return rows
