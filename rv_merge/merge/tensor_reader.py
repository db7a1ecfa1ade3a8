"""Reading a merge's input tensors so that each one leaves memory when it is used up.

mergekit maps each safetensors file whole. Every page of a mapped file that a merge
touches stays in the process's resident set until the file is closed, which mergekit does
only when it moves on to another shard: merging three single-file 7B checkpoints would hold
45 GB. This reader keeps mergekit's loader interface but maps each tensor on its own.
The tensor holds its mapping, so when mergekit drops the tensor the mapping goes with it,
and the resident memory of the inputs is the tensors in flight, whatever the model size.
Mapping (rather than reading into fresh memory) also spares the kernel from zeroing new
pages: the page cache's pages are used as they are.

The maps are read-only. Nothing in a `reasoning_vector` merge writes into its inputs (the
method, mergekit's dtype alignment and vocabulary alignment all build new tensors), and a
write would fault rather than reach the file. Read-only maps are also much cheaper to fault
in than writable private ones: on a warm 0.5B trio, the merge kernel's pass over them took
0.55 s against 0.92 s. It is used for every guarded merge of safetensors checkpoints (see
rv_merge.patches.mergekit.streamed_merge_io).
"""

from __future__ import annotations

import mmap
import os
import warnings
from pathlib import Path
from typing import Optional

import torch

from rv_merge.recipe.weight_files import SAFETENSORS_DTYPES, read_safetensors_header

TORCH_DTYPES = {name: dtype for dtype, name in SAFETENSORS_DTYPES.items()}


class SafetensorsReader:
    """The part of mergekit's LazyTensorLoader interface that merging uses, over the same
    index (`index.base_path`, `index.tensor_paths`), mapping each tensor on its own."""

    def __init__(self, index):
        self.index = index
        self._locations: dict[str, tuple[str, torch.dtype, list[int], int, int]] = {}
        for file in sorted(set(index.tensor_paths.values())):
            path = os.path.join(index.base_path, file)
            data_start, header = read_safetensors_header(Path(path))
            for name, info in header.items():
                if name != "__metadata__":
                    if info["dtype"] not in TORCH_DTYPES:
                        raise ValueError(f"{path}: tensor dtype {info['dtype']} is not read here")
                    start, end = info["data_offsets"]
                    self._locations[name] = (path, TORCH_DTYPES[info["dtype"]], info["shape"],
                                             data_start + start, end - start)
        self._descriptors: dict[str, int] = {}

    def get_tensor(self, key: str, device: str = "cpu", aliases: Optional[list[str]] = None,
                   raise_on_missing: bool = True) -> Optional[torch.Tensor]:
        name = next((n for n in [key, *(aliases or [])] if n in self._locations), None)
        if name is None:
            if raise_on_missing:
                raise KeyError(key)
            return None
        path, dtype, shape, offset, size = self._locations[name]
        if not size:
            return torch.empty(shape, dtype=dtype, device=device)
        aligned = offset - offset % mmap.ALLOCATIONGRANULARITY
        mapping = mmap.mmap(self._descriptor(path), offset - aligned + size, flags=mmap.MAP_SHARED,
                            prot=mmap.PROT_READ, offset=aligned)
        mapping.madvise(mmap.MADV_WILLNEED)  # start reading it from disk now, not page by page at first touch
        with warnings.catch_warnings():  # torch warns that the buffer is read-only: that is the point
            warnings.simplefilter("ignore", UserWarning)
            data = torch.frombuffer(mapping, dtype=torch.uint8, count=size, offset=offset - aligned)
        return data.view(dtype).view(shape).to(device)  # the tensor keeps `mapping` alive

    def flush(self) -> None:
        for descriptor in self._descriptors.values():
            os.close(descriptor)
        self._descriptors.clear()

    def _descriptor(self, path: str) -> int:
        if path not in self._descriptors:
            self._descriptors[path] = os.open(path, os.O_RDONLY)
        return self._descriptors[path]


def reader_for(loader) -> SafetensorsReader | None:
    """A SafetensorsReader over the index of mergekit's loader, or None when it holds pickled
    weights or a dtype this reader does not know (mergekit's own loader is used then)."""
    index = getattr(loader, "index", None)
    if index is None or not getattr(index, "is_safetensors", False) or not index.tensor_paths:
        return None
    try:
        return SafetensorsReader(index)
    except ValueError:
        return None
