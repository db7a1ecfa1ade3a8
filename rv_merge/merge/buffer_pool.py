"""Memory for the tensors a merge reads and writes, reused instead of freshly allocated.

A merge allocates every input and output tensor once and drops it a moment later. The C
allocator returns such large blocks to the kernel at once, so the next tensor of the same
shape is built from fresh pages, and on the first touch of each page the kernel has to
supply and zero it: on the machines measured (bench/bench_merge.py), those page faults cost
more than the arithmetic. Tensors of a model come in a few shapes repeated per layer, so
buffers are kept and handed out again by byte size once no tensor uses them any more.

A buffer is a numpy byte array that the tensor's storage refers to (torch.from_numpy), so
"no tensor uses it" is "only the pool refers to it", read from its reference count: views,
slices and reshapes of the tensor all keep the storage, and with it the buffer, alive.
"""

from __future__ import annotations

import mmap
import sys
import threading

import numpy as np
import torch

IDLE_LIMIT_BYTES = 2 << 30  # idle buffers kept beyond this are released, largest first
# References to an idle buffer, seen from _is_idle: the pool's list, the caller's loop
# variable, _is_idle's parameter and getrefcount's argument.
_IDLE_REFERENCES = 4


class BufferPool:
    def __init__(self, idle_limit_bytes: int = IDLE_LIMIT_BYTES):
        self.idle_limit_bytes = idle_limit_bytes
        self._buffers: dict[int, list[np.ndarray]] = {}
        self._lock = threading.Lock()

    def empty(self, shape, dtype: torch.dtype) -> torch.Tensor:
        """An uninitialised CPU tensor, in a reused buffer when one of its size is idle."""
        size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        with self._lock:
            buffers = self._buffers.setdefault(size, [])
            buffer = next((b for b in buffers if _is_idle(b)), None)
            if buffer is None:
                self._release_idle()
                buffer = _small_page_buffer(size)
                buffers.append(buffer)
        return torch.from_numpy(buffer).view(dtype).view(shape)

    def _release_idle(self) -> None:
        idle = [(size, b) for size, buffers in self._buffers.items() for b in buffers if _is_idle(b)]
        total = sum(size for size, _ in idle)
        for size, buffer in sorted(idle, key=lambda item: item[0], reverse=True):
            if total <= self.idle_limit_bytes:
                break
            self._buffers[size] = [b for b in self._buffers[size] if b is not buffer]
            total -= size


def _small_page_buffer(size: int) -> np.ndarray:
    """`size` bytes of anonymous memory in ordinary 4 KiB pages, never huge pages.

    numpy asks the kernel for huge pages (2 MiB) for large arrays. Those must come from whole
    free 2 MiB blocks, which are exactly what a virtual machine with free page reporting has
    handed back to its host: each of their 4 KiB pages then costs a fault on the host. On the
    machine of BENCHMARKS.md, touching 512 MiB of np.empty took 2.7-3.8 s against 0.2 s with
    4 KiB pages, and the kernel's first pass over a 0.5B model 1.6 s against 0.37 s (ad hoc,
    2026-12-06). The buffers are streamed through once per tensor, where huge pages save
    nothing worth that.
    """
    memory = mmap.mmap(-1, max(size, 1), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        memory.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(memory, dtype=np.uint8, count=size)


def _is_idle(buffer: np.ndarray) -> bool:
    return sys.getrefcount(buffer) <= _IDLE_REFERENCES


MERGE_BUFFERS = BufferPool()
