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


def test_paired_difference_interval_and_p_value_at_the_bootstraps_resolution():
    a, b = rows_of([1] * 30 + [0] * 70), rows_of([0] * 30 + [0] * 70)
    found = stats.paired_bootstrap(a, b, "exact_match")
    assert found["difference"] == pytest.approx(0.3) and found["ci"][0] > 0
    assert found["p"] == pytest.approx(1 / stats.RESAMPLES) and stats.p_text(found["p"]) == "p < 0.0005"
    assert stats.p_text(0.0312) == "p = 0.031"


def shared_image_rows(images: int, per_image: int, seed: int = 3) -> list[dict]:
    """Right-or-wrong answers where questions about one image are right or wrong together (an easy or a hard
    image), as on VQAv2 or GQA: each image has its own chance of a right answer."""
    rng = np.random.default_rng(seed)
    rows = []
    for image in range(images):
        easy = rng.random() < 0.5
        for _ in range(per_image):
            rows.append({"score": float(rng.random() < (0.9 if easy else 0.1)), "image": f"img{image}"})
    return rows


def test_questions_sharing_an_image_widen_the_interval_and_lone_ones_match_the_per_question_bootstrap():
    rows = shared_image_rows(images=60, per_image=5)
    per_question = stats.bootstrap([{"score": row["score"]} for row in rows], stats.mean_score)
    by_image = stats.bootstrap(rows, stats.mean_score)
    assert (by_image[1] - by_image[0]) > 1.5 * (per_question[1] - per_question[0])
    assert stats.interval(rows, "exact_match")["clusters"] == 60
    lone = [{**row, "image": f"own{i}"} for i, row in enumerate(rows)]  # every question its own image
    assert stats.bootstrap(lone, stats.mean_score) == per_question
    paired = stats.paired_bootstrap(rows, [{**row, "score": 0.0} for row in rows], "exact_match")
    alone = stats.paired_bootstrap(lone, [{**row, "score": 0.0} for row in lone], "exact_match")
    assert paired["test"] == "paired bootstrap by image" and alone["test"] == "paired bootstrap"
    assert paired["ci"][1] - paired["ci"][0] > 1.5 * (alone["ci"][1] - alone["ci"][0])


def test_by_image_intervals_cover_the_truth_at_about_95_percent_where_per_question_ones_do_not():
    truth, trials = 0.5, 120
    covered = {"image": 0, "question": 0}
    for trial in range(trials):
        rows = shared_image_rows(images=40, per_image=6, seed=100 + trial)
        lo, hi = stats.bootstrap(rows, stats.mean_score, seed=trial)
        covered["image"] += lo <= truth <= hi
        lo, hi = stats.bootstrap([{"score": r["score"]} for r in rows], stats.mean_score, seed=trial)
        covered["question"] += lo <= truth <= hi
    assert covered["image"] / trials >= 0.88 and covered["question"] / trials < 0.8


def test_pope_reports_the_models_own_yes_ratio_beside_lmms_evals_ground_truth_one():
    rows = [{"answer": "Yes", "target": [truth], "score": float(truth == "yes")} for truth in ["yes", "no"] * 10]
    assert stats.statistic_of("pope_yes_ratio")(rows) == 0.5  # lmms-eval's: the ground truth's share of yes
    assert stats.statistic_of(stats.MODEL_YES_RATIO)(rows) == 1.0  # the model said yes every time
