"""The on-disk form of a reasoning vector: a folder that mergekit can use as a model.

    vector.safetensors   the tensors, plus the metadata (JSON under the `rv_vector` key)
    config.json, tokenizer files ...   copied from the GRPO model, so that mergekit can plan
                         a merge with the folder as a source and `rv check` can compare it

Each weight `W` of the model is stored in one of three encodings (metadata `tensors[W]`):

    dense     W                     the values themselves (plus, for exact storage, the few
              W.residual_indices,   values W's dtype cannot hold, in float64)
              W.residual_values
    sparse    W.indices, W.values   the kept entries of the flattened tensor
    lowrank   W.lora_B, W.lora_A    W = lora_B @ lora_A  (out x r) @ (r x in)

`dense_tensor` rebuilds any of them as a float64 tensor: exactly the stored numbers for the
dense and sparse encodings (every float32 is a float64), the product in float64 for lowrank.

The file is a standard safetensors file (safetensors.safe_open reads it). It is written one
tensor at a time, so memory is bounded by the largest tensor, not by the model.
"""

from __future__ import annotations

import json
import shutil
import struct
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import torch

from rv_merge.errors import VectorFileError

FILE = "vector.safetensors"
FORMAT = "rv-vector/1"
METADATA_KEY = "rv_vector"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf")
SAFETENSORS_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32",
}


def is_vector_folder(path: str | Path) -> bool:
    return (Path(path) / FILE).is_file()


class SafetensorsStream:
    """Write a safetensors file one tensor at a time.

    The header (names, shapes, offsets, metadata) comes first in the format but is known
    only at the end, so the tensor bytes go to a side file that is appended after the header.
    """

    def __init__(self, path: Path):
        self.path = path
        self._data_path = path.with_name(path.name + ".data")
        self._data = open(self._data_path, "wb")
        self._header: dict[str, dict] = {}
        self._offset = 0

    def add(self, name: str, tensor: torch.Tensor) -> None:
        if name in self._header:
            raise ValueError(f"tensor {name} written twice")
        raw = tensor.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy()
        self._data.write(raw.tobytes())
        end = self._offset + raw.nbytes
        self._header[name] = {"dtype": SAFETENSORS_DTYPES[tensor.dtype], "shape": list(tensor.shape),
                              "data_offsets": [self._offset, end]}
        self._offset = end

    def finish(self, metadata: dict[str, str]) -> None:
        """Write the file; `metadata` is safetensors' string-to-string `__metadata__`."""
        self._data.close()
        header = {"__metadata__": metadata, **self._header}
        encoded = json.dumps(header, separators=(",", ":")).encode()
        encoded += b" " * (-len(encoded) % 8)  # the format allows space padding; aligns the data
        with open(self.path, "wb") as out, open(self._data_path, "rb") as data:
            out.write(struct.pack("<Q", len(encoded)))
            out.write(encoded)
            shutil.copyfileobj(data, out, 16 * 2**20)
        self._data_path.unlink()


def as_header(metadata: dict) -> dict[str, str]:
    """A vector's metadata as the safetensors header stores it."""
    return {METADATA_KEY: json.dumps(metadata, sort_keys=True)}


def read_metadata(folder: str | Path) -> dict:
    """The metadata of a vector folder (raises ValueError if it is not one)."""
    return _metadata(str(Path(folder).resolve()), (Path(folder) / FILE).stat().st_mtime_ns)


@lru_cache(maxsize=32)
def _metadata(folder: str, _mtime: int) -> dict:
    from safetensors import safe_open

    with safe_open(str(Path(folder) / FILE), "pt") as handle:
        raw = (handle.metadata() or {}).get(METADATA_KEY)
    if raw is None:
        raise ValueError(f"{folder}/{FILE} has no `{METADATA_KEY}` metadata: not an rv-merge vector")
    metadata = json.loads(raw)
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{folder}: vector format {metadata.get('format')!r}, this rv-merge reads {FORMAT}")
    return metadata


def dense_tensor(folder: str | Path, name: str, device: str = "cpu") -> torch.Tensor:
    """Weight `name` of the vector as a dense float64 tensor (refused if it holds NaN or Inf)."""
    tensor = _rebuild(folder, name, device)
    if not bool(torch.isfinite(tensor.sum())) and not bool(torch.isfinite(tensor).all()):
        raise VectorFileError(f"{folder}: tensor {name} holds NaN or Inf; the vector file is corrupt: "
                              "extract it again from its pair")
    return tensor


def _rebuild(folder: str | Path, name: str, device: str) -> torch.Tensor:
    from safetensors import safe_open

    info = read_metadata(folder)["tensors"][name]
    with safe_open(str(Path(folder) / FILE), "pt", device=device) as handle:
        if info["encoding"] == "dense":
            out = handle.get_tensor(name).double()
            if info.get("residual"):  # values the stored dtype could not hold exactly
                out.view(-1)[handle.get_tensor(f"{name}.residual_indices").long()] = \
                    handle.get_tensor(f"{name}.residual_values")
            return out
        if info["encoding"] == "sparse":
            out = torch.zeros(info["shape"], dtype=torch.float64, device=device)
            out.view(-1)[handle.get_tensor(f"{name}.indices").long()] = handle.get_tensor(f"{name}.values").double()
            return out
        if info["encoding"] == "lowrank":
            return handle.get_tensor(f"{name}.lora_B").double() @ handle.get_tensor(f"{name}.lora_A").double()
    raise ValueError(f"{folder}: tensor {name} has unknown encoding {info['encoding']!r}")


def dense_tensors(folder: str | Path) -> Iterator[tuple[str, torch.Tensor]]:
    """Every weight of the vector, one dense float64 tensor at a time."""
    for name in read_metadata(folder)["tensors"]:
        yield name, dense_tensor(folder, name)


def copy_model_files(source: Path, out: Path) -> None:
    """Config, tokenizer and other small files of `source` (not its weights) into `out`."""
    for path in source.iterdir():
        if path.is_file() and not path.name.endswith(WEIGHT_SUFFIXES) and not path.name.endswith(".index.json"):
            shutil.copy2(path, out / path.name)


def size_on_disk(folder: str | Path) -> int:
    return (Path(folder) / FILE).stat().st_size
