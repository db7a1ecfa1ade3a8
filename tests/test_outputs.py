"""Nothing is lost: an output folder is replaced only if rv-merge wrote all of it, in one
atomic step, and what a killed run left behind is cleaned by the next one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from rv_merge.atomic_files import MARKER, _exchange, remove_dead_staging, write_folder
from rv_merge.errors import UsageError
from tests.conftest import load_tensors, mergekit_yaml, recipe_dict, write_recipe


def test_plain_mergekit_never_deletes_files_it_did_not_write(toy, tmp_path):
    recipe = write_recipe(tmp_path / "r.yml", recipe_dict(toy["target"], toy["sft"], toy["grpo"]))
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "notes.txt").write_text("my notes")
    (out / "sub" / "data.csv").write_text("1,2")
    result = mergekit_yaml(recipe, out)
    assert result.returncode != 0
    assert "holds files rv-merge did not write (notes.txt, sub/data.csv)" in result.stderr
    assert (out / "notes.txt").read_text() == "my notes" and (out / "sub" / "data.csv").read_text() == "1,2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "r.yml"]  # no staging left


def test_merging_into_the_current_folder_by_mistake_is_refused(toy, tmp_path):
    recipe = write_recipe(tmp_path / "r.yml", recipe_dict(toy["target"], toy["sft"], toy["grpo"]))
    result = mergekit_yaml(recipe, Path("."), cwd=tmp_path)
    assert result.returncode != 0 and "r.yml" in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["r.yml"]


def test_an_output_rv_merge_wrote_is_replaced(toy, tmp_path):
    out = tmp_path / "out"
    for alpha in (0.5, 1.0):
        recipe = write_recipe(tmp_path / f"r{alpha}.yml", recipe_dict(toy["target"], toy["sft"], toy["grpo"],
                                                                      alpha=alpha))
        result = mergekit_yaml(recipe, out)
        assert result.returncode == 0, result.stderr
    assert mergekit_yaml(recipe, tmp_path / "fresh").returncode == 0
    replaced, fresh = load_tensors(out), load_tensors(tmp_path / "fresh")
    assert all(torch.equal(replaced[k], fresh[k]) for k in fresh)
    assert (out / MARKER).is_file() and "rv-merge" in (out / MARKER).read_text()


def test_write_folder_swaps_atomically_and_refuses_foreign_files(tmp_path):
    out = tmp_path / "out"
    write_folder(out, lambda staging: (Path(staging).mkdir(), (Path(staging) / "a.txt").write_text("1")))
    write_folder(out, lambda staging: (Path(staging).mkdir(), (Path(staging) / "b.txt").write_text("2")))
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "b.txt"]
    (out / "mine.txt").write_text("user")
    with pytest.raises(UsageError, match=r"did not write \(mine.txt\)"):
        write_folder(out, lambda staging: pytest.fail("no work may start"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="is not a folder"):
        write_folder(tmp_path / "file", lambda staging: None)


def test_exchange_swaps_two_folders(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "from-a").touch(), (b / "from-b").touch()
    _exchange(a, b)
    assert [p.name for p in a.iterdir()] == ["from-b"] and [p.name for p in b.iterdir()] == ["from-a"]


def test_staging_of_a_dead_run_is_removed_and_a_live_one_kept(tmp_path):
    out = tmp_path / "out"
    dead = tmp_path / ".out.rv-staging-999999999-abc"  # no such process
    live = tmp_path / f".out.rv-staging-{os.getpid()}-abc"
    for folder in (dead, live):
        (folder / "out").mkdir(parents=True)
    assert remove_dead_staging(out) == [dead]
    assert not dead.exists() and live.exists()
