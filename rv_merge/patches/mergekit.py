"""Every change rv-merge makes to mergekit's internals (written for mergekit >=0.1.5,<0.2).

mergekit has no plugin mechanism, so four things are patched:

1. `mergekit.merge.run_merge` is wrapped, so that plain `mergekit-yaml` and `mergekit-multi`
   pass `reasoning_vector` recipes through rv_merge's checks and atomic write (the guard
   itself is rv_merge.merge.guarded_merge; other merge methods call mergekit unchanged).
2. Tensor loading learns vector folders (`role: vector` sources). mergekit looks tensors up
   through `LoaderCache().get(model).index.tensor_paths` (planning), reads them in
   `LoadTensor.execute`, which casts every tensor to the merge `dtype`, and before the
   kernel runs casts all inputs of a tensor group to one dtype. For a vector folder the
   cache returns a `VectorLoader` that rebuilds each weight as a dense float64 tensor,
   `LoadTensor` does not cast it, and the group's dtype is chosen from, and applied to,
   the model inputs only (by the merge's own rule, rv_merge.merge.arithmetic.merge_dtype,
   handed in by the caller), so the kernel sees the stored difference exactly and an
   exact vector merges to the pair's bits.
3. During a guarded merge (streamed_merge_io), `mergekit.io.tasks.TensorWriter` (which
   `TensorWriterTask.execute` instantiates) is replaced by a writer with the same interface,
   shard rule and file names that streams each tensor to disk, and models are read through
   a loader that maps each tensor on its own, released with the tensor
   (rv_merge.merge.streaming_writer and tensor_reader, handed in by the guard), so memory
   stays flat whatever the model size.
4. Also during a guarded merge, two lookups that mergekit repeats for every tensor are made
   cheap: `Executor._run` asks `task in self.targets` of a list after each of thousands of
   tasks (a quarter of a second per 0.5B merge, growing with the square of the model's
   tensor count), so the executor's targets become a list with a set for `in`; and whether
   a model path is a vector folder (a file lookup) is remembered for the merge.

`UPSTREAM_SOURCES` holds a hash of each patched function's source as written for; the
tests compare it with the installed mergekit, so an upstream change fails loudly.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Iterator, Optional

import mergekit.merge_methods.dtype as alignment
import torch
import mergekit.io.tasks as io_tasks
from mergekit.graph import Executor
from mergekit.io.tasks import LoaderCache, LoadTensor, TensorWriterTask
from mergekit.io.tensor_writer import TensorWriter

from rv_merge.patches.upstream import require_version, source_fingerprints
from rv_merge.recipe.vector_folder import FILE, dense_tensor, is_vector_folder, read_metadata

require_version("mergekit", ">=0.1.5,<0.2", "mergekit>=0.1.5,<0.2")

# sha256 (first 16 hex digits) of inspect.getsource of each function as patched here.
UPSTREAM_SOURCES = {
    "mergekit.merge.run_merge": "4456933bae68952d",
    "mergekit.io.tasks.LoaderCache.get": "814bddf2f136ee78",
    "mergekit.io.tasks.LoadTensor.execute": "910b49df50402101",
    "mergekit.io.tasks.LoadTensor._resolve_name": "355c3893777d24a3",
    "mergekit.merge_methods.dtype.promoted_dtype": "2513e6133d5ec228",
    "mergekit.merge_methods.dtype.align_dtype": "199eafa7256e3c03",
    "mergekit.io.tasks.TensorWriterTask.execute": "6cef725a6ba3dd63",
    "mergekit.io.tensor_writer.TensorWriter.save_tensor": "d0bc2d0e7fd659ee",
    "mergekit.io.tensor_writer.TensorWriter.finalize": "940d9dc8a7f9018a",
    "mergekit.graph.Executor.__init__": "d244d2e0f6801132",
    "mergekit.graph.Executor._run": "8d4bf4d959a6c5c9",
}
_ORIGINALS = {
    "mergekit.io.tasks.LoaderCache.get": LoaderCache.get,
    "mergekit.io.tasks.LoadTensor.execute": LoadTensor.execute,
    "mergekit.io.tasks.LoadTensor._resolve_name": LoadTensor._resolve_name,
    "mergekit.merge_methods.dtype.promoted_dtype": alignment.promoted_dtype,
    "mergekit.merge_methods.dtype.align_dtype": alignment.align_dtype,
    "mergekit.io.tasks.TensorWriterTask.execute": TensorWriterTask.execute,
    "mergekit.io.tensor_writer.TensorWriter.save_tensor": TensorWriter.save_tensor,
    "mergekit.io.tensor_writer.TensorWriter.finalize": TensorWriter.finalize,
    "mergekit.graph.Executor.__init__": Executor.__init__,
    "mergekit.graph.Executor._run": Executor._run,
}


def upstream_fingerprints() -> dict[str, str]:
    """The installed mergekit's version of each patched function, hashed like UPSTREAM_SOURCES."""
    import mergekit.merge

    originals = {**_ORIGINALS, "mergekit.merge.run_merge": original_run_merge(mergekit.merge)}
    return source_fingerprints(originals)


# ---------------------------------------------------------------------------- run_merge


def wrap_run_merge(merge_module, guard: Callable) -> None:
    """Route `reasoning_vector` merges through `guard(run_merge, config, out, options, source)`."""
    original = original_run_merge(merge_module)

    @functools.wraps(original)
    def run_merge(merge_config, out_path, options, config_source=None):
        if merge_config.merge_method != "reasoning_vector":
            return original(merge_config, out_path, options, config_source=config_source)
        return guard(original, merge_config, out_path, options, config_source)

    run_merge.rv_merge_guarded = True
    merge_module.run_merge = run_merge


