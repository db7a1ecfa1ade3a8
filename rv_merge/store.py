"""Fingerprints of models and the content-addressed store of merged models.

A merged model lives in `<store>/models/<key>/`, where the key hashes the recipe's merge
settings and the fingerprints of its three inputs: a changed recipe or a changed input
weight gives a new key (so a stale model is never scored), and an unchanged one finds the
folder already there (so nothing is merged twice).

A folder's fingerprint hashes each file's name, size and modification time, plus the full
content of the small JSON/text files (configs, tokenizer). Hashing the weights themselves
would mean reading 140 GB for a 70B model; rewriting a weight file changes its mtime.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from rv_merge.checks import locate_model
from rv_merge.recipe import Recipe

STORE_ENV = "RV_STORE"
DEFAULT_STORE = Path(".rv-cache")
SMALL_FILE_BYTES = 4 * 2**20


def store_root() -> Path:
    return Path(os.environ.get(STORE_ENV, DEFAULT_STORE))


def fingerprint_folder(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        stat = path.stat()
        digest.update(f"{path.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
        if stat.st_size <= SMALL_FILE_BYTES and path.suffix in (".json", ".txt", ".jinja", ".model"):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


def fingerprint_model(reference: str, source: str) -> str:
    return fingerprint_folder(locate_model(reference, source))


def merge_key(recipe: Recipe, fingerprints: dict[str, str]) -> str:
    """What determines the merged weights: the merge settings and the inputs' fingerprints."""
    from rv_merge import __version__

    settings = recipe.model_dump(mode="json", exclude={"eval", "name"})
    payload = json.dumps({"recipe": settings, "inputs": fingerprints, "rv_merge": __version__},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def merged_model(recipe: Recipe, recipe_path: str, fingerprints: dict[str, str]) -> tuple[Path, bool]:
    """The store folder of this recipe's merged model, merging it if missing.

    Returns (folder, merged_now).
    """
    from rv_merge.merge import merge_file

    folder = store_root() / "models" / merge_key(recipe, fingerprints)
    if (folder / "config.json").is_file():
        return folder, False
    merge_file(recipe_path, str(folder), quiet=True)  # checked and written atomically
    return folder, True
