"""The guard around mergekit's `run_merge` for `reasoning_vector` merges.

Every merge takes this path: `rv merge` and `rv eval`'s store (through
rv_merge.merge.merge_file), and plain `mergekit-yaml` / `mergekit-multi`, whose `run_merge`
the startup hook routes here (see rv_merge.patches.mergekit). For each merge it:

1. validates the recipe strictly (from the YAML text when mergekit passes it);
2. checks that target, SFT and GRPO are compatible (configs, tokenizers, headers);
3. merges, mapping each input tensor on its own (rv_merge.merge.tensor_reader) and writing
   each result as soon as it is merged (rv_merge.merge.streaming_writer), so memory stays
   flat, into a staging folder next to OUT, and swaps it into place only on success, so a
   failure leaves no output behind and an earlier OUT untouched; an OUT that holds files
   rv-merge did not write is refused first, naming them (rv_merge.atomic_files).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import os
import sys
from pathlib import Path
from typing import Callable, Iterator

from rv_merge.atomic_files import check_replaceable, write_folder
from rv_merge.merge.arithmetic import merge_dtype
from rv_merge.merge.method import register_method
from rv_merge.merge.output_head import finish_output_head
from rv_merge.merge.streaming_writer import StreamingTensorWriter
from rv_merge.merge.tensor_reader import reader_for
from rv_merge.patches import mergekit as mergekit_patches
from rv_merge.recipe.compatibility import check_recipe
from rv_merge.recipe.loading import parse_yaml, validate_recipe
from rv_merge.recipe.schema import Recipe

LOG = logging.getLogger("rv_merge")


def install_guard(merge_module, allow_pickle: bool = False) -> None:
    """Register the method and route plain mergekit's `reasoning_vector` merges through the guard."""
    register_method()
    mergekit_patches.install_vector_loading(merge_dtype)
    mergekit_patches.wrap_run_merge(merge_module, functools.partial(guarded_run_merge, allow_pickle=allow_pickle))


def guarded_run_merge(run_merge: Callable, merge_config, out_path: str, options, config_source: str | None,
                      allow_pickle: bool = False) -> None:
    """Validate and check the recipe, then let mergekit's `run_merge` write OUT atomically."""
    check_replaceable(out_path)  # an OUT holding others' files is refused before any work
    recipe, source = recipe_from_mergekit(merge_config, config_source)
    checked = check_recipe(recipe, source, allow_pickle)
    for line in checked.lines:
        LOG.info("rv-merge check: %s", line)

    def write(staging: str) -> None:
        with mergekit_patches.streamed_merge_io(StreamingTensorWriter, reader_for), _no_cyclic_gc():
            run_merge(merge_config, staging, options, config_source=config_source)
        finish_output_head(Path(staging), checked.output_head)

    write_folder(out_path, write)


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """mergekit's task graph holds hundreds of thousands of Python objects, which the cyclic
    garbage collector rescans again and again during a merge (a tenth of its time, measured
    with perf); reference counting still frees every tensor at once."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


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
