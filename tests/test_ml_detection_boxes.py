"""Box conversions, IoU, clipping, NMS and the FCOS distance coding, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from opencustomvision.ml.detection.boxes import (
    box_area,
    clip_boxes,
    decode_distances,
    encode_distances,
    ltwh_to_xyxy,
    non_maximum_suppression,
    pairwise_iou,
    per_class_non_maximum_suppression,
    xyxy_to_ltwh,
)

pytestmark = pytest.mark.db_independent


def test_ltwh_and_xyxy_convert_both_ways() -> None:
    ltwh = [[0.1, 0.2, 0.3, 0.4], [0.0, 0.0, 1.0, 1.0]]
    xyxy = ltwh_to_xyxy(ltwh)
    np.testing.assert_allclose(xyxy, [[0.1, 0.2, 0.4, 0.6], [0.0, 0.0, 1.0, 1.0]])
    np.testing.assert_allclose(xyxy_to_ltwh(xyxy), ltwh)


def test_empty_box_lists_keep_their_shape() -> None:
    assert ltwh_to_xyxy([]).shape == (0, 4)
    assert pairwise_iou([], [[0, 0, 1, 1]]).shape == (0, 1)
    assert non_maximum_suppression([], [], 0.5).shape == (0,)
    assert per_class_non_maximum_suppression([], [], [], 0.5).shape == (0,)


def test_malformed_boxes_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        ltwh_to_xyxy([[0, 0, 1]])
    with pytest.raises(ValueError, match="scores"):
        non_maximum_suppression([[0, 0, 1, 1]], [0.5, 0.4], 0.5)


def test_area_of_an_inverted_box_is_zero() -> None:
    np.testing.assert_allclose(box_area([[0, 0, 2, 3], [2, 2, 1, 5]]), [6.0, 0.0])


def test_pairwise_iou_hand_computed() -> None:
    a = [[0, 0, 2, 2], [0, 0, 1, 1]]
    b = [[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6], [0, 0, 2, 1]]
    # [0,0,2,2] vs [1,1,3,3]: intersection 1, union 4 + 4 - 1 = 7.
    # [0,0,1,1] vs [0,0,2,1]: intersection 1, union 1 + 2 - 1 = 2.
    expected = [
        [1 / 7, 1.0, 0.0, 2 / 4],
        [0.0, 1 / 4, 0.0, 1 / 2],
    ]
    np.testing.assert_allclose(pairwise_iou(a, b), expected)


def test_iou_of_touching_and_degenerate_boxes_is_zero() -> None:
    # Sharing an edge is no overlap; two zero-area boxes at one point are not a NaN match.
    np.testing.assert_array_equal(pairwise_iou([[0, 0, 1, 1]], [[1, 0, 2, 1]]), [[0.0]])
    np.testing.assert_array_equal(pairwise_iou([[1, 1, 1, 1]], [[1, 1, 1, 1]]), [[0.0]])


def test_clip_limits_each_coordinate_to_the_image() -> None:
    clipped = clip_boxes([[-0.2, 0.5, 1.3, 2.0]], width=1.0, height=1.5)
    np.testing.assert_allclose(clipped, [[0.0, 0.5, 1.0, 1.5]])


def test_nms_drops_only_overlaps_above_the_threshold() -> None:
    boxes = [
        [0, 0, 10, 10],  # 0: score 0.9, kept
        [1, 0, 11, 10],  # 1: IoU with 0 = 90 / 110 = 0.818, dropped
        [0, 5, 10, 15],  # 2: IoU with 0 = 50 / 150 = 0.333, kept at threshold 0.5
        [20, 20, 30, 30],  # 3: far away, kept
    ]
    scores = [0.9, 0.8, 0.7, 0.95]
    np.testing.assert_array_equal(non_maximum_suppression(boxes, scores, 0.5), [3, 0, 2])
    # At 0.3, box 2 (IoU 1/3 with box 0) goes too.
    np.testing.assert_array_equal(non_maximum_suppression(boxes, scores, 0.3), [3, 0])


def test_nms_is_greedy_a_suppressed_box_suppresses_nothing() -> None:
    # 1 overlaps 0 and 2 overlaps 1, but 0 and 2 do not overlap: after 1 goes, 2 stays.
    boxes = [[0, 0, 10, 10], [4, 0, 14, 10], [9, 0, 19, 10]]
    np.testing.assert_array_equal(non_maximum_suppression(boxes, [0.9, 0.8, 0.7], 0.4), [0, 2])


def test_nms_keeps_the_earlier_of_equal_scores() -> None:
    np.testing.assert_array_equal(non_maximum_suppression([[0, 0, 1, 1], [0, 0, 1, 1]], [0.5, 0.5], 0.5), [0])


def test_per_class_nms_never_suppresses_across_classes() -> None:
    boxes = [[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 9]]
    scores = [0.6, 0.9, 0.8]
    classes = [0, 1, 1]
    # Box 2 (IoU 0.9 with box 1, same class) goes; box 0 survives beside box 1 because its class differs.
    np.testing.assert_array_equal(per_class_non_maximum_suppression(boxes, scores, classes, 0.5), [1, 0])


@pytest.mark.parametrize("max_kept", [None, 200, 7])
def test_per_class_nms_keeps_what_a_pass_per_class_keeps(max_kept: int | None) -> None:
    rng = np.random.default_rng(3)
    corners = rng.uniform(0, 1, size=(1000, 2))
    boxes = np.hstack([corners, corners + rng.uniform(0.01, 0.5, size=(1000, 2))])
    scores, classes = rng.uniform(size=1000), rng.integers(0, 4, size=1000) * 5  # class ids need not be 0..k-1
    per_class = np.concatenate([members[non_maximum_suppression(boxes[members], scores[members], 0.5)]
                                for members in (np.flatnonzero(classes == c) for c in np.unique(classes))])
    expected = per_class[np.argsort(-scores[per_class], kind="stable")][:max_kept]
    np.testing.assert_array_equal(per_class_non_maximum_suppression(boxes, scores, classes, 0.5, max_kept), expected)


def test_distance_coding_hand_computed_and_inverted() -> None:
    points = np.array([[8.0, 8.0], [24.0, 40.0]])
    boxes = np.array([[0.0, 4.0, 16.0, 12.0], [10.0, 20.0, 50.0, 60.0]])
    strides = np.array([8.0, 16.0])
    distances = encode_distances(points, boxes, strides)
    np.testing.assert_allclose(distances, [[1.0, 0.5, 1.0, 0.5], [14 / 16, 20 / 16, 26 / 16, 20 / 16]])
    np.testing.assert_allclose(decode_distances(points, distances, strides), boxes)


def test_nms_max_kept_returns_the_first_survivors() -> None:
    boxes = [[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [40, 40, 50, 50]]
    scores = [0.9, 0.8, 0.7, 0.6]
    np.testing.assert_array_equal(non_maximum_suppression(boxes, scores, 0.5), [0, 2, 3])
    np.testing.assert_array_equal(non_maximum_suppression(boxes, scores, 0.5, max_kept=2), [0, 2])
    # Per class, the cap applies to the merged, score-sorted result.
    classes = [0, 0, 1, 0]
    np.testing.assert_array_equal(per_class_non_maximum_suppression(boxes, scores, classes, 0.5, max_kept=2), [0, 2])


def test_nms_agrees_with_the_definition_on_random_boxes() -> None:
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 100, size=(300, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(1, 30, size=(300, 2))], axis=1)
    scores = rng.uniform(size=300)
    expected: list[int] = []
    for index in np.argsort(-scores, kind="stable"):  # keep a box unless a kept one overlaps it too much
        if not expected or pairwise_iou(boxes[[index]], boxes[expected]).max() <= 0.4:
            expected.append(int(index))
    np.testing.assert_array_equal(non_maximum_suppression(boxes, scores, 0.4), expected)
