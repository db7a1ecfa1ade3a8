"""Guard mergekit's `run_merge` for `reasoning_vector` recipes.

Installed when `mergekit.merge` is imported (see hooks/_rv_merge_hook.py), so plain
`mergekit-yaml`, `mergekit-multi` and `rv merge` all pass through it. For any other merge
method it calls mergekit unchanged. For `reasoning_vector` it:

1. validates the recipe strictly (from the YAML text when mergekit passes it);
2. checks that target, SFT and GRPO are compatible (configs, tokenizers, headers);
3. merges into a staging folder next to OUT and renames it into place only on success,
   so a failure leaves no output behind and an earlier OUT untouched.

It also teaches mergekit's loader to read vector folders (rv_merge.vectors.loading).
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable

from rv_merge.checks import check_recipe
from rv_merge.recipe import METHOD_NAME, Recipe, parse_yaml, validate_recipe
from rv_merge.vectors.loading import install_vector_loading

LOG = logging.getLogger("rv_merge")


def install_guard(merge_module) -> None:
    """Replace `merge_module.run_merge` with the guarded version (idempotent)."""
    install_vector_loading()
    original = merge_module.run_merge
    if getattr(original, "rv_merge_guarded", False):
        return

    @functools.wraps(original)
    def run_merge(merge_config, out_path, options, config_source=None):
        if merge_config.merge_method != METHOD_NAME:
            return original(merge_config, out_path, options, config_source=config_source)
        recipe, source = recipe_from_mergekit(merge_config, config_source)
        for line in check_recipe(recipe, source):
            LOG.info("rv-merge check: %s", line)
        write_atomically(
            out_path,
            lambda staging: original(merge_config, staging, options, config_source=config_source),
        )

    run_merge.rv_merge_guarded = True
    merge_module.run_merge = run_merge


def recipe_from_mergekit(merge_config, config_source: str | None) -> tuple[Recipe, str]:
    """Validate what mergekit is about to merge, from the raw YAML when it is available.

    mergekit-yaml passes the YAML text (so unknown keys are caught); mergekit-multi passes
    only the parsed configuration, whose unknown keys mergekit has already dropped.
    """
    if config_source is not None:
        source = _recipe_file(config_source)
        return validate_recipe(parse_yaml(config_source, source), source), source
    source = "mergekit configuration"
    return validate_recipe(parse_yaml(merge_config.to_yaml(), source), source), source


def _recipe_file(config_source: str) -> str:
    """The command-line argument that holds this YAML text, to name it in errors."""
    for argument in sys.argv[1:]:
        try:
            if os.path.isfile(argument) and Path(argument).read_text(encoding="utf-8") == config_source:
                return argument
        except (OSError, UnicodeDecodeError):
            continue
    return "recipe"


def write_atomically(out_path: str | os.PathLike, write: Callable[[str], object]) -> None:
    """Call `write(staging_path)`, then move the result to `out_path` in one rename.

    The staging folder sits next to `out_path` (same filesystem) and carries the same base
    name, so anything that records the folder name (the model card) sees the final one.
    """
    out = Path(out_path).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging_root = Path(tempfile.mkdtemp(prefix=f".{out.name}.rv-staging-", dir=out.parent))
    try:
        staged = staging_root / out.name
        write(str(staged))
        if not staged.is_dir():
            raise RuntimeError(f"the merge wrote nothing to {staged}")
        if out.exists():
            previous = staging_root / "previous"
            os.rename(out, previous)
            try:
                os.rename(staged, out)
            except OSError:
                os.rename(previous, out)
                raise
        else:
            os.rename(staged, out)
    finally:
        shutil.rmtree(staging_root, ignore_errors=True)
