"""`rv check`, `rv merge`, recipe files in git, and the startup hook."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rv_merge.errors import RecipeError
from rv_merge.atomic_files import write_folder
from rv_merge.recipe.loading import load_recipe
from tests.conftest import OFFLINE_ENV, load_tensors, mergekit_yaml, recipe_dict, rv, write_recipe

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((REPO / "recipes").glob("*.yml")), ids=lambda p: p.name)
def test_every_recipe_in_git_is_valid(path):
    recipe = load_recipe(path)
    assert recipe.merge_method == "reasoning_vector"
    assert {m.parameters.role for m in recipe.models} in ({"sft", "grpo"}, {"vector"})


def test_the_required_recipes_exist():
    names = {p.name for p in (REPO / "recipes").glob("*.yml")}
    assert {"qwen1.5b-add.yml", "qwen1.5b-sub.yml", "qwen1.5b-math-add.yml",
            "qwen7b-add.yml", "qwen7b-sub.yml", "toy-add.yml"} <= names
    assert load_recipe(REPO / "recipes/qwen1.5b-sub.yml").parameters.sign == -1


def test_rv_check_prints_what_it_checked(toy, tmp_path):
    recipe = write_recipe(tmp_path / "r.yml", recipe_dict(toy["target"], toy["sft"], toy["grpo"]))
    result = rv("check", recipe)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for expected in ("valid reasoning_vector recipe (alpha 1.0, sign +1)", "ok   target", "ok   sft",
                     "ok   grpo", "tensor names agree", "tensor shapes agree", "embeddings tied",
                     "map all 320 tokens to the same ids", "all checks passed"):
        assert expected in out, out


def test_rv_check_fails_with_one_line(toy, tmp_path):
    recipe = recipe_dict(toy["target"], toy["sft"], toy["grpo"])
    recipe["parameters"]["sign"] = 0
    result = rv("check", write_recipe(tmp_path / "r.yml", recipe))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("rv check: error:") and "sign must be the integer 1" in result.stderr


def test_rv_check_reads_hub_ids_from_the_local_cache(toy, tmp_path):
    snapshot = tmp_path / "hf" / "hub" / "models--acme--toy-target" / "snapshots" / ("0" * 40)
    shutil.copytree(toy["target"], snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    recipe = write_recipe(tmp_path / "r.yml", recipe_dict("acme/toy-target", toy["sft"], toy["grpo"]))
    result = rv("check", recipe, env={**OFFLINE_ENV, "HF_HOME": str(tmp_path / "hf")})
    assert result.returncode == 0, result.stderr
    assert "ok   target acme/toy-target" in result.stdout and "snapshots" in result.stdout


def test_rv_merge_matches_mergekit_yaml_and_protects_existing_output(toy, tmp_path):
    recipe = write_recipe(tmp_path / "r.yml", recipe_dict(toy["target"], toy["sft"], toy["grpo"], alpha=0.5))
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    refused = rv("merge", recipe, out)
    assert refused.returncode == 2 and "--force" in refused.stderr
    forced = rv("merge", recipe, out, "--force", "--quiet")  # --force never deletes others' files
    assert forced.returncode == 2 and "rv-merge did not write (keep.txt)" in forced.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "x"

    (out / "keep.txt").unlink()
    assert rv("merge", recipe, out, "--quiet").returncode == 0
    merged = rv("merge", recipe, out, "--force", "--quiet")  # an output rv-merge wrote is replaced
    assert merged.returncode == 0, merged.stderr
    assert mergekit_yaml(recipe, tmp_path / "plain").returncode == 0
    mine, plain = load_tensors(out), load_tensors(tmp_path / "plain")
    assert mine.keys() == plain.keys() and all(torch.equal(mine[k], plain[k]) for k in mine)


def test_write_atomically_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "out"

    def failing_write(staging: str) -> None:
        Path(staging).mkdir()
        (Path(staging) / "half.safetensors").write_bytes(b"partial")
        raise RecipeError("boom")

    with pytest.raises(RecipeError):
        write_folder(out, failing_write)
    assert list(tmp_path.iterdir()) == []

    write_folder(out, lambda staging: Path(staging).mkdir())
    assert out.is_dir() and list(tmp_path.iterdir()) == [out]


def test_startup_hook_imports_nothing_heavy():
    """`python -c pass` must not import mergekit, torch or rv_merge (cost is benchmarked)."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", "pass"],
                            capture_output=True, text=True, check=True)
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines()[1:]}
    assert "_rv_merge_hook" in imported
    assert not {m for m in imported if m.split(".")[0] in {"mergekit", "torch", "rv_merge", "transformers"}}


def test_rv_help_imports_no_torch():
    """Building the `rv` parser imports each command's arguments, not its work."""
    code = ("import sys\nfrom rv_merge.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'mergekit', 'lm_eval', 'transformers'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_hook_files_are_recorded_for_uninstall():
    files = {str(f) for f in importlib.metadata.files("rv-merge")}
    assert {"rv_merge_hook.pth", "_rv_merge_hook.py"} <= files


def test_plain_import_of_mergekit_finds_the_method():
    code = ("from mergekit import merge_methods; import mergekit.merge as m; "
            "print(merge_methods.get('reasoning_vector').spec.pretty_name, m.run_merge.rv_merge_guarded)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["Reasoning", "Vector", "True"]
