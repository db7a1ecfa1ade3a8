"""Statistics over per-document scores: means, paired and unpaired deltas, 95% intervals.

Per-document scores are nearly always 0 or 1 (exact match, accuracy, pass@1), often on a
few hundred documents and sometimes at 0% or 100%, where normal-approximation intervals
collapse to width zero. So for binary scores:

- a single proportion gets a Wilson score interval (statsmodels' proportion_confint);
- a paired difference between two models on the same documents gets an exact McNemar test
  (a binomial test on the discordant documents, scipy) and Newcombe's hybrid score interval
  for paired proportions ("method 10": the two Wilson intervals, combined with a
  correction for the correlation between the paired scores; Newcombe, Statistics in
  Medicine 17:2635-2650, 1998), built on statsmodels' Wilson intervals;
- an unpaired difference (a task against its perturbed variant, different prompts of the
  same documents) gets Newcombe's hybrid score interval for independent proportions and a
  score test (statsmodels' confint_proportions_2indep, test_proportions_2indep).

Scores that are not all 0 or 1 get Student's t (scipy). A difference is marked as an effect
(`excludes_zero`) only where its test rejects at 5%.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint, test_proportions_2indep

LEVEL = 0.95
MAIN_METRICS = ("exact_match,flexible-extract", "acc,none", "exact_match,letter",
                "exact_match,get-answer", "pass@1,sandbox")


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float
    n: int
    method: str
    stderr: float | None = None  # sd / sqrt(n) of the scores (or differences), for reference
    p_value: float | None = None  # deltas: two-sided p of the test named in `method`
    binary: bool = False  # from scores that are all 0 or 1

    @property
    def interval(self) -> tuple[float, float]:
        return self.low, self.high

    @property
    def excludes_zero(self) -> bool:
        """An effect: the test rejects "no difference" at 5% (for a mean: the interval excludes 0)."""
        if self.p_value is not None:
            return self.p_value < 1 - LEVEL
        return self.low > 0 or self.high < 0

    def as_dict(self) -> dict:
        return {"value": self.value, "interval": [self.low, self.high], "level": LEVEL, "method": self.method,
                "stderr": self.stderr, "p_value": self.p_value, "n": self.n}


def mean_estimate(scores: list[float]) -> Estimate:
    n = len(scores)
    if n == 0:
        raise ValueError("no scores: nothing to estimate")
    mean = sum(scores) / n
    if _is_binary(scores):
        low, high = proportion_confint(round(mean * n), n, alpha=1 - LEVEL, method="wilson")
        low, high = min(float(low), mean), max(float(high), mean)  # at 0% or 100%: rounding in the last bit
        return Estimate(mean, low, high, n, "Wilson", math.sqrt(mean * (1 - mean) / n), binary=True)
    return _t_estimate(scores, "Student t")


def paired_delta(a: list[float], b: list[float]) -> Estimate:
    """b - a over the same documents."""
    if len(a) != len(b):
        raise ValueError(f"paired scores need the same documents: {len(a)} vs {len(b)}")
    if not a:
        raise ValueError("no documents to compare")
    differences = [y - x for x, y in zip(a, b)]
    if not (_is_binary(a) and _is_binary(b)):
        return _t_estimate(differences, "paired Student t", tested=True)
    n = len(a)
    gains = sum(1 for x, y in zip(a, b) if y > x)
    losses = sum(1 for x, y in zip(a, b) if x > y)
    p_value = stats.binomtest(gains, gains + losses, 0.5).pvalue if gains + losses else 1.0
    low, high = _newcombe_paired(a, b)
    mean = sum(differences) / n
    stderr = math.sqrt(sum((d - mean) ** 2 for d in differences) / (n - 1) / n) if n > 1 else None
    return Estimate(mean, low, high, n, "Newcombe paired score interval; exact McNemar test", stderr,
                    float(p_value), binary=True)


def unpaired_delta(a: Estimate, b: Estimate) -> Estimate:
    """b - a for independent estimates."""
    if a.binary and b.binary:
        count_a, count_b = round(a.value * a.n), round(b.value * b.n)
        low, high = confint_proportions_2indep(count_b, b.n, count_a, a.n, method="newcomb", compare="diff",
                                               alpha=1 - LEVEL)
        if count_a * b.n == count_b * a.n:
            p_value = 1.0  # equal proportions: the score statistic is 0 (and undefined at 0% or 100%)
        else:
            p_value = test_proportions_2indep(count_b, b.n, count_a, a.n, method="score",
                                              compare="diff").pvalue
        stderr = None if a.stderr is None or b.stderr is None else math.hypot(a.stderr, b.stderr)
        return Estimate(b.value - a.value, float(low), float(high), min(a.n, b.n),
                        "Newcombe hybrid score interval; score test", stderr, float(p_value), binary=True)
    if a.stderr is None or b.stderr is None:
        raise ValueError("an unpaired difference of non-binary scores needs two standard errors")
    stderr = math.hypot(a.stderr, b.stderr)
    z = stats.norm.ppf(0.5 + LEVEL / 2)
    value = b.value - a.value
    p_value = 2 * stats.norm.sf(abs(value) / stderr) if stderr else (1.0 if value == 0 else 0.0)
    return Estimate(value, value - z * stderr, value + z * stderr, min(a.n, b.n), "normal approximation",
                    stderr, float(p_value))


def main_metric(keys) -> str:
    keys = list(keys)
    return next((m for m in MAIN_METRICS if m in keys), sorted(keys)[0])


def _is_binary(scores: list[float]) -> bool:
    return all(s in (0, 1) for s in scores)


def _t_estimate(values: list[float], method: str, tested: bool = False) -> Estimate:
    """Student's t interval of the mean; with `tested`, also the p-value of "mean = 0"."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return Estimate(mean, -math.inf, math.inf, n, f"{method} (one value: no interval)")
    test = stats.ttest_1samp(values, 0.0)
    low, high = test.confidence_interval(LEVEL)
    stderr = float(stats.sem(values))
    p_value = float(test.pvalue) if stderr else (1.0 if mean == 0 else 0.0)
    low, high = (float(low), float(high)) if stderr else (mean, mean)
    return Estimate(mean, low, high, n, method, stderr, p_value if tested else None)


