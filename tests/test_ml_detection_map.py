"""Average precision, precision and recall of detections (ours and COCO's), on hand-built cases."""

from __future__ import annotations

import numpy as np
import pytest

from opencustomvision.ml.detection.average_precision import (
    average_precision,
    evaluate_detections,
)
from opencustomvision.ml.detection.coco_evaluation import coco_evaluation

pytestmark = pytest.mark.db_independent

WHOLE = (0.0, 0.0, 1.0, 1.0)
LEFT_HALF = (0.0, 0.0, 0.5, 1.0)
RIGHT_HALF = (0.5, 0.0, 0.5, 1.0)
# IoU with LEFT_HALF: intersection 0.4, union 0.5 + 0.5 - 0.4 = 0.6, IoU 2/3.
LEFT_HALF_SHIFTED = (0.1, 0.0, 0.5, 1.0)


def test_average_precision_all_point_envelope_hand_computed() -> None:
    # Ranked TP, FP, TP, FP, TP over 3 ground truths: precisions 1, 1/2, 2/3, 2/4, 3/5 at
    # recalls 1/3, 1/3, 2/3, 2/3, 1. The envelope is 1 up to recall 1/3, then max(2/3, ...) = 2/3,
    # then 3/5: AP = 1/3 * 1 + 1/3 * 2/3 + 1/3 * 3/5.
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    hits = np.array([True, False, True, False, True])
    assert average_precision(scores, hits, 3) == pytest.approx(1 / 3 + 2 / 9 + 1 / 5)


def test_average_precision_ranks_by_score_not_input_order() -> None:
    assert average_precision(np.array([0.1, 0.9]), np.array([False, True]), 1) == pytest.approx(1.0)
    assert average_precision(np.array([0.9, 0.1]), np.array([False, True]), 1) == pytest.approx(0.5)


def test_average_precision_counts_missed_objects_and_needs_ground_truth() -> None:
    assert average_precision(np.array([0.9]), np.array([True]), 4) == pytest.approx(0.25)
    assert average_precision(np.array([]), np.array([], dtype=bool), 2) == 0.0
    with pytest.raises(ValueError, match="ground truth"):
        average_precision(np.array([0.9]), np.array([True]), 0)


def test_perfect_detections_score_one() -> None:
    truths = [[(0, LEFT_HALF), (1, RIGHT_HALF)], [(0, WHOLE)]]
    predictions = [[(0, 0.9, LEFT_HALF), (1, 0.8, RIGHT_HALF)], [(0, 0.7, WHOLE)]]
    metrics = evaluate_detections(predictions, truths, 2)
    assert metrics.mean_average_precision == pytest.approx(1.0)
    assert [(t.precision, t.recall, t.ground_truth_count) for t in metrics.per_tag] == [(1.0, 1.0, 2), (1.0, 1.0, 1)]


def test_duplicate_detection_of_one_object_is_a_false_positive() -> None:
    truths = [[(0, LEFT_HALF)]]
    predictions = [[(0, 0.9, LEFT_HALF), (0, 0.8, LEFT_HALF_SHIFTED)]]
    (tag,) = evaluate_detections(predictions, truths, 1).per_tag
    assert tag.precision == pytest.approx(0.5)  # 1 of the 2 reported detections is right
    assert tag.recall == pytest.approx(1.0)
    assert tag.average_precision == pytest.approx(1.0)  # the duplicate ranks after full recall


def test_iou_threshold_decides_a_match() -> None:
    truths = [[(0, LEFT_HALF)]]
    predictions = [[(0, 0.9, LEFT_HALF_SHIFTED)]]  # IoU 2/3
    assert evaluate_detections(predictions, truths, 1, iou_threshold=0.6).per_tag[0].average_precision == 1.0
    assert evaluate_detections(predictions, truths, 1, iou_threshold=0.7).per_tag[0].average_precision == 0.0


def test_a_box_matches_only_its_own_tag_and_image() -> None:
    truths = [[(0, LEFT_HALF)], []]
    # Right place, wrong tag; right tag, wrong image: neither finds the object.
    predictions = [[(1, 0.9, LEFT_HALF)], [(0, 0.8, LEFT_HALF)]]
    metrics = evaluate_detections(predictions, truths, 2)
    assert metrics.per_tag[0].average_precision == 0.0
    assert metrics.per_tag[0].precision == 0.0
    # Tag 1 has no ground truth: no AP, and it does not drag the mean down.
    assert metrics.per_tag[1].average_precision is None
    assert metrics.mean_average_precision == 0.0


