"""Shrink a vector: magnitude pruning, DARE, low-rank factorization, and TIES combination.

Every method reads a vector folder, writes a new one (same format, other encodings) and
records, per tensor and overall, the relative reconstruction error ||v' - v|| / ||v||
measured in float64 against the input (for TIES: against the plain mean of the inputs).

- magnitude: keep the `keep` fraction of entries of largest |v| in each tensor.
- dare: keep each entry with probability `keep` and divide the kept ones by `keep`
  (Yu et al. 2024, "Language Models are Super Mario"), seeded per tensor.
- lowrank: each matrix as B @ A from its SVD, at a fixed `rank` or the smallest rank whose
  singular values hold an `energy` fraction of sum(s^2). 1-D tensors (norms, biases) have no
  low-rank form and are kept exactly, as dense tensors.
- ties: trim each input to its `keep` fraction by magnitude, elect a sign per entry from the
  sum of the trimmed values, and average only the entries that agree with it
  (Yadav et al. 2023, "TIES-Merging").
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Callable, Optional

import torch

from rv_merge.atomic_files import write_folder
from rv_merge.errors import UsageError, VectorFileError
from rv_merge.merge.arithmetic import round_once
from rv_merge.vectors.extract import exact_encoding
from rv_merge.recipe.vector_folder import FILE, SafetensorsStream, as_header, copy_model_files, dense_tensor, read_metadata

VALUE_DTYPE = torch.float32  # stored values of sparse and low-rank encodings

Encoded = tuple[dict[str, torch.Tensor], torch.Tensor, dict]  # pieces, reconstruction, info


def magnitude(v: torch.Tensor, keep: float) -> torch.Tensor:
    """Flat indices of the `keep` fraction of entries with the largest |v|."""
    count = max(1, math.ceil(keep * v.numel()))
    return torch.topk(v.reshape(-1).abs(), count, sorted=False).indices.sort().values


def dare_mask(v: torch.Tensor, keep: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(v.numel(), generator=generator, dtype=torch.float64) < keep


def encode_sparse(name: str, v: torch.Tensor, indices: torch.Tensor, values: torch.Tensor) -> Encoded:
    index_dtype = torch.int32 if v.numel() < 2**31 else torch.int64
    stored = round_once(values, VALUE_DTYPE)
    rebuilt = torch.zeros_like(v)
    rebuilt.view(-1)[indices] = stored.double()
    pieces = {f"{name}.indices": indices.to(index_dtype), f"{name}.values": stored}
    return pieces, rebuilt, {"encoding": "sparse", "kept": int(indices.numel())}


def encode_lowrank(name: str, v: torch.Tensor, rank: Optional[int], energy: Optional[float]) -> Encoded:
    u, s, vh = torch.linalg.svd(v, full_matrices=False)
    if rank is None:
        share = torch.cumsum(s**2, 0) / (s**2).sum() if s.numel() and s[0] > 0 else torch.ones_like(s)
        rank = int((share < energy).sum()) + 1
    rank = max(1, min(rank, s.numel()))
    b = round_once(u[:, :rank] * s[:rank], VALUE_DTYPE)
    a = round_once(vh[:rank], VALUE_DTYPE)
    pieces = {f"{name}.lora_B": b, f"{name}.lora_A": a}
    return pieces, b.double() @ a.double(), {"encoding": "lowrank", "rank": rank}


def compress_vector(source: Path, out: Path, method: str, keep: Optional[float] = None,
                    rank: Optional[int] = None, energy: Optional[float] = None, seed: int = 0,
                    progress: bool = True) -> dict:
    """Write a compressed copy of the vector folder `source` to `out`; return its metadata."""
    if method in ("magnitude", "dare"):
        _check_fraction(keep, "--keep")
    elif method == "lowrank":
        if (rank is None) == (energy is None):
            raise UsageError("lowrank: give exactly one of --rank N or --energy F")
        if rank is not None and rank < 1:
            raise UsageError(f"--rank {rank}: must be at least 1")
        if energy is not None:
            _check_fraction(energy, "--energy")
    else:
        raise UsageError(f"unknown method {method!r}: choose magnitude, dare or lowrank (ties: rv vector combine)")
    metadata = read_metadata(source)

    def encode(name: str, inputs: list[torch.Tensor]) -> Encoded:
        (v,) = inputs
        if method == "magnitude":
            indices = magnitude(v, keep)
            return encode_sparse(name, v, indices, v.reshape(-1)[indices])
        if method == "dare":
            generator = torch.Generator().manual_seed(_tensor_seed(seed, name))
            indices = dare_mask(v, keep, generator).nonzero().squeeze(1)
            return encode_sparse(name, v, indices, v.reshape(-1)[indices] / keep)
        if v.dim() == 2:
            return encode_lowrank(name, v, rank, energy)
        pieces, info = exact_encoding(name, v, torch.float32)  # norms and biases stay exact
        return pieces, v, {"encoding": "dense", **info}

    settings = {"method": method, "keep": keep, "rank": rank, "energy": energy,
                "seed": seed if method == "dare" else None}
    return _write(out, [source], metadata, settings, encode, progress)


def combine_ties(sources: list[Path], out: Path, keep: float, progress: bool = True) -> dict:
    """TIES-combine several vectors of one model into one (sparse) vector."""
    if len(sources) < 2:
        raise UsageError("ties combines two or more vectors")
    _check_fraction(keep, "--keep")
    metadatas = [read_metadata(s) for s in sources]
    names = set(metadatas[0]["tensors"])
    for source, other in zip(sources[1:], metadatas[1:]):
        if set(other["tensors"]) != names:
            raise VectorFileError(f"{source} and {sources[0]} hold different tensors; combine vectors of one model")
        for name in sorted(names):
            shapes = other["tensors"][name]["shape"], metadatas[0]["tensors"][name]["shape"]
            if shapes[0] != shapes[1]:
                raise VectorFileError(f"tensor {name}: shape {shapes[0]} in {source} but {shapes[1]} in {sources[0]}; "
                                      "combine vectors of one model")

    def encode(name: str, inputs: list[torch.Tensor]) -> Encoded:
        trimmed = []
        for v in inputs:
            kept = torch.zeros_like(v).view(-1)
            indices = magnitude(v, keep)
            kept[indices] = v.reshape(-1)[indices]
            trimmed.append(kept)
        stacked = torch.stack(trimmed)
        elected = torch.sign(stacked.sum(0))
        agree = (torch.sign(stacked) == elected) & (stacked != 0)
        count = agree.sum(0)
        merged = torch.where(agree, stacked, 0).sum(0) / count.clamp(min=1)
        indices = (count > 0).nonzero().squeeze(1)
        return encode_sparse(name, inputs[0], indices, merged[indices])

    settings = {"method": "ties", "keep": keep, "inputs": [str(s) for s in sources]}
    return _write(out, sources, metadatas[0], settings, encode, progress)


def _write(out: Path, sources: list[Path], metadata: dict, settings: dict,
           encode: Callable[[str, list[torch.Tensor]], Encoded], progress: bool) -> dict:
    """Encode every tensor of the `sources` (each read once) and write the new vector folder
    atomically; errors are measured against the source, or the mean of several."""
    from tqdm import tqdm

    result = {**{k: v for k, v in metadata.items() if k != "rounding"}, "compression": settings, "tensors": {},
              "derived_from": [str(s) for s in sources], "encoding": settings["method"]}

    def write(folder: str) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True)
        copy_model_files(sources[0], folder)
        stream = SafetensorsStream(folder / FILE)
        error_sq = norm_sq = 0.0
        for name in tqdm(list(metadata["tensors"]), desc=settings["method"], unit="tensor", disable=not progress):
            inputs = [dense_tensor(source, name) for source in sources]
            v = inputs[0] if len(inputs) == 1 else sum(inputs) / len(inputs)
            pieces, rebuilt, info = encode(name, inputs)
            for piece_name, tensor in pieces.items():
                stream.add(piece_name, tensor)
            error, norm = float((rebuilt - v).norm()), float(v.norm())
            result["tensors"][name] = {**info, "shape": list(v.shape), "norm": norm, "error_norm": error,
                                       "relative_error": error / norm if norm else 0.0,
                                       "bytes": sum(t.numel() * t.element_size() for t in pieces.values())}
            error_sq, norm_sq = error_sq + error**2, norm_sq + norm**2
        result["relative_error"] = math.sqrt(error_sq / norm_sq) if norm_sq else 0.0
        stream.finish(as_header(result))

    write_folder(out, write)
    return result


def _tensor_seed(seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little") >> 1


def _check_fraction(value: Optional[float], flag: str) -> None:
    if value is None or not 0 < value <= 1:
        raise UsageError(f"{flag} {value}: give a fraction in (0, 1], e.g. 0.1")
