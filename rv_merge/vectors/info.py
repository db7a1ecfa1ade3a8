"""`rv vector info`: where a vector's mass sits, and how two vectors relate.

Per layer and per module kind (q_proj, mlp.down_proj, input_layernorm, ...): the norm of the
vector, its norm relative to the target's weights there (how far the vector moves them), and,
against a second vector, the cosine similarity and the sign agreement (the share of entries,
non-zero in both, whose signs agree). Everything is accumulated in float64, one tensor at a
time.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from rv_merge.recipe.weight_files import load_weight, weight_files
from rv_merge.recipe.vector_folder import dense_tensor, read_metadata, size_on_disk
from rv_merge.vectors.rounding import RoundingLoss, describe_loss

LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.(.+?)(?:\.weight|\.bias)?$")


@dataclass
class Sums:
    """Running sums for one group of tensors."""

    norm_sq: float = 0.0
    target_sq: float = 0.0
    other_sq: float = 0.0
    dot: float = 0.0
    same_sign: int = 0
    both_nonzero: int = 0
    has_target: bool = False
    has_other: bool = False

    def row(self) -> dict:
        return {
            "norm": math.sqrt(self.norm_sq),
            "relative_to_target": math.sqrt(self.norm_sq / self.target_sq) if self.has_target and self.target_sq else None,
            "cosine": self.dot / math.sqrt(self.norm_sq * self.other_sq)
            if self.has_other and self.norm_sq and self.other_sq else None,
            "sign_agreement": self.same_sign / self.both_nonzero if self.has_other and self.both_nonzero else None,
        }


@dataclass
class VectorInfo:
    metadata: dict
    size_bytes: int
    layers: dict[str, dict] = field(default_factory=dict)
    modules: dict[str, dict] = field(default_factory=dict)
    total: dict = field(default_factory=dict)
    # with a target: per output dtype, the shares of the vector's non-zero entries, and of its
    # squared norm, that target + vector rounds away (the output equals the rounded target)
    rounding_loss: dict[str, dict] = field(default_factory=dict)


def group_of(name: str) -> tuple[str, str]:
    """(layer, module kind) of a weight name: ("3", "self_attn.q_proj"), ("-", "model.norm")."""
    match = LAYER.search(name)
    if match:
        return match.group(1), match.group(2)
    return "-", name.removesuffix(".weight")


def vector_info(vector: Path, other: Optional[Path] = None, target: Optional[Path] = None) -> VectorInfo:
    """Norms per layer and module; relative to `target`'s weights; cosine/sign vs `other`."""

    metadata = read_metadata(vector)
    other_names = set(read_metadata(other)["tensors"]) if other else set()
    target_files = weight_files(target) if target else {}
    layers, modules, total = defaultdict(Sums), defaultdict(Sums), Sums()
    rounding = RoundingLoss()
    for name in metadata["tensors"]:
        v = dense_tensor(vector, name)
        layer, module = group_of(name)
        update = {"norm_sq": float((v * v).sum())}
        if name in target_files:
            t = load_weight(target_files, name).double()
            update["target_sq"] = float((t * t).sum())
            if t.shape == v.shape:
                rounding.add(t, v)
        if name in other_names:
            w = dense_tensor(other, name)
            nonzero = (v != 0) & (w != 0)
            update.update(other_sq=float((w * w).sum()), dot=float((v * w).sum()),
                          same_sign=int(((v > 0) == (w > 0))[nonzero].sum()), both_nonzero=int(nonzero.sum()))
        for sums in (layers[layer], modules[module if layer != "-" else name], total):
            for key, value in update.items():
                setattr(sums, key, getattr(sums, key) + value)
            sums.has_target |= "target_sq" in update
            sums.has_other |= "dot" in update
    order = sorted(layers, key=lambda k: (k == "-", int(k) if k.isdigit() else 0))
    return VectorInfo(metadata, size_on_disk(vector), {k: layers[k].row() for k in order},
                      {k: modules[k].row() for k in sorted(modules)}, total.row(), rounding.shares())


def format_info(info: VectorInfo, vector: Path, other: Optional[Path]) -> str:
    meta = info.metadata
    lines = [f"vector {vector}: {meta['formula']}, encoding {meta['encoding']}, "
             f"{len(meta['tensors'])} tensors, {info.size_bytes / 2**20:.1f} MiB on disk"]
    if meta.get("compression"):
        settings = {k: v for k, v in meta["compression"].items() if v is not None}
        lines.append(f"compression {settings}: relative error {meta['relative_error']:.4f}")
    if meta.get("rounding"):
        lines.append(f"storage dtype {meta['dtype']}: relative rounding error {meta['rounding']['relative_error']:.3g}")
    if other:
        lines.append(f"compared with {other}")
    lines += [describe_loss(label, loss) for label, loss in info.rounding_loss.items()]
    for title, rows in (("layer", info.layers), ("module", info.modules), ("total", {"all": info.total})):
        lines += ["", f"{title:<28} {'norm':>10} {'rel.target':>10} {'cosine':>8} {'sign agr.':>9}"]
        lines += [f"{key:<28} {row['norm']:>10.4g} {_cell(row['relative_to_target'], '10.3g')} "
                  f"{_cell(row['cosine'], '8.4f')} {_cell(row['sign_agreement'], '9.3f')}" for key, row in rows.items()]
    return "\n".join(lines)


def plot_info(info: VectorInfo, path: Path, title: str) -> None:
    from rv_merge.report.plots import plot_per_layer

    rows = [{"layer": int(k), **row} for k, row in info.layers.items() if k != "-"]
    plot_per_layer(rows, [("norm", "norm of the vector"), ("relative_to_target", "norm / target weights' norm"),
                          ("cosine", "cosine with the other vector"), ("sign_agreement", "sign agreement")],
                   path, title)


def _cell(value: Optional[float], spec: str) -> str:
    width = int(spec.split(".")[0])
    return f"{value:{spec}}" if value is not None else f"{'-':>{width}}"
