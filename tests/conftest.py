"""Shared fixtures: toy model trios (built once per session) and a mergekit-yaml runner."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from rv_merge.demo.toy_models import build_toy_trio
from tests.forked_scripts import ForkServer

BIN = Path(sys.executable).parent
OFFLINE_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
FORKED = ForkServer(OFFLINE_ENV)  # one per pytest process, started at its first use


@pytest.fixture(scope="session")
def trios(tmp_path_factory):
    """Build toy trios lazily, once per session, keyed by their build arguments."""
    root = tmp_path_factory.mktemp("trios")
    built: dict[tuple, dict[str, Path]] = {}

    def get(**kwargs) -> dict[str, Path]:
        key = tuple(sorted(kwargs.items(), key=lambda item: item[0]))
        if key not in built:
            name = "-".join(f"{k}={v}".replace("torch.", "") for k, v in key) or "default"
            built[key] = build_toy_trio(root / name, **kwargs)
        return built[key]

    return get


@pytest.fixture(scope="session")
def toy(trios):
    """The default trio: tied embeddings, bfloat16, 2 layers."""
    return trios()


def recipe_dict(target, sft, grpo, alpha=1.0, sign=1, dtype="bfloat16") -> dict:
    return {
        "merge_method": "reasoning_vector",
        "base_model": str(target),
        "models": [
            {"model": str(sft), "parameters": {"role": "sft"}},
            {"model": str(grpo), "parameters": {"role": "grpo"}},
        ],
        "parameters": {"alpha": alpha, "sign": sign},
        "dtype": dtype,
    }


def write_recipe(path: Path, recipe: dict | str) -> Path:
    text = recipe if isinstance(recipe, str) else yaml.safe_dump(recipe, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def mergekit_yaml(recipe: Path, out: Path, *options: str, env: dict | None = None, cwd=None):
    """Run the real, unmodified mergekit-yaml console script in its own process (quiet, with
    any further `options`)."""
    return run_script("mergekit-yaml", [recipe, out, "--quiet", *options], env=env, cwd=cwd)


def rv(*args, env: dict | None = None, cwd=None):
    return run_script("rv", list(args), env=env, cwd=cwd)


def run_script(script: str, args: list, *, env: dict | None = None, cwd=None,
               fork: bool = True) -> subprocess.CompletedProcess:
    """A console script of the venv run to the end: forked after its imports when `fork` and
    the environment allow it (tests/forked_scripts.py), else as a fresh subprocess."""
    env = env or OFFLINE_ENV
    if fork and FORKED.can_run(env):
        return FORKED.run(BIN / script, args, env, cwd)
    return subprocess.run([str(BIN / script), *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=600)


def stray_processes() -> list:
    """This test process's descendants, but for the fork server (which outlives the tests)."""
    import psutil

    return [p for p in psutil.Process().children(recursive=True) if p.pid != FORKED.pid()]


def pytest_sessionfinish(session, exitstatus):
    FORKED.close()


def copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def load_tensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    tensors = {}
    for file in sorted(Path(folder).glob("*.safetensors")):
        tensors.update(load_file(file))
    return tensors


def save_tensors(folder: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Rewrite a toy model's single weight file."""
    from safetensors.torch import save_file

    for file in Path(folder).glob("*.safetensors"):
        file.unlink()
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(Path(folder) / "model.safetensors"),
              metadata={"format": "pt"})
