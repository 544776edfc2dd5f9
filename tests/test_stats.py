import numpy as np
import pytest

from qbench import stats


def rows_of(scores):
    return [{"score": float(s)} for s in scores]


def test_intervals_cover_the_true_mean_of_simulated_right_or_wrong_answers_at_about_95_percent():
    rng, truth, n, trials = np.random.default_rng(12), 0.7, 300, 200
    covered = sum(lo <= truth <= hi for lo, hi in (
        stats.interval(rows_of(rng.random(n) < truth), "exact_match", seed=t)["ci"] for t in range(trials)))
    assert 0.90 <= covered / trials <= 0.99


def test_pope_f1_interval_resamples_prediction_target_pairs():
    pairs = [("yes", "yes")] * 40 + [("no", "yes")] * 10 + [("yes", "no")] * 10 + [("no", "no")] * 40
    rows = [{"answer": p, "target": [t], "score": float(p == t)} for p, t in pairs]
    assert stats.pope_f1(rows) == pytest.approx(0.8)
    lo, hi = stats.interval(rows, "pope_f1_score")["ci"]
    assert lo < 0.8 < hi and hi - lo < 0.3


def test_paired_difference_and_exact_mcnemar():
    a, b = rows_of([1] * 30 + [0] * 70), rows_of([0] * 30 + [0] * 70)
    found = stats.paired_bootstrap(a, b, "exact_match")
    assert found["difference"] == pytest.approx(0.3) and found["ci"][0] > 0 and found["p"] < 0.01
    assert stats.mcnemar_exact(0, 0) == 1.0 and stats.mcnemar_exact(5, 5) == 1.0
    assert stats.mcnemar_exact(10, 0) == pytest.approx(2 / 1024)
