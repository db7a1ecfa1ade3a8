"""Statistics over per-document scores: means, paired and unpaired deltas, 95% intervals.

A delta between two models on one task is paired over the same documents: mean of the
per-document differences, standard error sd(d) / sqrt(n) (sd with n - 1), and a 95% interval
of +-1.96 standard errors (normal approximation; weak below ~30 documents). A drop from a
task to its perturbed variant compares different prompts of the same documents, possibly
repeated, so it is treated as unpaired: sqrt(se1^2 + se2^2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.96
MAIN_METRICS = ("exact_match,flexible-extract", "acc,none", "exact_match,letter",
                "exact_match,get-answer", "pass@1,sandbox")


@dataclass(frozen=True)
class Estimate:
    value: float
    stderr: float | None
    n: int

    @property
    def interval(self) -> tuple[float, float] | None:
        if self.stderr is None:
            return None
        return self.value - Z95 * self.stderr, self.value + Z95 * self.stderr

    @property
    def excludes_zero(self) -> bool:
        low_high = self.interval
        return low_high is not None and (low_high[0] > 0 or low_high[1] < 0)


def mean_estimate(scores: list[float]) -> Estimate:
    n = len(scores)
    mean = sum(scores) / n
    if n < 2:
        return Estimate(mean, None, n)
    variance = sum((x - mean) ** 2 for x in scores) / (n - 1)
    return Estimate(mean, math.sqrt(variance / n), n)


def paired_delta(a: list[float], b: list[float]) -> Estimate:
    """b - a over the same documents."""
    if len(a) != len(b):
        raise ValueError(f"paired scores need the same documents: {len(a)} vs {len(b)}")
    return mean_estimate([y - x for x, y in zip(a, b)])


def unpaired_delta(a: Estimate, b: Estimate) -> Estimate:
    """b - a for independent estimates."""
    stderr = None if a.stderr is None or b.stderr is None else math.hypot(a.stderr, b.stderr)
    return Estimate(b.value - a.value, stderr, min(a.n, b.n))


def main_metric(keys) -> str:
    keys = list(keys)
    return next((m for m in MAIN_METRICS if m in keys), sorted(keys)[0])
