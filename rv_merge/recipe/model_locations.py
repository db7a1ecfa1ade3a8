"""Where a model reference points (a local folder or a Hub id's cache snapshot), and its fingerprint.

A folder's fingerprint hashes each file's name, size and modification time, plus the full
content of the small JSON/text files (configs, tokenizer). Hashing the weights themselves
would mean reading 140 GB for a 70B model; rewriting a weight file changes its mtime.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from rv_merge.errors import CompatibilityError, describe_error

SMALL_FILE_BYTES = 4 * 2**20


def locate_model(reference: str, source: str) -> Path:
    """A local folder for a model reference: a folder on disk, or a Hub id's cache snapshot."""
    path = Path(reference).expanduser()
    looks_like_hub_id = (
        reference.count("/") == 1 and not reference.startswith((".", "/", "~"))
    )
    if path.is_dir():
        if looks_like_hub_id:
            raise CompatibilityError(
                f"{source}: model `{reference}` could be a local folder or a Hub id; "
                f"write `./{reference}` for the folder"
            )
        return path
    if not looks_like_hub_id:
        raise CompatibilityError(f"{source}: model folder `{reference}` does not exist")
    return _hub_snapshot(reference, source)


def _hub_snapshot(repo_id: str, source: str) -> Path:
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except LocalEntryNotFoundError:
        pass
    if constants.HF_HUB_OFFLINE:
        raise CompatibilityError(
            f"{source}: `{repo_id}` is not a local folder and not in the Hugging Face cache "
            f"({constants.HF_HUB_CACHE}); offline (HF_HUB_OFFLINE=1) it cannot be fetched: run "
            f"`hf download {repo_id}` where the Hub is reachable, or use a local folder"
        )
    try:
        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.txt", "*.model", "*.jinja"]))
    except Exception as error:  # network, auth, missing repo: all end the check the same way
        raise CompatibilityError(
            f"{source}: cannot fetch `{repo_id}` from the Hub ({describe_error(error)}); check the id and "
            "your network, or use a local folder"
        ) from None


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
