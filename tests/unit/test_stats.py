"""The statistics behind the reports (issue 17), against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from compressor.core.stats import (
    UNSTABLE_SPREAD,
    macro_f1,
    mcnemar,
    paired_perplexity,
    perplexity_interval,
    ratio_verdict,
    wilson,
)


def test_wilson_matches_hand_computation():
    # 420 of 600 (70 %), z = 1.96: centre (0.7 + z²/1200) / (1 + z²/600), half-width z·sqrt(0.21/600 + z²/1440000) / (1 + z²/600)
    z = 1.959963984540054
    denom = 1 + z * z / 600
    centre = (0.7 + z * z / 1200) / denom
    half = z * math.sqrt(0.7 * 0.3 / 600 + z * z / (4 * 600 * 600)) / denom
    lo, hi = wilson(420, 600)
    assert lo == pytest.approx(centre - half, abs=1e-12) and hi == pytest.approx(centre + half, abs=1e-12)
    assert (round(lo, 4), round(hi, 4)) == (0.6622, 0.7353)  # by hand: centre 0.69873, half-width 0.03657
    assert wilson(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))  # never below 0, not a zero-width interval
    assert wilson(10, 10)[1] == 1.0 and wilson(10, 10)[0] == pytest.approx(0.7225, abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)


def test_one_sentence_of_600_is_inside_the_interval():
    # the quickstart case: 70.00 % vs 70.17 % on 600 rows: the second lies well inside the first's interval
    lo, hi = wilson(420, 600)
    assert lo < 421 / 600 < hi


def test_mcnemar_exact_against_hand_computed_values():
    # b = 3, c = 0: p = 2 · (1/2)^3 = 0.25
    ref = [True, True, True, True]
    other = [False, False, False, True]
    r = mcnemar(ref, other)
    assert (r.b, r.c) == (3, 0) and r.p_value == pytest.approx(0.25) and not r.significant
    # b = 10, c = 2: p = 2 · (C(12,0) + C(12,1) + C(12,2)) / 2^12 = 2 · 79 / 4096
    ref = [True] * 10 + [False] * 2 + [True] * 5
    other = [False] * 10 + [True] * 2 + [True] * 5
    r = mcnemar(ref, other)
    assert (r.b, r.c) == (10, 2) and r.p_value == pytest.approx(158 / 4096) and r.significant
    # one sentence changed of 600: no significant change
    a = np.ones(600, dtype=bool)
    b = a.copy()
    b[0] = False
    assert mcnemar(a, b).p_value == 1.0
    assert mcnemar(a, a).p_value == 1.0 and mcnemar(a, a).b == 0
    with pytest.raises(ValueError):
        mcnemar([True], [True, False])


def test_macro_f1_equals_sklearn_and_perplexity_interval_contains_the_estimate():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    assert macro_f1(y, p) == pytest.approx(f1_score(y, p, average="macro"))
    nll, tok = rng.uniform(100, 200, 50), np.full(50, 64)
    lo, hi = perplexity_interval(nll, tok)
    assert lo < math.exp(nll.sum() / tok.sum()) < hi
    same = paired_perplexity((nll, tok), (nll, tok))
    assert not same["significant"] and same["delta_ci"] == [0.0, 0.0]
    worse = paired_perplexity((nll, tok), (nll + 20, tok))
    assert worse["significant"] and worse["delta_ci"][0] > 0


@pytest.mark.parametrize(
    "ref, other, claimed, reason",
    [
        ([40.0, 41.0, 39.5, 40.2, 40.8], [10.0, 10.1, 9.9, 10.2, 10.0], True, ""),  # 4× in every round
        ([451.0, 37.5, 40.0, 300.0, 41.0], [5.0, 5.1, 4.9, 5.0, 5.2], False, "unstable"),  # a burst of load on some rounds
        ([10.0, 10.4, 9.8, 10.1], [10.1, 10.0, 10.0, 9.9], False, "overlaps 1×"),  # the same speed
        ([40.0], [10.0], False, "one round"),
        ([], [], False, "not measured"),
    ],
)
def test_instability_rule(ref, other, claimed, reason):
    v = ratio_verdict(ref, other)
    assert v.claimed is claimed and v.reason == reason
    if reason == "unstable":
        assert v.cell() == "unstable, not claimed" and v.spread > UNSTABLE_SPREAD
    if claimed:
        assert v.cell() == "4.02×" and v.spread <= UNSTABLE_SPREAD  # median 40.2 / median 10.0


def test_threshold_edges():
    # rounds 3.0× and 3.7×: 23 % apart (claimed); 3.0× and 3.9×: 30 % apart (withheld)
    assert ratio_verdict([30.0, 37.0], [10.0, 10.0]).claimed
    assert ratio_verdict([30.0, 39.0], [10.0, 10.0]).reason == "unstable"
    assert ratio_verdict([30.0, 39.0], [10.0, 10.0], threshold=0.5).claimed
