"""Teach mergekit's tensor loading to read vector folders (`role: vector` sources).

mergekit looks tensors up through `LoaderCache().get(model).index.tensor_paths` (planning),
reads them in `LoadTensor.execute`, which casts every tensor to the merge `dtype`, and
before the kernel runs casts all inputs of a tensor group to one dtype (the promoted one
unless `dtype` is set). For a vector folder:

- the cache returns a `VectorLoader` that lists the vector's weight names and rebuilds each
  as a dense float64 tensor, and `LoadTensor` does not cast it;
- the group's dtype is chosen from, and applied to, the other inputs only (the target), so
  the vector stays float64 and the output keeps the target's dtype.

The kernel thus sees the stored difference exactly: an exact vector merges to the pair's bits.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import torch

from rv_merge.vectors.store import FILE, dense_tensor, is_vector_folder, read_metadata


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


def is_vector_entry(entry) -> bool:
    """True for a tensor-group entry that comes from a vector folder."""
    reference = getattr(entry.id, "model", None)
    return is_vector_folder(getattr(reference, "path", entry.id))


def install_vector_loading() -> None:
    """Patch mergekit's loader cache, LoadTensor and dtype alignment (idempotent)."""
    from dataclasses import replace

    import mergekit.merge_methods.dtype as alignment
    from mergekit.io.tasks import LoaderCache, LoadTensor

    if getattr(LoadTensor.execute, "rv_merge_vectors", False):
        return
    original_get, original_execute = LoaderCache.get, LoadTensor.execute

    def get(self, model):
        if model.lora is None and is_vector_folder(model.model.path):
            if model not in self.loaders:
                self.loaders[model] = VectorLoader(model.model.path)
            return self.loaders[model]
        return original_get(self, model)

    def execute(self):
        loader = LoaderCache().get(self.model)
        if not isinstance(loader, VectorLoader):
            return original_execute(self)
        name = self._resolve_name(loader)
        if name is None:
            if self.optional:
                return None
            raise RuntimeError(f"Tensor {self.tensor} required but not present in vector {loader.folder}")
        return loader.get_tensor(name, device=self.device or "cpu")  # float64, not cast

    original_promoted = alignment.promoted_dtype

    def promoted_dtype(group):
        others = tuple(e for e in group.entries if not is_vector_entry(e))
        if len(others) in (0, len(group.entries)):
            return original_promoted(group)
        return original_promoted(replace(group, entries=others))

    def align_dtype(group, dtype=None):
        dtype = dtype or promoted_dtype(group)
        return replace(group, entries=tuple(
            e if is_vector_entry(e) else replace(e, tensor=e.tensor.to(dtype=dtype)) for e in group.entries))

    execute.rv_merge_vectors = True
    LoaderCache.get, LoadTensor.execute = get, execute
    alignment.promoted_dtype, alignment.align_dtype = promoted_dtype, align_dtype