def test_best_overlap_already_taken_makes_a_false_positive() -> None:
    # VOC matching: a detection is judged against its best-overlapping ground truth only.
    big = (0.0, 0.0, 1.0, 1.0)
    slightly_smaller = (0.0, 0.0, 1.0, 0.8)
    almost_big = (0.0, 0.0, 1.0, 0.95)  # IoU 0.95 with big, 0.8 / 0.95 with slightly_smaller
    truths = [[(0, big), (0, slightly_smaller)]]
    predictions = [[(0, 0.9, big), (0, 0.8, almost_big)]]
    (tag,) = evaluate_detections(predictions, truths, 1).per_tag
    assert tag.recall == pytest.approx(0.5)
    assert tag.average_precision == pytest.approx(0.5)


def test_precision_and_recall_use_only_detections_above_the_threshold() -> None:
    truths = [[(0, LEFT_HALF), (0, RIGHT_HALF)], [(0, WHOLE)]]
    predictions = [
        [(0, 0.9, LEFT_HALF), (0, 0.3, RIGHT_HALF)],  # hit above, hit below the threshold
        [(0, 0.6, LEFT_HALF)],  # IoU 0.5 with WHOLE: a hit at the default overlap of 0.5
    ]
    metrics = evaluate_detections(predictions, truths, 1, probability_threshold=0.5)
    (tag,) = metrics.per_tag
    assert (tag.precision, tag.recall) == (pytest.approx(1.0), pytest.approx(2 / 3))
    assert tag.average_precision == pytest.approx(1.0)  # all three found, every one ranked above any miss
    strict = evaluate_detections(predictions, truths, 1, iou_threshold=0.51, probability_threshold=0.5).per_tag[0]
    assert (strict.precision, strict.recall) == (pytest.approx(0.5), pytest.approx(1 / 3))
    # Nothing reported: precision is 0, as recall is.
    empty = evaluate_detections(predictions, truths, 1, probability_threshold=0.95).per_tag[0]
    assert (empty.precision, empty.recall) == (0.0, 0.0)


def test_mismatched_image_counts_are_rejected() -> None:
    with pytest.raises(ValueError, match="images"):
        evaluate_detections([[]], [[], []], 1)


# --- COCO's measures, from pycocotools ------------------------------------------------------------

SIZES = [(100, 100), (100, 100)]


def test_coco_counts_objects_by_size_in_pixels_and_scores_perfect_boxes_one() -> None:
    small, medium, large = (0.0, 0.0, 0.1, 0.1), (0.2, 0.2, 0.5, 0.5), WHOLE  # 10², 50², 100² px
    truths = [[(0, small), (0, medium)], [(1, large)]]
    found = [[(0, 0.9, small), (0, 0.8, medium)], [(1, 0.7, large)]]
    metrics = coco_evaluation(found, truths, SIZES, 2)
    assert metrics.objects_by_size == (1, 1, 1)
    assert metrics.map_50_95 == metrics.map_50 == metrics.map_75 == pytest.approx(1.0)
    assert metrics.map_small == metrics.map_medium == metrics.map_large == pytest.approx(1.0)


def test_coco_mean_over_iou_thresholds_rewards_tight_boxes() -> None:
    # IoU 50x31 / 50x50 = 0.62: a match at 0.5, 0.55 and 0.6 of COCO's ten thresholds 0.5..0.95.
    truths = [[(0, (0.0, 0.0, 0.5, 0.5))], []]
    found = [[(0, 0.9, (0.0, 0.0, 0.5, 0.31))], []]
    metrics = coco_evaluation(found, truths, SIZES, 1)
    assert metrics.map_50 == pytest.approx(1.0) and metrics.map_75 == pytest.approx(0.0)
    assert metrics.map_50_95 == pytest.approx(0.3)
    assert metrics.map_small is None and metrics.map_large is None  # no such objects to average


def test_coco_ap50_agrees_with_our_voc_ap_but_for_interpolation() -> None:
    # TP, FP, TP over two objects: VOC's all-point AP 1/2 + 1/2 x 2/3; COCO's 101 recall points give
    # (51 x 1 + 50 x 2/3) / 101.
    truths = [[(0, LEFT_HALF)], [(0, RIGHT_HALF)]]
    found = [[(0, 0.9, LEFT_HALF), (0, 0.8, RIGHT_HALF)], [(0, 0.7, RIGHT_HALF)]]
    voc = evaluate_detections(found, truths, 1).mean_average_precision
    coco = coco_evaluation(found, truths, SIZES, 1).map_50
    assert voc == pytest.approx(1 / 2 + 1 / 3)
    assert coco == pytest.approx((51 + 50 * 2 / 3) / 101)


def test_coco_without_detections_is_zero_and_needs_ground_truth() -> None:
    assert coco_evaluation([[], []], [[(0, WHOLE)], []], SIZES, 1).map_50_95 == 0.0
    with pytest.raises(ValueError):
        coco_evaluation([[], []], [[], []], SIZES, 1)
