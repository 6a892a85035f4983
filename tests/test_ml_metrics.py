"""Custom Vision's metrics against hand-computed values, and the honesty of the evaluation."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

from opencustomvision.ml.evaluation import (
    cross_validated_predictions,
    evaluation_folds,
    ranked_predictions,
)
from opencustomvision.ml.heads import TagClassifier
from opencustomvision.ml.metrics import (
    average_precision,
    performance_report,
    precision_recall_at,
)

pytestmark = pytest.mark.db_independent

# --- average precision -----------------------------------------------------------------------


def test_ap_hand_computed():
    # Ranked: +, -, +, -. Precision at each hit: 1/1 (recall 0.5), 2/3 (recall 1.0).
    assert average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0])) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_ap_uses_the_precision_envelope():
    # Ranked: -, +, +. Precision at the hits: 1/2 (recall 0.5), 2/3 (recall 1.0). The envelope lifts
    # the first to 2/3 (better precision at higher recall): AP = 2/3. Without interpolation it
    # would be 0.5 * 1/2 + 0.5 * 2/3 = 0.5833 (scikit-learn's average_precision_score).
    assert average_precision(np.array([0.9, 0.8, 0.7]), np.array([0, 1, 1])) == pytest.approx(2 / 3)


def test_ap_perfect_and_worst_rankings():
    assert average_precision(np.array([0.9, 0.8, 0.3, 0.1]), np.array([1, 1, 0, 0])) == 1.0
    # The only positive ranked last of three: precision 1/3 at recall 1.
    assert average_precision(np.array([0.9, 0.8, 0.1]), np.array([0, 0, 1])) == pytest.approx(1 / 3)


def test_ap_ties_enter_together():
    # Both images share one threshold: precision 1/2 at recall 1, whatever their order.
    assert average_precision(np.array([0.5, 0.5]), np.array([1, 0])) == pytest.approx(0.5)
    assert average_precision(np.array([0.5, 0.5]), np.array([0, 1])) == pytest.approx(0.5)
    # 0.9: (P 0, R 0); 0.5 (two images): (P 1/3, R 1).
    assert average_precision(np.array([0.9, 0.5, 0.5]), np.array([0, 1, 0])) == pytest.approx(1 / 3)


def test_ap_without_positives_is_zero():
    assert average_precision(np.array([0.9, 0.1]), np.array([0, 0])) == 0.0
    assert average_precision(np.array([]), np.array([])) == 0.0


def _brute_force_ap(scores: np.ndarray, labels: np.ndarray) -> float:
    """Straight from the definition: thresholds at each distinct score, high to low."""
    points = []
    for threshold in sorted(set(scores.tolist()), reverse=True):
        predicted = scores >= threshold
        points.append(((predicted & (labels == 1)).sum() / labels.sum(), (labels[predicted] == 1).mean()))
    ap, previous_recall = 0.0, 0.0
    for recall, _ in points:
        ap += (recall - previous_recall) * max(p for r, p in points if r >= recall)
        previous_recall = recall
    return ap


def test_ap_matches_the_definition_on_random_data():
    rng = np.random.default_rng(0)
    for _ in range(20):
        labels = rng.integers(0, 2, 30)
        labels[0] = 1
        scores = np.round(rng.random(30), 1)  # rounding makes ties
        assert average_precision(scores, labels) == pytest.approx(_brute_force_ap(scores, labels))


# --- precision and recall at a threshold -----------------------------------------------------


def test_precision_recall_at_thresholds():
    scores, labels = np.array([0.9, 0.6, 0.4, 0.2]), np.array([1, 0, 1, 0])
    assert precision_recall_at(scores, labels, 0.5) == (0.5, 0.5)  # TP 1, FP 1, FN 1
    assert precision_recall_at(scores, labels, 0.6) == (0.5, 0.5)  # >= : 0.6 counts as predicted
    assert precision_recall_at(scores, labels, 0.3) == pytest.approx((2 / 3, 1.0))
    assert precision_recall_at(scores, labels, 0.0) == (0.5, 1.0)


def test_no_prediction_means_precision_zero_and_no_positive_recall_zero():
    assert precision_recall_at(np.array([0.4, 0.3]), np.array([1, 0]), 0.5) == (0.0, 0.0)
    assert precision_recall_at(np.array([0.7, 0.3]), np.array([0, 0]), 0.5) == (0.0, 0.0)


def test_micro_average_over_tags():
    probabilities = np.array([[0.9, 0.6], [0.8, 0.7], [0.2, 0.9], [0.6, 0.1], [0.1, 0.8]])
    labels = np.array([[1, 0], [1, 0], [1, 1], [0, 0], [0, 0]])
    # Tag A: TP 2 (rows 0, 1), FP 1 (row 3), FN 1 (row 2). Tag B: TP 1 (row 2), FP 3 (rows 0, 1, 4), FN 0.
    assert precision_recall_at(probabilities[:, 0], labels[:, 0]) == pytest.approx((2 / 3, 2 / 3))
    assert precision_recall_at(probabilities[:, 1], labels[:, 1]) == pytest.approx((1 / 4, 1.0))
    # Micro: TP 3 / (3 + FP 4) and 3 / (3 + FN 1); a macro average would give 0.458 and 0.833.
    assert precision_recall_at(probabilities, labels) == pytest.approx((3 / 7, 3 / 4))


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="same shape"):
        precision_recall_at(np.array([0.5, 0.5]), np.array([1]))
    with pytest.raises(ValueError, match="0 or 1"):
        average_precision(np.array([0.5, 0.5]), np.array([1, 2]))
    with pytest.raises(ValueError, match="finite"):
        average_precision(np.array([np.nan, 0.5]), np.array([1, 0]))


# --- the whole report ------------------------------------------------------------------------


def test_report_hand_computed_with_fold_spread():
    # Two folds of three images, tags A and B.
    probabilities = np.array([
        [0.9, 0.1], [0.7, 0.8], [0.2, 0.6],  # fold 0
        [0.8, 0.3], [0.6, 0.2], [0.3, 0.9],  # fold 1
    ])
    labels = np.array([
        [1, 0], [0, 1], [0, 1],
        [1, 0], [1, 0], [0, 1],
    ])
    folds = np.array([0, 0, 0, 1, 1, 1])
    report = performance_report(probabilities, labels, folds, ["A", "B"], threshold=0.5)
    a, b = report.per_tag
    # A. Fold 0: predicted rows 0, 1 -> TP 1, FP 1, FN 0. Fold 1: rows 3, 4 -> TP 2, FP 0, FN 0.
    assert (a.tag_id, a.precision, a.recall) == ("A", pytest.approx(3 / 4), 1.0)
    assert a.precision_std == pytest.approx(np.std([1 / 2, 1.0]))  # 0.25
    assert a.recall_std == 0.0
    # A's ranking: 0.9+, 0.8+, 0.7-, 0.6+, 0.3-, 0.2- -> hits at precision 1, 1, 3/4.
    assert a.average_precision == pytest.approx((1 + 1 + 3 / 4) / 3)
    # B. Fold 0: rows 1, 2 -> TP 2. Fold 1: row 5 -> TP 1. Never wrong, never missed.
    assert (b.precision, b.recall, b.precision_std, b.recall_std, b.average_precision) == (1.0, 1.0, 0.0, 0.0, 1.0)
    # Overall, micro: TP 6, FP 1, FN 0. Per fold: precision 3/4 and 3/3.
    assert report.precision == pytest.approx(6 / 7)
    assert report.recall == 1.0
    assert report.precision_std == pytest.approx(np.std([3 / 4, 1.0]))
    assert report.recall_std == 0.0
    assert report.average_precision == pytest.approx((a.average_precision + 1.0) / 2)
    assert report.threshold == 0.5


def test_report_threshold_moves_precision_and_recall_but_not_ap():
    probabilities = np.array([[0.9, 0.1], [0.6, 0.4], [0.4, 0.6], [0.2, 0.8]])
    labels = np.array([[1, 0], [0, 1], [1, 0], [0, 1]])
    folds = np.zeros(4, dtype=int)
    low, high = (performance_report(probabilities, labels, folds, ["A", "B"], threshold=t) for t in (0.3, 0.7))
    assert low.recall > high.recall
    assert low.average_precision == high.average_precision
    assert [tag.average_precision for tag in low.per_tag] == [tag.average_precision for tag in high.per_tag]


def test_multiclass_threshold_counts_only_the_top_tag_at_one_half():
    # Softmax rows: at 0.5 at most one tag per image passes, so micro precision is accuracy.
    probabilities = np.array([[0.7, 0.2, 0.1], [0.3, 0.6, 0.1], [0.5, 0.1, 0.4], [0.2, 0.3, 0.5]])
    labels = np.array([[1, 0, 0], [1, 0, 0], [0, 0, 1], [0, 0, 1]])
    report = performance_report(probabilities, labels, np.zeros(4, dtype=int), ["x", "y", "z"])
    assert report.precision == pytest.approx(2 / 4)  # rows 0 and 3 right, rows 1 and 2 wrong
    assert report.recall == pytest.approx(2 / 4)


def test_tags_without_images_do_not_drag_the_mean_ap_down():
    probabilities = np.array([[0.9, 0.2], [0.1, 0.3]])
    labels = np.array([[1, 0], [0, 0]])
    report = performance_report(probabilities, labels, np.array([0, 1]), ["seen", "unseen"])
    assert [tag.average_precision for tag in report.per_tag] == [1.0, 0.0]
    assert report.average_precision == 1.0
    # Spread needs two folds where the quantity is defined; "seen" has images in one fold only.
    assert report.per_tag[0].recall_std == 0.0


def test_report_of_nothing_is_all_zero():
    report = performance_report(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0, dtype=int), ["a", "b"])
    assert (report.precision, report.recall, report.average_precision) == (0.0, 0.0, 0.0)
    assert [tag.tag_id for tag in report.per_tag] == ["a", "b"]


def test_report_checks_shapes():
    with pytest.raises(ValueError, match="fold_index"):
        performance_report(np.zeros((2, 1)), np.zeros((2, 1)), np.zeros(3), ["a"])
    with pytest.raises(ValueError, match="n_images, 2"):
        performance_report(np.zeros((2, 1)), np.zeros((2, 1)), np.zeros(2), ["a", "b"])


# --- evaluation: out-of-sample by construction -----------------------------------------------


def _noise_problem(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(60, 128))
    Y = np.eye(2)[rng.permutation(np.repeat([0, 1], 30))]
    return X, Y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_evaluation_on_pure_noise_is_at_chance(seed: int):
    """Memorising noise is easy; cross-validated numbers must not be fooled by it."""
    X, Y = _noise_problem(seed)
    weak = TagClassifier("Multiclass", C_grid=[1e4]).fit(X, Y, ["a", "b"])
    assert (weak.predict_proba(X).argmax(axis=1) == Y.argmax(axis=1)).mean() == 1.0  # in-sample: perfect
    in_sample = performance_report(weak.predict_proba(X), Y, np.zeros(60, dtype=int), ["a", "b"])
    assert in_sample.average_precision == 1.0

    probabilities, folds = cross_validated_predictions(lambda: TagClassifier("Multiclass"), X, Y, ["a", "b"])
    report = performance_report(probabilities, Y, folds, ["a", "b"])
    assert report.precision == pytest.approx(0.5, abs=0.2)
    assert report.recall == pytest.approx(0.5, abs=0.2)
    assert report.average_precision < 0.75
    assert all(tag.average_precision < 0.75 for tag in report.per_tag)


class _RecordingHead(TagClassifier):
    """Remembers which images (by their first feature) every instance was trained on."""

    trained_on: ClassVar[list[set[float]]] = []

    def fit(self, X, Y, tag_ids):  # type: ignore[no-untyped-def]
        _RecordingHead.trained_on.append(set(np.asarray(X)[:, 0].tolist()))
        return super().fit(X, Y, tag_ids)


def test_every_image_is_predicted_by_a_head_trained_without_it():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 16))
    X[:, 0] = np.arange(40) / 1000  # an id per image, small enough not to matter
    Y = np.eye(2)[np.repeat([0, 1], 20)]
    _RecordingHead.trained_on = []
    probabilities, folds = cross_validated_predictions(lambda: _RecordingHead("Multiclass"), X, Y, ["a", "b"])
    assert len(_RecordingHead.trained_on) == 5 == len(set(folds.tolist()))
    for fold, trained_on in zip(range(5), _RecordingHead.trained_on):
        held_out = set(X[folds == fold, 0].tolist())
        assert held_out and not held_out & trained_on
        assert held_out | trained_on == set((np.arange(40) / 1000).tolist())
    assert np.allclose(probabilities.sum(axis=1), 1.0)


def test_folds_follow_the_smallest_tag_and_stratify():
    Y = np.eye(3)[np.r_[np.zeros(20, int), np.ones(10, int), np.full(3, 2)]]
    folds = evaluation_folds(Y, ["a", "b", "c"], "Multiclass")
    assert sorted(set(folds.tolist())) == [0, 1, 2]  # min(5, 3 images of "c")
    for fold in range(3):
        assert Y[folds == fold].sum(axis=0).min() >= 1  # every tag in every fold
    assert np.array_equal(folds, evaluation_folds(Y, ["a", "b", "c"], "Multiclass"))  # deterministic
    many = np.eye(2)[np.repeat([0, 1], 50)]
    assert len(set(evaluation_folds(many, ["a", "b"], "Multiclass").tolist())) == 5


def test_multilabel_folds_spread_the_rarest_tag():
    Y = np.zeros((30, 3))
    Y[:, 0] = 1
    Y[:4, 1] = 1
    Y[10:20, 2] = 1
    folds = evaluation_folds(Y, ["common", "rare", "some"], "Multilabel")
    assert sorted(set(folds.tolist())) == [0, 1, 2, 3]
    assert all(Y[folds == fold, 1].sum() == 1 for fold in range(4))


def test_too_few_images_to_cross_validate():
    Y = np.eye(2)[[0, 0, 0, 1]]
    with pytest.raises(ValueError, match="at least 2 images of every tag.*b \\(1\\)"):
        cross_validated_predictions(lambda: TagClassifier("Multiclass"), np.ones((4, 3)), Y, ["a", "b"])


def test_evaluation_refuses_labels_the_head_cannot_use():
    Y = np.array([[1, 1], [1, 0], [0, 1], [1, 0], [0, 1]])
    with pytest.raises(ValueError, match="exactly one tag per image"):
        cross_validated_predictions(lambda: TagClassifier("Multiclass"), np.ones((5, 3)), Y, ["a", "b"])


def test_ranked_predictions_most_probable_first():
    ranked = ranked_predictions(np.array([[0.1, 0.7, 0.2], [0.5, 0.5, 0.0]]), ["a", "b", "c"])
    assert ranked == [[("b", 0.7), ("c", 0.2), ("a", 0.1)], [("a", 0.5), ("b", 0.5), ("c", 0.0)]]
