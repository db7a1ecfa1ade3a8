"""The merge's output buffers: reused only once no tensor refers to them, bounded when idle,
and made of ordinary pages (no huge pages)."""

from __future__ import annotations

import sys

import pytest
import torch

from rv_merge.merge.buffer_pool import BufferPool


def address(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage().data_ptr()


def test_a_buffer_is_handed_out_again_only_when_no_tensor_or_view_uses_it():
    pool = BufferPool()
    first = pool.empty((4, 1024), torch.bfloat16)
    second = pool.empty((4, 1024), torch.bfloat16)
    assert address(second) != address(first)  # `first` is still in use
    view = first[1:].reshape(-1)
    del first
    assert address(pool.empty((8, 512), torch.bfloat16)) != address(view)  # a view keeps it in use
    kept = address(view)
    del view
    again = pool.empty((2, 2048), torch.float16)  # same byte size, any shape and dtype
    assert address(again) == kept and again.shape == (2, 2048) and again.dtype == torch.float16


def test_idle_buffers_beyond_the_limit_are_released_largest_first():
    pool = BufferPool(idle_limit_bytes=3000)
    tensors = [pool.empty((n,), torch.uint8) for n in (1000, 2000, 4000)]
    del tensors
    pool.empty((5000,), torch.uint8)  # a new size: idle buffers are trimmed to the limit first
    assert {size for size, buffers in pool._buffers.items() if buffers} == {1000, 2000, 5000}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")
def test_buffers_are_not_backed_by_huge_pages():
    tensor = BufferPool().empty((64 << 20,), torch.uint8)
    start = address(tensor)
    flags = None
    with open("/proc/self/smaps", encoding="ascii") as smaps:
        for line in smaps:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                low, high = (int(x, 16) for x in head.split("-"))
                inside = low <= start < high
            elif inside and head == "VmFlags:":
                flags = line.split()[1:]
                break
    assert flags is not None and "nh" in flags  # MADV_NOHUGEPAGE
