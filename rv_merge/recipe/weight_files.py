"""Reading a model folder's safetensors files: headers (names, dtypes, shapes) and single tensors.

Headers are read without touching tensor data, so checks stay cheap for 70B checkpoints;
tensors are read one at a time, so memory stays bounded by the largest tensor.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch
from safetensors import safe_open

from rv_merge.errors import CompatibilityError

# torch dtype -> its name in safetensors headers
SAFETENSORS_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL", torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2",
}


def read_safetensors_header(file: Path) -> tuple[int, dict]:
    """(where the tensor data starts in the file, the file's JSON header), no tensor data read."""
    with open(file, "rb") as handle:
        try:
            (length,) = struct.unpack("<Q", handle.read(8))
            return 8 + length, json.loads(handle.read(length))
        except (struct.error, ValueError) as error:
            raise CompatibilityError(f"{file}: not a readable safetensors file ({error})") from None


def read_safetensors_headers(files: list[Path]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Tensor names, dtypes and shapes from safetensors headers (no tensor data is read)."""
    tensors = {}
    for file in files:
        _, header = read_safetensors_header(file)
        for name, info in header.items():
            if name != "__metadata__":
                tensors[name] = (info["dtype"], tuple(info["shape"]))
    return tensors


def weight_files(folder: Path) -> dict[str, Path]:
    """Tensor name -> the safetensors file that holds it."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise CompatibilityError(f"{folder}: no *.safetensors weights (pickled weights are not read here)")
    return {name: file for file in files for name in read_safetensors_headers([file])}


def load_weight(files: dict[str, Path], name: str) -> torch.Tensor:
    with safe_open(str(files[name]), "pt") as handle:
        return handle.get_tensor(name)
