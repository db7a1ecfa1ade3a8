"""Writing a merge's output tensor by tensor, while the next tensors are being merged.

mergekit's own TensorWriter keeps a whole output shard (5 GB by default) in memory and
writes it in one go at the end of the shard: memory grows with the shard size, and the
writing (which on Linux costs about as much CPU as the merge arithmetic) never overlaps the
merging. This writer keeps mergekit's interface, shard rule and file names, but hands each
tensor to a writer thread as soon as it is merged; the merge waits only when the queue is
full (QUEUE_BYTES besides the largest tensor). Memory stays at a few tensors whatever the
model size.

The safetensors layout needs a header (every tensor's offsets) before the data, and the
tensors of a shard are known only as they arrive, so each shard file starts with
HEADER_RESERVE bytes; the header is written there at the end, padded with spaces (which
the format allows). A header that does not fit (more than about 5,000 tensors in one
shard) is handled by rewriting the file with a header of the right size.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import threading
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Optional

import torch

from rv_merge.merge.aligned_file import AlignedFile
from rv_merge.recipe.weight_files import SAFETENSORS_DTYPES

HEADER_RESERVE = 1 << 20
# Merged tensors waiting to be written, besides the largest tensor so far. The largest is not
# counted because it is often larger than the whole budget (an embedding, written first):
# counting it would stop the merge until it is written, with the writer ahead and the
# smaller tensors behind it waiting to be merged (0.09 s of a 1.2 s 0.5B merge, ad hoc).
QUEUE_BYTES = 256 << 20


@dataclass
class _Shard:
    path: str
    file: AlignedFile
    entries: dict = field(default_factory=dict)  # name -> (dtype, shape, start, end)
    size: int = 0


class StreamingTensorWriter:
    """A drop-in for mergekit's TensorWriter (safetensors output) that streams to disk."""

    def __init__(self, out_path: str, max_shard_size: int = 5 * 1000**3, safe_serialization: bool = True,
                 override_basename: Optional[str] = None, use_async: bool = False, max_write_threads: int = 1):
        if not safe_serialization:
            raise ValueError("StreamingTensorWriter writes safetensors only")
        os.makedirs(out_path, exist_ok=True)
        self.out_path = out_path
        self.max_shard_size = max_shard_size
        self.basename = override_basename or "model"
        self.weight_map: dict[str, str] = {}
        self.total_size = 0
        self.shards_written = 0
        self._shard: Optional[_Shard] = None
        self._queue: queue.Queue = queue.Queue()
        self._queued_bytes = 0
        self._largest_bytes = 0
        self._written = threading.Condition()
        self._error: Optional[BaseException] = None
        self._open_files: set[AlignedFile] = set()
        self._thread = threading.Thread(target=self._write_loop, name="rv-merge tensor writer", daemon=True)
        self._thread.start()

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        self.finalize()

    def save_tensor(self, name: str, tensor: torch.Tensor, clone: bool = False) -> None:
        """Queue `tensor` for writing (no copy is kept: it is written once, as it is now)."""
        self._raise_writer_error()
        size = tensor.numel() * tensor.element_size()
        if self._shard is not None and self._shard.entries and self.max_shard_size > 0 \
                and self._shard.size + size > self.max_shard_size:
            self._close_shard()
        if self._shard is None:
            self._open_shard()
        shard = self._shard
        start = shard.size
        shard.entries[name] = (SAFETENSORS_DTYPES[tensor.dtype], list(tensor.shape), start, start + size)
        shard.size += size
        self.weight_map[name] = os.path.basename(shard.path)
        self._largest_bytes = max(self._largest_bytes, size)
        with self._written:  # wait for room (a dead writer thread must not leave us waiting)
            while self._queued_bytes + size > QUEUE_BYTES + self._largest_bytes and self._error is None \
                    and self._thread.is_alive():
                self._written.wait(timeout=1)
            self._raise_writer_error()
            self._queued_bytes += size
        self._queue.put(("data", shard.file, tensor.detach().cpu().contiguous()))

    def finalize(self) -> None:
        """Write the last header, wait for the writer, and give shards mergekit's final names."""
        if self._shard is not None:
            self._close_shard()
        self._queue.put(None)
        self._thread.join()
        self._raise_writer_error()
        self._name_shards()

    def abort(self) -> None:
        """Stop the writer thread and close its files after a failed merge (whose output is discarded)."""
        self._error = self._error or RuntimeError("aborted")
        self._queue.put(None)
        self._thread.join()
        for file in self._open_files:
            file.discard()
        self._open_files.clear()

    def _open_shard(self) -> None:
        self.shards_written += 1
        path = os.path.join(self.out_path, f"{self.basename}-{self.shards_written}.safetensors")
        self._shard = _Shard(path, AlignedFile(path, HEADER_RESERVE))
        self._open_files.add(self._shard.file)

    def _close_shard(self) -> None:
        self.total_size += self._shard.size
        self._queue.put(("header", self._shard))
        self._shard = None

    def _raise_writer_error(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"writing the merged model failed: {self._error}") from self._error

    def _write_loop(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                if self._error is not None:
                    continue  # drain after a failure; nothing more is written
                if item[0] == "data":
                    item[1].append(item[2].data_ptr(), item[2].numel() * item[2].element_size())
                else:
                    _write_header(item[1])
                    self._open_files.discard(item[1].file)
            except BaseException as error:  # noqa: BLE001 - handed to the merging thread
                self._error = error
            finally:
                if item[0] == "data":
                    with self._written:
                        self._queued_bytes -= item[2].numel() * item[2].element_size()
                        self._written.notify()

    def _name_shards(self) -> None:
        """Rename model-1.safetensors ... as mergekit does; write the index when there are several."""
        count = self.shards_written
        names = {f"{self.basename}-{i}.safetensors": (f"{self.basename}.safetensors" if count == 1 else
                                                    f"{self.basename}-{i:05d}-of-{count:05d}.safetensors")
                 for i in range(1, count + 1)}
        for old, new in names.items():
            os.rename(os.path.join(self.out_path, old), os.path.join(self.out_path, new))
        self.weight_map = {name: names[shard] for name, shard in self.weight_map.items()}
        if count > 1:
            index = {"metadata": {"total_size": self.total_size, "mergekit_version": version("mergekit")},
                     "weight_map": self.weight_map}
            with open(os.path.join(self.out_path, f"{self.basename}.safetensors.index.json"), "w",
                      encoding="utf-8") as handle:
                json.dump(index, handle, indent=2)


def _write_header(shard: _Shard) -> None:
    """Write the shard's header into its reserved space (or rewrite the file if it is too small)."""
    header = {name: {"dtype": dtype, "shape": shape, "data_offsets": [start, end]}
              for name, (dtype, shape, start, end) in shard.entries.items()}
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    if len(text) <= HEADER_RESERVE - 8:
        shard.file.close((HEADER_RESERVE - 8).to_bytes(8, "little") + text.ljust(HEADER_RESERVE - 8))
        return
    shard.file.close()
    text += b" " * (-len(text) % 8)
    rewritten = shard.path + ".header"
    with open(shard.path, "rb") as source, open(rewritten, "wb") as sink:
        sink.write(len(text).to_bytes(8, "little") + text)
        source.seek(HEADER_RESERVE)
        shutil.copyfileobj(source, sink, 1 << 24)
    os.replace(rewritten, shard.path)
