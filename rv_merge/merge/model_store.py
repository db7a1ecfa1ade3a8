"""The content-addressed store of merged models.

A merged model lives in `<store>/models/<key>/`, where the key hashes the recipe's merge
settings and the fingerprints of its inputs: a changed recipe or a changed input weight
gives a new key (so a stale model is never scored), and an unchanged one finds the folder
already there (so nothing is merged twice).
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path

from rv_merge import __version__
from rv_merge.merge import arithmetic, cpu_kernel, method
from rv_merge.merge.merge_file import merge_file
from rv_merge.recipe.schema import Recipe

KERNEL_MODULES = (arithmetic, cpu_kernel, method)  # what computes the values of a merged tensor


def merge_key(recipe: Recipe, fingerprints: dict[str, str]) -> str:
    """What determines the merged weights: the merge settings, the inputs' fingerprints, the
    kernel's code and the mergekit that runs it."""
    settings = recipe.model_dump(mode="json", exclude={"eval", "name"})
    payload = json.dumps({"recipe": settings, "inputs": fingerprints, "rv_merge": __version__,
                          "kernel": kernel_fingerprint(), "mergekit": version("mergekit")}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


@lru_cache(maxsize=1)
def kernel_fingerprint() -> str:
    """A hash of the code that computes merged tensors."""
    sources = [Path(module.__file__).read_bytes() for module in KERNEL_MODULES]
    return hashlib.sha256(b"\0".join(sources)).hexdigest()[:16]


def merged_model(recipe: Recipe, recipe_path: str, fingerprints: dict[str, str], store: Path) -> tuple[Path, bool]:
    """The store folder of this recipe's merged model, merging it if missing.

    Returns (folder, merged_now).
    """
    folder = store / "models" / merge_key(recipe, fingerprints)
    if (folder / "config.json").is_file():
        return folder, False
    merge_file(recipe_path, str(folder), quiet=True)  # checked and written atomically
    return folder, True
