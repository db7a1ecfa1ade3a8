"""What a patch module needs to know about the library it patches: is the installed version
one it was written for, and is each function it touches still the same source."""

from __future__ import annotations

import hashlib
import inspect
from importlib.metadata import version
from typing import Callable

from packaging.specifiers import SpecifierSet


def require_version(distribution: str, supported: str, install: str) -> None:
    """Refuse, at import, a library outside the range a patch module was written for."""
    installed = version(distribution)
    if installed not in SpecifierSet(supported):
        raise ImportError(f"rv-merge patches {distribution} {supported}, but {distribution} {installed} is "
                          f"installed; install a supported version (pip install '{install}')")


def source_fingerprints(functions: dict[str, Callable]) -> dict[str, str]:
    """sha256 (first 16 hex digits) of each function's source, by its dotted name."""
    return {name: hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:16]
            for name, function in functions.items()}
