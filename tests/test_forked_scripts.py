"""The suite's forked runs (tests/forked_scripts.py) behave as fresh console-script processes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from tests.conftest import BIN, FORKED, OFFLINE_ENV, load_tensors, recipe_dict, run_script, write_recipe


def fresh_and_forked(recipe: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    """mergekit-yaml on the recipe as a fresh process (into tmp_path/fresh) and forked (into tmp_path/forked)."""
    fresh = run_script("mergekit-yaml", [recipe, tmp_path / "fresh", "--quiet"], fork=False)
    forked = run_script("mergekit-yaml", [recipe, tmp_path / "forked", "--quiet"])
    return fresh, forked


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if "Error" in line or "Traceback" in line]


def as_bytes(tensors: dict[str, torch.Tensor]) -> dict[str, bytes]:
    return {name: t.contiguous().view(-1).view(torch.uint8).numpy().tobytes() for name, t in tensors.items()}


def test_a_refusal_reads_the_same_forked_and_fresh(toy, tmp_path):
    recipe = recipe_dict(toy["target"], toy["sft"], toy["grpo"])
    recipe["parameters"]["sign"] = 2
    fresh, forked = fresh_and_forked(write_recipe(tmp_path / "bad.yml", recipe), tmp_path)
    assert fresh.returncode == forked.returncode != 0
    assert error_lines(fresh) == error_lines(forked) != []
    assert not (tmp_path / "fresh").exists() and not (tmp_path / "forked").exists()


def test_a_merge_writes_the_same_forked_and_fresh(toy, tmp_path):
    recipe = write_recipe(tmp_path / "r.yml", recipe_dict(toy["target"], toy["sft"], toy["grpo"], alpha=0.7))
    fresh, forked = fresh_and_forked(recipe, tmp_path)
    assert fresh.returncode == forked.returncode == 0, forked.stderr
    assert as_bytes(load_tensors(tmp_path / "fresh")) == as_bytes(load_tensors(tmp_path / "forked"))
    assert sorted(p.name for p in (tmp_path / "fresh").iterdir()) == \
        sorted(p.name for p in (tmp_path / "forked").iterdir())


def test_an_environment_read_at_import_is_not_forked():
    assert FORKED.can_run({**OFFLINE_ENV, "RV_STORE": "/somewhere"})
    assert not FORKED.can_run({**OFFLINE_ENV, "RV_MERGE_ALLOW_PICKLE": "1"})
    assert not FORKED.can_run({**OFFLINE_ENV, "HF_HOME": "/elsewhere"})


def test_a_run_killed_as_it_starts_is_killed(toy, tmp_path):
    """The fault tests kill at delays from 0 s: the fork leads its own process group by then."""
    recipe = write_recipe(tmp_path / "r.yml", recipe_dict(toy["target"], toy["sft"], toy["grpo"]))
    for attempt in range(5):
        with pytest.raises(subprocess.TimeoutExpired):
            FORKED.wait(FORKED.start(BIN / "rv", ["merge", str(recipe), str(tmp_path / f"out{attempt}")],
                                     OFFLINE_ENV), timeout=0)
