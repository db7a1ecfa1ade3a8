"""What can go wrong, by kind. Each error's message names the file, key or tensor and the fix.

All of them subclass click's exception so that a failure inside plain `mergekit-yaml` (a
click program) prints one `Error: ...` line and exits non-zero, without a traceback; `rv`
prints the same line with its command name.
"""

import click


class RvError(click.ClickException):
    """Bad input or a refused operation; never a bug in rv-merge (those stay tracebacks)."""

    exit_code = 2


class UsageError(RvError):
    """A command-line flag or argument is wrong (a missing folder, flags that exclude each other)."""


class RecipeError(RvError):
    """A recipe file or its `eval:` section is invalid."""


class CompatibilityError(RvError):
    """The target and the pair (or vector) cannot be merged: architecture, shapes, tokenizers,
    weights (NaN, pickle), or a model that cannot be found."""


class VectorFileError(RvError):
    """A vector folder is missing, malformed, or cannot be combined with another."""


class DataError(RvError):
    """Task data cannot be found or is empty; the message says where to put it."""


class SandboxError(RvError):
    """Model-written code could not be run in the sandbox at all (not: it ran and failed)."""


class ServerError(RvError):
    """An inference server rv started could not start, died, or answered garbage."""


def describe_error(error: Exception, limit: int | None = None) -> str:
    """An exception as one line for a message: its type and the first line of its text (cut to
    `limit` characters: some libraries put a whole response body there)."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0][:limit]}" if text else type(error).__name__
