"""kill -9 at seeded random points of a merge, a vector extraction and an evaluation.

After every kill: the previous output is intact or the new one is complete (never missing,
never half-written), and the next run finishes without serving anything partial. Every run
is forked after its imports (tests/forked_scripts.py), where nothing has been written yet,
so kill points all fall on the work: one seeded random point in each of KILLS equal slices
of the time a full run takes (measured first, the same way; for the merge and the
extraction, the shortest of three runs, so that one slow run cannot stretch the window past
the work), so the kills cover the whole run, its start and its end included, whatever the
seed draws. A killed run can still be much slower than the measured one (under `pytest -n 2`
the other worker may load the machine: a fresh-clone CI run once had all 20 kills of the
merge land before its output swap), so the merge test goes on with later kills until one
lands after the swap.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import subprocess
import time
from itertools import chain
from pathlib import Path

import pytest
import torch

from tests.conftest import BIN, FORKED, OFFLINE_ENV, load_tensors, recipe_dict, run_script, write_recipe

pytestmark = pytest.mark.xdist_group("faults")
REPO = Path(__file__).resolve().parents[1]
KILLS = 20
WINDOW = 1.1  # the kills fall in [0, WINDOW x the measured run)
LATE_KILLS = 6  # at most, after the KILLS, at 1.5 ** n times the window's end


def timed(command: list[str], env: dict) -> float:
    FORKED.ready()  # the time of a run, not of starting the fork server
    started = time.monotonic()
    result = run_script(command[0], command[1:], env=env)
    assert result.returncode == 0, [line for line in result.stderr.splitlines() if "it/s]" not in line][-15:]
    return time.monotonic() - started


def shortest_run(command: list[str], env: dict, runs: int = 3) -> float:
    """The kill window: one slow run (a cold cache, a busy machine) would push every kill past
    the end of the work, and the test would then check nothing."""
    return min(timed(command, env) for _ in range(runs))


def kill_delays(duration: float, seed: int) -> list[float]:
    """Kill times in increasing order, one in each of KILLS slices of [0, WINDOW * duration)."""
    rng, width = random.Random(seed), duration * WINDOW / KILLS
    return [width * (kill + rng.random()) for kill in range(KILLS)]


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
    out, other = tmp_path / "out", tmp_path / "other"  # the two complete outputs
    duration = shortest_run(["rv", "merge", str(recipes[0]), str(out), "--force", "--quiet"], OFFLINE_ENV)
    timed(["rv", "merge", str(recipes[1]), str(other), "--quiet"], OFFLINE_ENV)
    expected = {recipes[0]: tensors_digest(load_tensors(out)), recipes[1]: tensors_digest(load_tensors(other))}
    state, swaps = expected[recipes[0]], []  # swaps: for each kill that asked for a change, did it land?
    late = (duration * WINDOW * 1.5 ** n for n in range(1, LATE_KILLS + 1))
    for kill, delay in enumerate(chain(kill_delays(duration, seed=1234), late)):
        if kill >= KILLS and any(swaps):
            break
        recipe, previous = recipes[(kill + 1) % 2], state
        killed_at(["rv", "merge", str(recipe), str(out), "--force", "--quiet"], OFFLINE_ENV, delay)
        assert out.is_dir(), f"kill {kill}: OUT is missing"
        state = tensors_digest(load_tensors(out))
        assert state in (previous, expected[recipe]), f"kill {kill}: OUT is neither the previous nor the new merge"
        if previous != expected[recipe]:
            swaps.append(state == expected[recipe])
    timed(["rv", "merge", str(recipes[0]), str(out), "--force", "--quiet"], OFFLINE_ENV)
    assert tensors_digest(load_tensors(out)) == expected[recipes[0]]
    assert staging_left(tmp_path) == []  # the last run removed what the killed ones left
    assert 0 < sum(swaps) < len(swaps), swaps  # the kill points fell both before and after the swap


def test_kill_during_vector_extraction_leaves_no_partial_vector(toy, tmp_path):
    from rv_merge.recipe.vector_folder import dense_tensors

    out = tmp_path / "vector"
    command = ["rv", "vector", "extract", "--sft", str(toy["sft"]), "--grpo", str(toy["grpo"]),
               "--out", str(out), "--force"]
    duration = shortest_run(command, OFFLINE_ENV)
    complete = tensors_digest(dict(dense_tensors(out)))
    states = []
    for kill, delay in enumerate(kill_delays(duration, seed=4321)):
        if kill % 2 and out.exists():  # half of the kills hit a first extraction, half a replacement
            shutil.rmtree(out)
        existed = out.exists()
        killed_at(command, OFFLINE_ENV, delay)
        states.append(out.exists())
        if out.exists():  # complete, never half-written
            assert tensors_digest(dict(dense_tensors(out))) == complete, f"kill {kill}"
        else:
            assert not existed, f"kill {kill}: the previous vector is gone"
    timed(command, OFFLINE_ENV)
    assert staging_left(tmp_path) == []
    assert not all(states), states  # some kills landed before the new vector was in place


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
    for kill, delay in enumerate(kill_delays(duration, seed=99)):
        killed_at(command("reports"), env, delay)
        for cached in (tmp_path / "store" / "results").glob("*.json") if (tmp_path / "store").exists() else []:
            assert set(json.loads(cached.read_text())) >= {"metrics", "per_sample"}, f"kill {kill}: {cached}"
        report = tmp_path / "reports" / "faults" / "per_sample.json"
        if report.exists():
            assert json.loads(report.read_text()) == reference, f"kill {kill}: a partial report"
    timed(command("reports"), env)
    assert json.loads((tmp_path / "reports" / "faults" / "per_sample.json").read_text()) == reference
