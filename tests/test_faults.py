"""kill -9 at seeded random points of a merge, a vector extraction and an evaluation.

After every kill: the previous output is intact or the new one is complete (never missing,
never half-written), and the next run finishes without serving anything partial. Every run
is forked after its imports (tests/forked_scripts.py), where nothing has been written yet,
so kill points, drawn uniformly over the time a full run takes (measured first, the same
way) from a fixed seed, all fall on the work.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import BIN, FORKED, OFFLINE_ENV, load_tensors, recipe_dict, run_script, write_recipe

pytestmark = pytest.mark.xdist_group("faults")
REPO = Path(__file__).resolve().parents[1]
KILLS = 20


def timed(command: list[str], env: dict) -> float:
    FORKED.ready()  # the time of a run, not of starting the fork server
    started = time.monotonic()
    result = run_script(command[0], command[1:], env=env)
    assert result.returncode == 0, [line for line in result.stderr.splitlines() if "it/s]" not in line][-15:]
    return time.monotonic() - started


def killed_at(command: list[str], env: dict, delay: float) -> None:
    """Run the command in a process forked after its imports, and SIGKILL it after `delay` s
    (if it still runs)."""
    assert FORKED.can_run(env)
    try:
        FORKED.wait(FORKED.start(BIN / command[0], command[1:], env), timeout=delay)
    except subprocess.TimeoutExpired:
        pass


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    hashed = hashlib.sha256()
    for name in sorted(tensors):
        hashed.update(name.encode() + tensors[name].contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return hashed.hexdigest()


def staging_left(parent: Path) -> list[Path]:
    return sorted(parent.glob(".*rv-staging-*"))


def test_kill_during_merge_leaves_the_previous_or_the_new_output(toy, tmp_path):
    recipes = [write_recipe(tmp_path / f"r{alpha}.yml", recipe_dict(toy["target"], toy["sft"], toy["grpo"],
                                                                     alpha=alpha)) for alpha in (0.5, 1.5)]
    expected = {}
    for recipe in recipes:  # the two complete outputs, and how long a merge takes
        duration = timed(["rv", "merge", str(recipe), str(tmp_path / recipe.stem), "--quiet"], OFFLINE_ENV)
        expected[recipe] = tensors_digest(load_tensors(tmp_path / recipe.stem))
    out = tmp_path / "out"
    timed(["rv", "merge", str(recipes[0]), str(out), "--quiet"], OFFLINE_ENV)
    rng, outcomes = random.Random(1234), []
    for kill in range(KILLS):
        recipe = recipes[(kill + 1) % 2]
        killed_at(["rv", "merge", str(recipe), str(out), "--force", "--quiet"], OFFLINE_ENV,
                  rng.uniform(0, duration * 1.1))
        assert out.is_dir(), f"kill {kill}: OUT is missing"
        state = tensors_digest(load_tensors(out))
        assert state in expected.values(), f"kill {kill}: OUT is neither the previous nor the new merge"
        outcomes.append(state == expected[recipe])
    timed(["rv", "merge", str(recipes[0]), str(out), "--force", "--quiet"], OFFLINE_ENV)
    assert tensors_digest(load_tensors(out)) == expected[recipes[0]]
    assert staging_left(tmp_path) == []  # the last run removed what the killed ones left
    assert 0 < sum(outcomes) < KILLS  # the kill points fell both before and after the swap


def test_kill_during_vector_extraction_leaves_no_partial_vector(toy, tmp_path):
    from rv_merge.recipe.vector_folder import dense_tensors

    out = tmp_path / "vector"
    command = ["rv", "vector", "extract", "--sft", str(toy["sft"]), "--grpo", str(toy["grpo"]),
               "--out", str(out), "--force"]
    duration = timed(command, OFFLINE_ENV)
    complete = tensors_digest(dict(dense_tensors(out)))
    rng, states = random.Random(4321), []
    for kill in range(KILLS):
        if kill % 2 and out.exists():  # half of the kills hit a first extraction, half a replacement
            shutil.rmtree(out)
        existed = out.exists()
        killed_at(command, OFFLINE_ENV, rng.uniform(0, duration * 1.1))
        states.append(out.exists())
        if out.exists():  # complete, never half-written
            assert tensors_digest(dict(dense_tensors(out))) == complete, f"kill {kill}"
        else:
            assert not existed, f"kill {kill}: the previous vector is gone"
    timed(command, OFFLINE_ENV)
    assert staging_left(tmp_path) == []
    assert not all(states)  # some kills landed before the new vector was in place


def test_kill_during_evaluation_never_serves_a_partial_result(toy, tmp_path):
    recipe = recipe_dict(toy["target"], toy["sft"], toy["grpo"])
    recipe["eval"] = {"tasks": ["rv_gsm8k", "rv_sciq"], "limit": 2, "num_fewshot": 0, "max_gen_toks": 4,
                      "think": False}
    path = write_recipe(tmp_path / "faults.yml", recipe)

    def command(reports: str) -> list[str]:
        return ["rv", "eval", str(path), "--data", str(REPO / "evals" / "data"),
                "--reports", str(tmp_path / reports)]

    reference_env = {**OFFLINE_ENV, "RV_STORE": str(tmp_path / "reference-store")}
    duration = timed(command("reference"), reference_env)
    reference = json.loads((tmp_path / "reference" / "faults" / "per_sample.json").read_text())
    env = {**OFFLINE_ENV, "RV_STORE": str(tmp_path / "store")}
    rng = random.Random(99)
    for kill in range(KILLS):
        killed_at(command("reports"), env, rng.uniform(0, duration * 1.1))
        for cached in (tmp_path / "store" / "results").glob("*.json") if (tmp_path / "store").exists() else []:
            assert set(json.loads(cached.read_text())) >= {"metrics", "per_sample"}, f"kill {kill}: {cached}"
        report = tmp_path / "reports" / "faults" / "per_sample.json"
        if report.exists():
            assert json.loads(report.read_text()) == reference, f"kill {kill}: a partial report"
    timed(command("reports"), env)
    assert json.loads((tmp_path / "reports" / "faults" / "per_sample.json").read_text()) == reference
