"""Merge a recipe file: `rv merge` and the store of merged models call this.

It is importing `mergekit.merge` (here) that makes the startup hook wrap mergekit's
`run_merge` for plain mergekit users; this function calls the guard with mergekit's own
function and the caller's pickle opt-in instead.
"""

from __future__ import annotations

from pathlib import Path

import mergekit.merge
import yaml
from mergekit.config import MergeConfiguration
from mergekit.options import MergeOptions

from rv_merge.merge.guard import guarded_run_merge
from rv_merge.merge.arithmetic import merge_dtype
from rv_merge.merge.method import register_method
from rv_merge.patches import mergekit as mergekit_patches


def merge_file(recipe_path: str, out: str, allow_pickle: bool = False, **options) -> None:
    """Merge a recipe file: checks, then mergekit into a staging folder, then one rename.

    `options` are mergekit's MergeOptions (device, out_shard_size, quiet, ...).
    """
    register_method()  # idempotent: the startup hook normally did both already
    mergekit_patches.install_vector_loading(merge_dtype)
    mergekit_patches.forget_open_files()
    text = Path(recipe_path).read_text(encoding="utf-8")
    config = MergeConfiguration.model_validate(yaml.safe_load(text))
    guarded_run_merge(mergekit_patches.original_run_merge(mergekit.merge), config, out, MergeOptions(**options),
                      text, allow_pickle=allow_pickle)
