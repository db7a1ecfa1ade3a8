"""The one exception type rv-merge raises for bad input."""

import click


class RecipeError(click.ClickException):
    """Bad input: the message names the file, key or tensor, and the fix.

    It subclasses click's exception so that a failure inside plain `mergekit-yaml`
    (a click program) prints one `Error: ...` line and exits non-zero, without a traceback.
    """

    exit_code = 2
