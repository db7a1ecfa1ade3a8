"""`rv vector extract`: write v = GRPO - SFT as a vector folder, one tensor at a time.

The difference is taken in float64. With `dtype="auto"` (the default) the file holds every
difference exactly, so applying it reproduces the pair's merge bit for bit: each tensor is
stored in the sources' dtype (if 16-bit), float32 or float64, whichever is smallest on disk
once the few values that dtype cannot hold exactly are added as a float64 residual
(`W.residual_indices`, `W.residual_values`). Fine-tuning differences are mostly exact in
float32 (Sterbenz: g - s is exact when s/2 <= g <= 2s), so this is about float32's size.
A narrower explicit `dtype` (float32, bfloat16, float16) rounds once to nearest, and the
metadata records the error that rounding introduced, per tensor and overall.
"""

from __future__ import annotations

import datetime
import math
from pathlib import Path
from typing import Optional

import torch

from rv_merge.atomic_files import write_folder
from rv_merge.errors import CompatibilityError, UsageError
from rv_merge.merge.arithmetic import round_once
from rv_merge.recipe.weight_files import load_weight, weight_files
from rv_merge.recipe.vector_folder import FILE, FORMAT, SafetensorsStream, as_header, copy_model_files

DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16,
          "float16": torch.float16}


def extract_vector(sft: Path, grpo: Path, out: Path, dtype: str = "auto",
                   sources: Optional[dict] = None, progress: bool = True) -> dict:
    """Write GRPO - SFT to the vector folder `out` (atomically); return its metadata.

    `sources` describes the two models in the metadata (references and fingerprints).
    """
    from tqdm import tqdm

    if dtype != "auto" and dtype not in DTYPES:
        raise UsageError(f"--dtype {dtype}: choose auto (exact) or one of {', '.join(DTYPES)}")
    sft_files, grpo_files = weight_files(sft), weight_files(grpo)
    if set(sft_files) != set(grpo_files):
        different = sorted(set(sft_files) ^ set(grpo_files))
        raise CompatibilityError(f"{sft} and {grpo} store different tensors ({', '.join(different[:3])} ...); "
                          "a vector needs two checkpoints of one model")
    metadata = {"format": FORMAT, "formula": "grpo - sft", "sources": sources or {},
                "dtype": dtype, "encoding": "dense", "compression": None, "tensors": {},
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}

    def write(folder: str) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True)
        copy_model_files(grpo, folder)
        stream = SafetensorsStream(folder / FILE)
        error_sq = norm_sq = 0.0
        for name in tqdm(sorted(sft_files), desc="extract", unit="tensor", disable=not progress):
            g, s = load_weight(grpo_files, name), load_weight(sft_files, name)
            if g.shape != s.shape:
                raise CompatibilityError(f"tensor {name}: shape {list(s.shape)} in SFT but {list(g.shape)} in GRPO")
            difference = g.double() - s.double()
            if not torch.isfinite(difference).all():
                raise CompatibilityError(f"tensor {name}: GRPO - SFT has NaN or Inf; a checkpoint is corrupt")
            pieces, info = _store(name, difference, g.dtype, dtype)
            info["float64_difference_inexact"] = _inexact_differences(g.double(), s.double(), difference)
            for piece_name, tensor in pieces.items():
                stream.add(piece_name, tensor)
            metadata["tensors"][name] = info
            error_sq += info["rounding"]["error_norm"] ** 2
            norm_sq += info["norm"] ** 2
        if norm_sq == 0:
            raise CompatibilityError(f"{sft} and {grpo} hold identical weights: GRPO - SFT is zero everywhere; "
                                     "extract from an SFT and a GRPO checkpoint that differ")
        metadata["rounding"] = {"relative_error": math.sqrt(error_sq / norm_sq) if norm_sq else 0.0,
                                "exact": error_sq == 0.0}
        stream.finish(as_header(metadata))

    write_folder(out, write)
    return metadata


def exact_encoding(name: str, values: torch.Tensor, narrowest: torch.dtype) -> tuple[dict[str, torch.Tensor], dict]:
    """Pieces that store float64 `values` exactly in the fewest bytes: a dense tensor in
    `narrowest`, float32 or float64, plus a float64 residual where that dtype rounded."""
    best = None
    for dtype in dict.fromkeys(d for d in (narrowest, torch.float32, torch.float64) if d.itemsize >= narrowest.itemsize):
        stored = round_once(values, dtype)
        wrong = (stored.double() != values).reshape(-1).nonzero().squeeze(1)
        index_dtype = torch.int32 if values.numel() < 2**31 else torch.int64
        size = stored.numel() * stored.element_size() + wrong.numel() * (index_dtype.itemsize + 8)
        if best is None or size < best[0]:
            pieces = {name: stored}
            if wrong.numel():
                pieces[f"{name}.residual_indices"] = wrong.to(index_dtype)
                pieces[f"{name}.residual_values"] = values.reshape(-1)[wrong]
            best = (size, pieces, {"dtype": str(dtype).removeprefix("torch."), "residual": int(wrong.numel())})
    return best[1], best[2]


def _store(name: str, difference: torch.Tensor, source_dtype: torch.dtype, dtype: str) -> tuple[dict, dict]:
    """The pieces to store and the metadata entry (shape, dtype, norm, rounding error)."""
    if dtype == "auto":
        pieces, info = exact_encoding(name, difference, min(source_dtype, torch.float32, key=lambda d: d.itemsize))
        error = torch.zeros(0, dtype=torch.float64)
    else:
        stored = round_once(difference, DTYPES[dtype])
        pieces, info = {name: stored}, {"dtype": dtype}
        error = stored.double() - difference
    norm = float(difference.norm())
    return pieces, {
        "encoding": "dense", "shape": list(difference.shape), **info, "norm": norm,
        "rounding": {"inexact": int((error != 0).sum()), "max_abs_error": float(error.abs().max()) if error.numel() else 0.0,
                     "error_norm": float(error.norm()), "relative_error": float(error.norm()) / norm if norm else 0.0},
    }


def _inexact_differences(g: torch.Tensor, s: torch.Tensor, difference: torch.Tensor) -> int:
    """How many float64 differences g - s were rounded (TwoSum error term non-zero).

    For float32 or 16-bit sources this is 0 unless two values differ by more than 2^29 in
    magnitude. Either way the merge kernel rounds the same float64 difference, so a vector
    applied with the same alpha gives the pair's result bit for bit.
    """
    virtual = difference - g
    error = (g - (difference - virtual)) + (-s - virtual)
    return int((error != 0).sum())
