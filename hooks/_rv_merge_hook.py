"""Startup hook that makes plain `mergekit-yaml` know `merge_method: reasoning_vector`.

mergekit 0.1.5 has no plugin mechanism, so `rv_merge_hook.pth` (installed next to this
file in site-packages) calls `install()` at every interpreter start. `install()` only puts
a finder on `sys.meta_path`: it imports nothing, so programs that never import mergekit pay
well under a millisecond. When mergekit's own modules finish importing, the finder hands
them to rv_merge:

- `mergekit.merge_methods` -> register the `reasoning_vector` method;
- `mergekit.merge`         -> guard `run_merge` with rv_merge's checks and atomic writes.

Fail-safe: if rv_merge cannot be imported or refuses the installed mergekit, mergekit's own
methods keep working; one line on stderr says why `reasoning_vector` is missing. This is
also the edge where plain mergekit's users opt in to pickled weights (RV_MERGE_ALLOW_PICKLE=1).
"""

import os
import sys

_CALLBACKS = {
    # rv_merge.merge.method registers itself when imported (it may be importing already: it
    # imports mergekit.merge_methods itself), so here it only needs importing.
    "mergekit.merge_methods": ("rv_merge.merge.method", None),
    "mergekit.merge": ("rv_merge.merge.guard", "install_guard"),
}
_FAILED = []


def _run_callback(module, module_name, function_name):
    if _FAILED:
        return
    try:
        callback_module = __import__(module_name, fromlist=["_"])
        if function_name is not None:
            allow_pickle = os.environ.get("RV_MERGE_ALLOW_PICKLE") == "1"
            getattr(callback_module, function_name)(module, allow_pickle=allow_pickle)
    except Exception as error:  # rv_merge broken or mismatched: leave mergekit as it is
        _FAILED.append(error)
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        print(f"rv-merge: merge method `reasoning_vector` is unavailable ({type(error).__name__}: "
              f"{first}); mergekit's own methods are unaffected. Reinstall rv-merge to fix it.",
              file=sys.stderr)


class _AfterImport:
    """Meta path finder that runs a callback once a watched module has executed."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in _CALLBACKS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        module_name, function_name = _CALLBACKS[fullname]
        original_exec = spec.loader.exec_module

        def exec_module(module):
            original_exec(module)
            _run_callback(module, module_name, function_name)

        spec.loader.exec_module = exec_module
        return spec


def install():
    if not any(isinstance(finder, _AfterImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport())
