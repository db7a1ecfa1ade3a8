"""The demo's sibling targets and summary: fresh training problems, update similarity against
a float64 numpy reference, stale vectors rebuilt, the README block replaced and nothing else."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from rv_merge.demo.pair.siblings import SIBLINGS, sibling_problems
from rv_merge.demo.pair.train import Budget, grpo_problems, sft_problems
from rv_merge.demo.summary import README_END, README_START, splice_into_readme
from rv_merge.vectors.similarity import update_similarity


def _key(problem: dict) -> tuple:
    return problem["template"], tuple(problem["numbers"])


@pytest.mark.parametrize("design", SIBLINGS, ids=lambda d: d.name)
def test_sibling_problems_are_fresh_and_follow_the_design(design):
    budget = Budget()
    problems = sibling_problems(design, budget)
    taken = {_key(p) for p in sft_problems(budget) + grpo_problems(budget)}
    assert len(problems) == design.budget.sft_examples == len({_key(p) for p in problems})
    assert not {_key(p) for p in problems} & taken
    assert {p["template"] for p in problems} == set(design.templates or {p["template"] for p in problems})
    assert sibling_problems(design, budget) == problems  # seeded


def _weights(folder: Path) -> dict[str, np.ndarray]:
    return {k: v.astype(np.float64) for f in sorted(folder.glob("*.safetensors")) for k, v in load_file(f).items()}


def test_update_similarity_matches_numpy_in_float64(trios, tmp_path):
    trio = trios(dtype=torch.float32)
    init, reference = trio["target"], trio["sft"]
    w0, w1 = _weights(init), _weights(reference)
    rng = np.random.default_rng(0)
    other = tmp_path / "other"
    shutil.copytree(reference, other)
    moved = {k: (w0[k] - 2.0 * (w1[k] - w0[k]) + 1e-3 * rng.standard_normal(w0[k].shape)).astype(np.float32)
             for k in w0}
    for file in other.glob("*.safetensors"):
        save_file({k: moved[k] for k in load_file(file)}, str(file), metadata={"format": "pt"})
    result = update_similarity(init, reference, other)
    w2 = _weights(other)
    a = np.concatenate([(w1[k] - w0[k]).ravel() for k in sorted(w0)])
    b = np.concatenate([(w2[k] - w0[k]).ravel() for k in sorted(w0)])
    overall = result["overall"]
    assert math.isclose(overall["cosine"], a @ b / np.linalg.norm(a) / np.linalg.norm(b), rel_tol=1e-12)
    assert math.isclose(overall["norm_ratio"], np.linalg.norm(b) / np.linalg.norm(a), rel_tol=1e-12)
    assert overall["cosine"] < -0.9 and 1.5 < overall["norm_ratio"] < 2.5  # built as about -2x SFT's update
    layer0 = sorted(k for k in w0 if k.startswith("model.layers.0."))
    a0 = np.concatenate([(w1[k] - w0[k]).ravel() for k in layer0])
    b0 = np.concatenate([(w2[k] - w0[k]).ravel() for k in layer0])
    assert math.isclose(result["layers"]["0"]["cosine"], a0 @ b0 / np.linalg.norm(a0) / np.linalg.norm(b0),
                        rel_tol=1e-12)
    assert update_similarity(init, reference, reference)["overall"]["cosine"] == pytest.approx(1.0, abs=1e-12)


def test_readme_block_is_replaced_and_nothing_else(tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{README_START}\nold numbers 0.123\n{README_END}\nafter\n")
    splice_into_readme(readme, reports)
    text = readme.read_text()
    assert text.startswith(f"before\n{README_START}\n") and text.endswith(f"{README_END}\nafter\n")
    assert "old numbers" not in text and "held-out problems" in text
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="no demo block"):
        splice_into_readme(readme, reports)
    assert readme.read_text() == "no markers\n"


def test_vectors_and_steering_are_rebuilt_when_the_pair_is_retrained(trios, tmp_path, monkeypatch):
    from rv_merge.demo import pipeline
    from rv_merge.recipe.model_locations import fingerprint_folder
    from rv_merge.recipe.vector_folder import read_metadata

    trio = trios(dtype=torch.float32)
    monkeypatch.chdir(tmp_path)
    for role, folder in (("instruct", "target"), ("sft", "sft"), ("grpo", "grpo")):
        shutil.copytree(trio[folder], tmp_path / "models" / "smollm2" / role)
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "smollm2-add.yml").write_text(
        "merge_method: reasoning_vector\nbase_model: ./models/smollm2/instruct\nmodels:\n"
        "  - {model: ./models/smollm2/sft, parameters: {role: sft}}\n"
        "  - {model: ./models/smollm2/grpo, parameters: {role: grpo}}\nparameters: {alpha: 1.0}\n")
    data = tmp_path / "models" / "smollm2" / "data" / "gsm8k"
    data.mkdir(parents=True)
    (data / "train.jsonl").write_text("".join(f'{{"question": "{a} + {a}?", "answer": "#### {2 * a}"}}\n'
                                              for a in range(4)))
    pipeline.build_vectors()
    pipeline.build_extracted_steering()
    exact, low_rank = pipeline.VECTORS / "exact", pipeline.VECTORS / f"lowrank-r{pipeline.RANK}"
    built = {p: p.stat().st_mtime_ns for p in (exact / "vector.safetensors", low_rank / "vector.safetensors",
                                               pipeline.EXTRACTED_STEERING / "steering.safetensors")}
    pipeline.build_vectors()  # nothing changed: nothing rebuilt
    pipeline.build_extracted_steering()
    assert {p: p.stat().st_mtime_ns for p in built} == built
    sft = tmp_path / "models" / "smollm2" / "sft"
    for file in sft.glob("*.safetensors"):  # "retrain" SFT
        save_file({k: v + 1 for k, v in load_file(file).items()}, str(file), metadata={"format": "pt"})
    pipeline.build_vectors()
    pipeline.build_extracted_steering()
    assert read_metadata(exact)["sources"]["sft"]["fingerprint"] == fingerprint_folder(sft)
    assert all(p.stat().st_mtime_ns != built[p] for p in built)


def test_trained_steering_uses_the_full_grpo_budget_and_is_retrained_only_when_stale(trios, tmp_path, monkeypatch):
    """The demo's steering GRPO: trained from SFT on the full GRPO's problems, steps, batch and
    seed; reused while SFT and that budget are unchanged. (Training itself is tested in
    test_steering.py; here it is replaced by a recorder, so only the caching is under test.)"""
    from dataclasses import asdict

    from rv_merge.demo import pipeline
    from rv_merge.steering import train
    from rv_merge.steering.artifact import new_vectors

    trio = trios(dtype=torch.float32)
    monkeypatch.chdir(tmp_path)
    sft = tmp_path / "models" / "smollm2" / "sft"
    shutil.copytree(trio["sft"], sft)
    calls = []

    def record(model, problems, budget, work):
        calls.append((problems, budget))
        work.mkdir(parents=True)  # as trl does (empty: no checkpoints)
        config = json.loads((model / "config.json").read_text())
        return new_vectors(model, torch.ones(config["num_hidden_layers"], config["hidden_size"]),
                           {**asdict(budget), "method": "recorded", "trainable_parameters": 1, "training_seconds": 1})

    monkeypatch.setattr(train, "train_steering", record)
    budget = Budget()
    pipeline.build_trained_steering(budget)
    assert not pipeline.TRAINED_STEERING.with_name("steer-grpo.work").exists()  # trl's empty scratch removed
    problems, steering_budget = calls[0]
    assert problems == grpo_problems(budget)
    assert (steering_budget.steps, steering_budget.prompts_per_step, steering_budget.num_generations,
            steering_budget.max_completion_length, steering_budget.seed) == (
        budget.grpo_steps, budget.prompts_per_step, budget.num_generations, budget.max_completion_length, budget.seed)
    pipeline.build_trained_steering(budget)
    assert len(calls) == 1  # unchanged: reused
    pipeline.build_trained_steering(Budget(grpo_steps=2))
    assert len(calls) == 2 and calls[1][1].steps == 2  # another budget: trained again
    for file in sft.glob("*.safetensors"):  # "retrain" SFT
        save_file({k: v + 1 for k, v in load_file(file).items()}, str(file), metadata={"format": "pt"})
    pipeline.build_trained_steering(Budget(grpo_steps=2))
    assert len(calls) == 3
