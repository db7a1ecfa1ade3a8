"""The merge's output file: the same bytes whether written past the page cache (O_DIRECT) or
through it, at any length, and when the file system refuses direct writes at open or later."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

import rv_merge.merge.aligned_file as aligned_file
from rv_merge.merge.aligned_file import ALIGNMENT, AlignedFile

HEADER = ALIGNMENT  # the data start, and so the header's length, as the writer uses them


def write(path, pieces: list[np.ndarray], header: bytes) -> AlignedFile:
    file = AlignedFile(str(path), HEADER)
    for piece in pieces:
        file.append(piece.ctypes.data, piece.nbytes)
    file.close(header)
    return file


def pieces_of(lengths: list[int], seed: int = 0) -> list[np.ndarray]:
    generator = np.random.default_rng(seed)
    return [generator.integers(0, 256, size=n, dtype=np.uint8) for n in lengths]


def expected(pieces, header: bytes) -> bytes:
    return header + b"".join(p.tobytes() for p in pieces)


@pytest.mark.parametrize("lengths", [[], [1], [ALIGNMENT], [3, 5000, 1, 2 * ALIGNMENT + 7], [40_000, 99_999]])
def test_appended_bytes_and_header_read_back_at_their_exact_length(tmp_path, monkeypatch, lengths):
    monkeypatch.setattr(aligned_file, "STAGE_BYTES", 4 * ALIGNMENT)  # several staged blocks per file
    pieces, header = pieces_of(lengths), b"h" * HEADER
    file = write(tmp_path / "out", pieces, header)
    assert (tmp_path / "out").read_bytes() == expected(pieces, header)
    assert file.direct == hasattr(os, "O_DIRECT")  # this file system takes direct writes


def test_a_file_system_that_refuses_direct_io_at_open_gets_the_same_bytes(tmp_path, monkeypatch):
    real_open = os.open

    def refusing_open(path, flags, *args):
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args)

    monkeypatch.setattr(aligned_file.os, "open", refusing_open)
    pieces, header = pieces_of([12_345, 3]), b"x" * HEADER
    file = write(tmp_path / "out", pieces, header)
    assert not file.direct
    assert (tmp_path / "out").read_bytes() == expected(pieces, header)


def test_a_device_that_refuses_the_alignment_later_gets_the_same_bytes(tmp_path, monkeypatch):
    real_pwrite, refused = os.pwrite, []

    def refusing_pwrite(descriptor, data, offset):
        if not refused:
            refused.append(offset)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_pwrite(descriptor, data, offset)

    monkeypatch.setattr(aligned_file.os, "pwrite", refusing_pwrite)
    pieces, header = pieces_of([70_001]), b"y" * HEADER
    file = write(tmp_path / "out", pieces, header)
    assert refused and not file.direct
    assert (tmp_path / "out").read_bytes() == expected(pieces, header)


def test_an_unaligned_data_start_writes_through_the_page_cache(tmp_path):
    file = AlignedFile(str(tmp_path / "out"), 100)
    piece = pieces_of([5000])[0]
    file.append(piece.ctypes.data, piece.nbytes)
    file.close(b"z" * 100)
    assert not file.direct
    assert (tmp_path / "out").read_bytes() == b"z" * 100 + piece.tobytes()


def test_a_header_of_the_wrong_length_is_refused(tmp_path):
    file = AlignedFile(str(tmp_path / "out"), HEADER)
    with pytest.raises(ValueError, match="header of 3 bytes"):
        file.close(b"abc")
    file.discard()
