"""Merge a recipe file through mergekit's own `run_merge` (guarded: checks, atomic write)."""

from __future__ import annotations

from pathlib import Path


def merge_file(recipe_path: str, out: str, **options) -> None:
    """Merge a recipe file through mergekit's own `run_merge` (guarded: checks + atomic)."""
    import yaml
    import mergekit.merge
    from mergekit.config import MergeConfiguration
    from mergekit.options import MergeOptions

    from rv_merge.guard import install_guard
    from rv_merge.method import register_method

    register_method()  # both idempotent: the startup hook normally did this already
    install_guard(mergekit.merge)
    # mergekit keeps one open loader per model for the life of the process: a weight file
    # rewritten since an earlier merge in this process would be read stale.
    from mergekit.io.tasks import LoaderCache

    LoaderCache().loaders.clear()
    text = Path(recipe_path).read_text(encoding="utf-8")
    config = MergeConfiguration.model_validate(yaml.safe_load(text))
    mergekit.merge.run_merge(config, out, MergeOptions(**options), config_source=text)
