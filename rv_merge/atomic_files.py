"""Writing files and folders so that a reader never sees half of one, and nothing is lost.

Everything rv-merge writes under a final name (merged models, vector folders, cached
results, reports) goes through here: it is written under a temporary name next to its
destination, on the same filesystem, and renamed into place when complete.

Folders: an existing OUT is replaced only if rv-merge wrote everything in it (the marker
file `.rv-merge-output.json` lists what it wrote); otherwise the write is refused, before
any work, with the names of the files it would have lost. The replacement is one atomic
exchange of the two folders (Linux renameat2 RENAME_EXCHANGE), so OUT never goes missing.
A staging folder left by a killed run is removed by the next run that writes next to it.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from rv_merge.errors import UsageError

MARKER = ".rv-merge-output.json"
STAGING = ".rv-staging-"


def write_text(path: Path, text: str) -> None:
    """Write a text file under a temporary name, then rename: never a half-written file."""
    write_file(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def write_file(path: Path, write: Callable[[Path], object]) -> None:
    """Call `write(temporary path)`, then rename the result to `path` (removed if `write` fails)."""
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_json(path: Path, data) -> None:
    write_text(path, json.dumps(data, indent=1, sort_keys=True, default=_plain))


def _plain(value):
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def check_replaceable(out_path: str | os.PathLike) -> None:
    """Refuse an OUT that holds anything rv-merge did not write there (call before any work)."""
    out = Path(out_path)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UsageError(f"{out} exists and is not a folder; choose a new or empty folder for the output")
    if not out.is_dir():
        return
    entries = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() or p.is_symlink()}
    written = set(_written_by_us(out))
    foreign = sorted(entries - written - {MARKER})
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise UsageError(f"{out} holds files rv-merge did not write ({shown}); they would be lost: "
                         "choose a new or empty folder for the output, or move them")


def write_folder(out_path: str | os.PathLike, write: Callable[[str], object]) -> None:
    """Call `write(staging_path)`, then put the result at `out_path` in one atomic step.

    The staging folder sits next to `out_path` (same filesystem) and carries the same base
    name, so anything that records the folder name (the model card) sees the final one.
    """
    out = Path(out_path).absolute()
    check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_staging(out)
    staging_root = Path(tempfile.mkdtemp(prefix=f".{out.name}{STAGING}{os.getpid()}-", dir=out.parent))
    try:
        staged = staging_root / out.name
        write(str(staged))
        if not staged.is_dir():
            raise RuntimeError(f"nothing was written to {staged}")
        files = sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file())
        (staged / MARKER).write_text(json.dumps({"written_by": "rv-merge", "files": files}, indent=1))
        if out.exists():
            _exchange(staged, out)  # the previous OUT is now at `staged`, removed below
        else:
            os.rename(staged, out)
    finally:
        shutil.rmtree(staging_root, ignore_errors=True)


def remove_dead_staging(out: Path) -> list[Path]:
    """Remove staging folders for `out` whose writing process no longer runs."""
    removed = []
    for folder in out.parent.glob(f".{out.name}{STAGING}*"):
        pid = folder.name.removeprefix(f".{out.name}{STAGING}").split("-", 1)[0]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _written_by_us(folder: Path) -> list[str]:
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return []
    return marker.get("files", []) if isinstance(marker, dict) else []


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


RENAME_EXCHANGE = 2
AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> None:
    """Swap two paths atomically; where the kernel or filesystem cannot, two renames."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is not None:
        if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
            raise OSError(code, os.strerror(code), str(b))
    parked = a.with_name(a.name + ".previous")
    os.rename(b, parked)
    os.rename(a, b)
    os.rename(parked, a)
