"""Intervals and tests that hold at small n and at 0% or 100%, checked against independent
computations (closed-form Wilson, the binomial distribution by hand) and by simulation."""

from __future__ import annotations

import math
import random

import pytest

from rv_merge import statistics


def wilson_by_formula(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


@pytest.mark.parametrize("k, n", [(0, 20), (20, 20), (7, 20), (1, 1), (0, 1), (150, 400)])
def test_a_proportion_gets_the_wilson_interval_with_width_even_at_0_and_1(k, n):
    estimate = statistics.mean_estimate([1] * k + [0] * (n - k))
    low, high = wilson_by_formula(k, n)
    assert math.isclose(estimate.low, max(low, 0), abs_tol=1e-12)
    assert math.isclose(estimate.high, min(high, 1), abs_tol=1e-12)
    assert estimate.high - estimate.low > 0 and estimate.binary


def test_paired_delta_uses_the_exact_mcnemar_p_value():
    # 9 documents gained, 1 lost, 10 unchanged: two-sided binomial p = 2 * (C(10,9) + C(10,10)) / 2**10
    before = [0] * 9 + [1] + [1] * 5 + [0] * 5
    after = [1] * 9 + [0] + [1] * 5 + [0] * 5
    delta = statistics.paired_delta(before, after)
    assert math.isclose(delta.value, 8 / 20)
    assert math.isclose(delta.p_value, 2 * (10 + 1) / 2**10)
    assert delta.excludes_zero and delta.low > 0
    one_way = statistics.paired_delta([0] * 5, [1] * 4 + [0])  # 4 gained, 0 lost: p = 2 / 16, not shown
    assert math.isclose(one_way.p_value, 0.125) and not one_way.excludes_zero


@pytest.mark.parametrize("score", [0, 1])
def test_identical_models_at_the_floor_or_ceiling_get_an_interval_of_nonzero_width(score):
    delta = statistics.paired_delta([score] * 30, [score] * 30)
    assert delta.value == 0 and delta.p_value == 1.0 and not delta.excludes_zero
    assert delta.low < 0 < delta.high
    unpaired = statistics.unpaired_delta(statistics.mean_estimate([score] * 30),
                                         statistics.mean_estimate([score] * 30))
    assert unpaired.low < 0 < unpaired.high and unpaired.p_value == 1.0


def test_the_paired_interval_covers_the_true_difference_about_95_percent_of_the_time():
    """Simulation: paired 0/1 scores with correlated outcomes, n = 60, true difference 0.1."""
    rng = random.Random(3)
    probabilities = {(1, 1): 0.45, (0, 1): 0.15, (1, 0): 0.05, (0, 0): 0.35}  # p_after - p_before = 0.10
    cells, weights = list(probabilities), list(probabilities.values())
    covered, trials = 0, 1000
    for _ in range(trials):
        pairs = rng.choices(cells, weights, k=60)
        delta = statistics.paired_delta([p[0] for p in pairs], [p[1] for p in pairs])
        covered += delta.low <= 0.10 <= delta.high
    assert 0.925 <= covered / trials <= 0.99, covered / trials


def test_non_binary_scores_get_student_t_and_unequal_lengths_are_refused():
    estimate = statistics.mean_estimate([0.5, 0.25, 1.0, 0.75])
    assert estimate.method == "Student t" and estimate.low < 0.625 < estimate.high
    with pytest.raises(ValueError):
        statistics.paired_delta([1, 0], [1])
    with pytest.raises(ValueError):
        statistics.mean_estimate([])
    assert statistics.main_metric(["exact_match,strict-match", "exact_match,flexible-extract"]) == \
        "exact_match,flexible-extract"


def test_the_detectable_difference_follows_the_textbook_approximation_and_shrinks_with_n():
    # McNemar, large n: delta ~ (z_0.975 + z_0.8) * sqrt(discordance / n) = 2.80 * sqrt(0.25 / 400) = 0.070
    assert 0.065 <= statistics.detectable_difference(400, 0.25) <= 0.085
    assert statistics.detectable_difference(50, 0.2) > statistics.detectable_difference(200, 0.2)
    # no disagreement observed: 5 gains of 5 discordant give p = 0.0625 (not rejected), 6 of 6 give
    # p = 0.031, so at n = 20 a difference needs 6 gained documents or more: 0.3 and up
    assert statistics.detectable_difference(20, 0.0) >= 0.3
    assert statistics.detectable_difference(3, 0.0) is None
