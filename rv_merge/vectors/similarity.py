"""How alike two fine-tunes of one initialization are: their updates compared, per layer.

For models A and B fine-tuned from INIT, the updates are a = A - INIT and b = B - INIT. Per
decoder layer and overall: the cosine of b with a (1: the same direction) and the norm ratio
|b| / |a| (how far B moved, in units of A's move). Used to place the demo's sibling targets
relative to the SFT model. Accumulated in float64, one tensor at a time.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from rv_merge.errors import CompatibilityError
from rv_merge.recipe.weight_files import load_weight, weight_files
from rv_merge.vectors.info import group_of


def update_similarity(init: Path, reference: Path, other: Path) -> dict:
    """{"overall": {...}, "layers": {"0": {...}, ..., "-": {...}}}, each {"cosine", "norm_ratio",
    "reference_norm", "other_norm"}, for (other - init) against (reference - init)."""
    folders = {"init": init, "reference": reference, "other": other}
    files = {label: weight_files(folder) for label, folder in folders.items()}
    names = sorted(files["init"])
    for label in ("reference", "other"):
        if sorted(files[label]) != names:
            raise CompatibilityError(f"{folders[label]}: its tensors differ from {init}'s: not a fine-tune of it")
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])  # dot, |a|^2, |b|^2
    for name in names:
        start = load_weight(files["init"], name).double()
        a = load_weight(files["reference"], name).double() - start
        b = load_weight(files["other"], name).double() - start
        terms = (float((a * b).sum()), float((a * a).sum()), float((b * b).sum()))
        for key in (group_of(name)[0], "overall"):
            sums[key] = [total + term for total, term in zip(sums[key], terms)]
    rows = {key: _row(*values) for key, values in sums.items()}
    layers = sorted((k for k in rows if k != "overall"), key=lambda k: (k == "-", int(k) if k.isdigit() else 0))
    return {"overall": rows["overall"], "layers": {k: rows[k] for k in layers}}


def _row(dot: float, a_sq: float, b_sq: float) -> dict:
    return {"cosine": dot / math.sqrt(a_sq * b_sq) if a_sq and b_sq else None,
            "norm_ratio": math.sqrt(b_sq / a_sq) if a_sq else None,
            "reference_norm": math.sqrt(a_sq), "other_norm": math.sqrt(b_sq)}