def _newcombe_paired(a: list[float], b: list[float]) -> tuple[float, float]:
    """Newcombe's method 10 for p_b - p_a with paired binary scores (see the module docstring)."""
    n = len(a)
    both = sum(1 for x, y in zip(a, b) if x and y)
    only_a = sum(1 for x, y in zip(a, b) if x and not y)
    only_b = sum(1 for x, y in zip(a, b) if y and not x)
    neither = n - both - only_a - only_b
    hits_a, hits_b = both + only_a, both + only_b
    p_a, p_b = hits_a / n, hits_b / n
    low_a, high_a = proportion_confint(hits_a, n, alpha=1 - LEVEL, method="wilson")
    low_b, high_b = proportion_confint(hits_b, n, alpha=1 - LEVEL, method="wilson")
    # phi: the correlation of the paired scores, shrunk towards 0 by n/2 (0 if a margin is empty)
    margins = hits_a * (n - hits_a) * hits_b * (n - hits_b)
    cross = both * neither - only_a * only_b
    shrunk = cross - n / 2 if cross > n / 2 else (cross if cross < 0 else 0.0)
    phi = shrunk / math.sqrt(margins) if margins else 0.0
    difference = p_b - p_a
    low = difference - math.sqrt(max(0.0, (p_b - low_b) ** 2 - 2 * phi * (p_b - low_b) * (high_a - p_a)
                                     + (high_a - p_a) ** 2))
    high = difference + math.sqrt(max(0.0, (high_b - p_b) ** 2 - 2 * phi * (high_b - p_b) * (p_a - low_a)
                                      + (p_a - low_a) ** 2))
    return max(-1.0, low), min(1.0, high)


def detectable_difference(n: int, discordance: float, power: float = 0.8) -> float | None:
    """The smallest paired difference (as a share of documents) that the exact McNemar test at
    5% finds with probability `power` on `n` documents, when a share `discordance` of them
    differ between the two models (at least the difference itself). None if even a
    difference of 1 is not found that often (too few documents)."""
    counts = np.arange(1, n + 1)
    thresholds = np.array([_rejection_count(m, 1 - LEVEL) for m in counts])
    for step in range(1, 201):
        difference = step / 200
        share = min(1.0, max(discordance, difference))
        gain_share = (share + difference) / 2 / share  # of the discordant documents, those gained
        found = np.sum(stats.binom.pmf(counts, n, share) * stats.binom.sf(thresholds - 1, counts, gain_share))
        if found >= power:
            return difference
    return None


@functools.lru_cache(maxsize=None)
def _rejection_count(discordant: int, alpha: float) -> int:
    """The fewest gains among `discordant` documents at which the two-sided exact McNemar
    test rejects at `alpha` (discordant + 1 if it never does)."""
    for gains in range((discordant + 1) // 2, discordant + 1):
        if stats.binomtest(gains, discordant, 0.5).pvalue < alpha:
            return gains
    return discordant + 1