def original_run_merge(merge_module) -> Callable:
    """mergekit's own run_merge, whether or not it is wrapped."""
    function = merge_module.run_merge
    return function.__wrapped__ if getattr(function, "rv_merge_guarded", False) else function


def forget_open_files() -> None:
    """mergekit keeps one open loader per model for the life of the process: a weight file
    rewritten since an earlier merge in this process would be read stale."""
    LoaderCache().loaders.clear()


# ---------------------------------------------------------------------------- vector loading


class VectorLoader:
    """The part of mergekit's LazyTensorLoader interface that merging uses."""

    def __init__(self, folder: str):
        self.folder = Path(folder)
        self.index = SimpleNamespace(tensor_paths={name: FILE for name in read_metadata(folder)["tensors"]})

    def get_tensor(self, key: str, device: str = "cpu", aliases: Optional[list[str]] = None,
                   raise_on_missing: bool = True) -> Optional[torch.Tensor]:
        name = next((n for n in [key, *(aliases or [])] if n in self.index.tensor_paths), None)
        if name is None:
            if raise_on_missing:
                raise KeyError(f"tensor {key} is not in the vector {self.folder}")
            return None
        return dense_tensor(self.folder, name, device=device)

    def flush(self) -> None:
        pass


def _is_vector_entry(entry) -> bool:
    """True for a tensor-group entry that comes from a vector folder."""
    reference = getattr(entry.id, "model", None)
    return _is_vector_path(getattr(reference, "path", entry.id))


# Set by streamed_merge_io for the duration of a guarded merge.
_GUARDED_MERGE = {"reader_for": None, "readers": {}, "vector_paths": None}


def _is_vector_path(path: str) -> bool:
    """is_vector_folder, remembered for the rest of a guarded merge."""
    known = _GUARDED_MERGE["vector_paths"]
    if known is None:
        return is_vector_folder(path)
    if path not in known:
        known[path] = is_vector_folder(path)
    return known[path]


def _get(self, model):
    if model.lora is None and _is_vector_path(model.model.path):
        if model not in self.loaders:
            self.loaders[model] = VectorLoader(model.model.path)
        return self.loaders[model]
    loader = _ORIGINALS["mergekit.io.tasks.LoaderCache.get"](self, model)
    if _GUARDED_MERGE["reader_for"] is None:
        return loader
    readers = _GUARDED_MERGE["readers"]
    if model not in readers:
        readers[model] = _GUARDED_MERGE["reader_for"](loader) or loader
    return readers[model]


def _execute(self):
    loader = LoaderCache().get(self.model)
    if not isinstance(loader, VectorLoader):
        return _ORIGINALS["mergekit.io.tasks.LoadTensor.execute"](self)
    name = self._resolve_name(loader)
    if name is None:
        if self.optional:
            return None
        raise RuntimeError(f"Tensor {self.tensor} required but not present in vector {loader.folder}")
    return loader.get_tensor(name, device=self.device or "cpu")  # float64, not cast


def install_vector_loading(merge_dtype: Callable[[list[torch.dtype]], torch.dtype]) -> None:
    """Patch mergekit's loader cache, LoadTensor and dtype alignment (idempotent).

    `merge_dtype` picks a tensor group's dtype from its model inputs' dtypes.
    """

    def promoted_dtype(group):
        models = [e.tensor.dtype for e in group.entries if not _is_vector_entry(e)]
        return merge_dtype(models or [e.tensor.dtype for e in group.entries])

    def align_dtype(group, dtype=None):
        dtype = dtype or promoted_dtype(group)
        return replace(group, entries=tuple(
            e if _is_vector_entry(e) else replace(e, tensor=e.tensor.to(dtype=dtype)) for e in group.entries))

    LoaderCache.get, LoadTensor.execute = _get, _execute
    alignment.promoted_dtype, alignment.align_dtype = promoted_dtype, align_dtype


# ---------------------------------------------------------------------------- output writing


@contextlib.contextmanager
def streamed_merge_io(writer_class: type, reader_for: Callable) -> Iterator[None]:
    """Within the block, mergekit writes safetensors output with `writer_class` (same
    constructor and interface as TensorWriter), and reads each model through
    `reader_for(mergekit's loader)` when that returns a reader (else through mergekit's
    loader). Writers left unfinished by a failing merge get `abort()` on the way out; readers
    are flushed. Pickle output keeps mergekit's own writer."""
    started = []

    def make_writer(out_path, *args, safe_serialization: bool = True, **kwargs):
        if not safe_serialization:
            return TensorWriter(out_path, *args, safe_serialization=False, **kwargs)
        started.append(writer_class(out_path, *args, **kwargs))
        return started[-1]

    def executor_init(self, *args, **kwargs):
        _ORIGINALS["mergekit.graph.Executor.__init__"](self, *args, **kwargs)
        self.targets = _TargetList(self.targets)

    io_tasks.TensorWriter = make_writer
    Executor.__init__ = executor_init
    _GUARDED_MERGE.update(reader_for=reader_for, readers={}, vector_paths={})
    try:
        yield
    except BaseException:
        for writer in started:
            writer.abort()
        raise
    finally:
        io_tasks.TensorWriter = TensorWriter
        Executor.__init__ = _ORIGINALS["mergekit.graph.Executor.__init__"]
        for reader in _GUARDED_MERGE["readers"].values():
            reader.flush()
        _GUARDED_MERGE.update(reader_for=None, readers={}, vector_paths=None)


class _TargetList(list):
    """A list whose `in` looks in a set (the items, task handles, hash by their index)."""

    def __init__(self, items):
        super().__init__(items)
        self._members = set(items)

    def __contains__(self, item) -> bool:
        return item in self._members
