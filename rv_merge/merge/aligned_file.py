"""An output file written front to back in large aligned blocks, past the page cache where the
file system allows it (O_DIRECT).

A merge writes its output once and does not read it back. Through the page cache, every byte
is first copied into newly allocated cache pages. On a virtual machine whose host takes back
the memory the guest frees (free page reporting, as on the machine of BENCHMARKS.md), each
of those pages costs a fault on the host: writing the same 1 GiB took from 0.2 s to 6.7 s
there, depending on what memory had done before, and the merge's writer thread was its
critical path. Written with O_DIRECT, the device reads the data from our own buffer (the same
1 GiB: 0.35 to 0.5 s, steadily; ad hoc, 2026-12-06; the two I/O floors of bench/bench_merge.py
measure both ways), and a large output neither pushes the merge's inputs out of the page
cache nor waits for dirty pages to drain.

O_DIRECT needs offsets, lengths and memory aligned to the device's blocks, while tensors come
in any byte length: they are copied into aligned staging blocks, two of them, so that an I/O
thread writes one while the next one fills; the last block is padded and the file cut back
to its length. File systems that refuse
O_DIRECT (tmpfs, some network file systems) get the same blocks through the page cache.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Optional

ALIGNMENT = 4096  # the largest logical block size of common devices
STAGE_BYTES = 8 << 20


class AlignedFile:
    """A new file (truncated if it exists) whose bytes from `data_start` on are appended in
    order; `close` writes the first `data_start` bytes (the header) and the final length."""

    def __init__(self, path: str, data_start: int):
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        self.direct = hasattr(os, "O_DIRECT") and data_start % ALIGNMENT == 0
        try:
            self.descriptor = os.open(path, flags | (os.O_DIRECT if self.direct else 0), 0o644)
        except OSError as error:
            if error.errno != errno.EINVAL:
                raise
            self.descriptor, self.direct = os.open(path, flags, 0o644), False
        self.data_start = data_start
        # Two page-aligned staging blocks: one fills while the other is being written.
        self._stages = [mmap.mmap(-1, STAGE_BYTES) for _ in range(2)]
        self._addresses = [ctypes.addressof(ctypes.c_char.from_buffer(stage)) for stage in self._stages]
        self._pending: list[Optional[Future]] = [None, None]
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rv-merge output file")
        self._current = 0
        self._filled = 0
        self._offset = data_start  # where the current stage's bytes go in the file
        self.length = data_start

    def append(self, address: int, size: int) -> None:
        """Append `size` bytes read from memory at `address` (copied without holding the GIL)."""
        while size:
            part = min(size, STAGE_BYTES - self._filled)
            ctypes.memmove(self._addresses[self._current] + self._filled, address, part)
            self._filled += part
            address, size, self.length = address + part, size - part, self.length + part
            if self._filled == STAGE_BYTES:
                self._hand_over_stage()

    def close(self, header: bytes = b"") -> None:
        """Write what is staged, cut the file to its length, write `header` (empty, or exactly
        `data_start` bytes) at the start and close the file."""
        if header and len(header) != self.data_start:
            raise ValueError(f"a header of {len(header)} bytes for {self.data_start} reserved")
        try:
            if self._filled:
                self._hand_over_stage()
            for pending in self._pending:
                if pending is not None:
                    pending.result()
            os.ftruncate(self.descriptor, self.length)
            if header:
                self._stages[0][:len(header)] = header
                self._write(0, len(header), 0)
        finally:
            self.discard()

    def discard(self) -> None:
        """Close the file without finishing it (after a failure; its folder is discarded)."""
        if self.descriptor >= 0:
            self._io.shutdown(wait=True)
            os.close(self.descriptor)
            self.descriptor = -1
            self._stages = []  # unmapped when the last view of them goes (an error's traceback may hold one)

    def _hand_over_stage(self) -> None:
        """Have the I/O thread write the current stage; continue in the other one once its
        last write is done (which raises that write's error, if any)."""
        self._pending[self._current] = self._io.submit(self._write, self._current, self._filled, self._offset)
        self._offset += self._filled
        self._current, self._filled = 1 - self._current, 0
        pending, self._pending[self._current] = self._pending[self._current], None
        if pending is not None:
            pending.result()

    def _write(self, stage: int, size: int, offset: int) -> None:
        """Write `size` bytes of a stage at `offset`, padded to the alignment when written
        directly (past the file's length: `close` cuts it back)."""
        if self.direct and size % ALIGNMENT:
            padded = size + (-size % ALIGNMENT)
            self._stages[stage][size:padded] = bytes(padded - size)
            size = padded
        with memoryview(self._stages[stage]) as whole:
            view = whole[:size]
            written = 0
            while written < size:
                try:
                    written += os.pwrite(self.descriptor, view[written:], offset + written)
                except OSError as error:
                    if not (self.direct and error.errno == errno.EINVAL):
                        raise
                    self._stop_writing_directly()  # the device wants another alignment
            view.release()

    def _stop_writing_directly(self) -> None:
        flags = fcntl.fcntl(self.descriptor, fcntl.F_GETFL)
        fcntl.fcntl(self.descriptor, fcntl.F_SETFL, flags & ~os.O_DIRECT)
        self.direct = False
