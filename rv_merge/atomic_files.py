"""Writing files and folders so that a reader never sees half of one.

Everything rv-merge writes under a final name (merged models, vector folders, cached
results, reports' JSON) goes through here: it is written under a temporary name next to its
destination, on the same filesystem, and renamed into place when complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable


def write_json(path: Path, data) -> None:
    """Write JSON under a temporary name, then rename: never a half-written file."""
    temporary = path.with_suffix(f".tmp{os.getpid()}")
    temporary.write_text(json.dumps(data, indent=1, sort_keys=True, default=_plain))
    os.replace(temporary, path)


def _plain(value):
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def write_folder(out_path: str | os.PathLike, write: Callable[[str], object]) -> None:
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
