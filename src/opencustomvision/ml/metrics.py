"""Custom Vision's classification metrics (GetIterationPerformance), as pure functions.

Inputs are a probability matrix (n_images, n_tags), a 0/1 label matrix of the same shape and,
for the spreads, the cross-validation fold of each image. Definitions:

* An image is **predicted** to have a tag when the tag's probability is >= ``threshold``. The rule is
  the same for Multiclass and Multilabel projects (in Multiclass at most one tag can pass 0.5,
  the top one, which is Custom Vision's behaviour; lower thresholds can let several pass).
* **precision** = TP / (TP + FP) over predicted images, **recall** = TP / (TP + FN) over labelled
  images. A denominator of zero gives 0.0: a tag never predicted has precision 0 (it found
  nothing), a tag on no image has recall 0. Custom Vision reports numbers, never nulls.
* **average_precision** (per tag): area under the tag's precision-recall curve over all thresholds,
  "all points" interpolated as in PASCAL VOC 2010+ and COCO: each precision is replaced by the best
  precision at any higher recall (the envelope), then summed over the recall steps. Images with
  equal scores enter together (one threshold per distinct score). A tag on no image has AP 0.0.
* **overall precision / recall**: micro-averaged, i.e. TP, FP and FN summed over every (image, tag)
  pair before dividing, which is what Custom Vision shows for an iteration.
* **overall average_precision**: the mean of the per-tag APs (Custom Vision's "AP" for a
  classifier, a mean AP over tags), over the tags with at least one labelled image, so that a tag
  absent from the evaluated images cannot drag it down; 0.0 when no tag has one.
* **precision_std / recall_std**: population standard deviation (ddof=0) of the same quantity
  computed fold by fold. A fold where the quantity is undefined (no prediction of the tag, for
  precision; no image of it, for recall) says nothing about its spread and is left out; fewer than
  two defined folds give 0.0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "DEFAULT_THRESHOLD",
    "PerformanceReport",
    "TagPerformance",
    "average_precision",
    "performance_report",
    "precision_recall_at",
]

DEFAULT_THRESHOLD = 0.5


@dataclass
class TagPerformance:
    tag_id: str
    precision: float
    precision_std: float
    recall: float
    recall_std: float
    average_precision: float
    # Left for the caller to fill in (a display name); nothing here reads or sets it.
    name: str | None = None


@dataclass
class PerformanceReport:
    """Overall (micro-averaged) numbers, then one TagPerformance per tag in the input's column order."""

    precision: float
    precision_std: float
    recall: float
    recall_std: float
    average_precision: float
    threshold: float
    per_tag: list[TagPerformance] = field(default_factory=list)


def _ratio(numerator: float | np.integer, denominator: float | np.integer) -> float:
    return float(numerator / denominator) if denominator > 0 else 0.0


def _check_scores_labels(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.shape != labels.shape:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must have the same shape")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    return scores, labels.astype(bool)


def precision_recall_at(scores: np.ndarray, labels: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> tuple[float, float]:
    """(precision, recall) of predicting "positive" exactly when score >= threshold.

    Any shape: a 1-D array is one tag; a 2-D (images, tags) array gives the micro-average.
    """
    scores, labels = _check_scores_labels(scores, labels)
    true_positives, false_positives, false_negatives = (int(count) for count in _counts(scores >= threshold, labels))
    return (
        _ratio(true_positives, true_positives + false_positives),
        _ratio(true_positives, true_positives + false_negatives),
    )


def _counts(predicted: np.ndarray, labels: np.ndarray, axis: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(TP, FP, FN), summed over ``axis`` (everything when None)."""
    true_positives = np.sum(predicted & labels, axis=axis)
    false_positives = np.sum(predicted & ~labels, axis=axis)
    false_negatives = np.sum(~predicted & labels, axis=axis)
    return true_positives, false_positives, false_negatives


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """All-points interpolated area under the precision-recall curve of one tag (1-D inputs)."""
    scores, labels = _check_scores_labels(scores, labels)
    if scores.ndim != 1:
        raise ValueError(f"average_precision takes one tag's 1-D scores, got shape {scores.shape}")
    positives = int(labels.sum())
    if positives == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    ranked_scores, ranked_labels = scores[order], labels[order]
    true_positives = np.cumsum(ranked_labels)
    predicted = np.arange(1, scores.size + 1)
    # One operating point per distinct score: the last position of each run of equal scores.
    cut = np.r_[np.flatnonzero(np.diff(ranked_scores) != 0), scores.size - 1]
    precision = true_positives[cut] / predicted[cut]
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    # Recall steps are (new true positives) / positives; dividing once, at the end, keeps a
    # perfect ranking at exactly 1.0.
    new_hits = np.diff(true_positives[cut], prepend=0)
    return float(np.sum(new_hits * envelope) / positives)


def _fold_spread(numerators: np.ndarray, denominators: np.ndarray) -> float:
    """Population std of numerator/denominator over the folds where the denominator is positive."""
    defined = denominators > 0
    if np.count_nonzero(defined) < 2:
        return 0.0
    return float(np.std(numerators[defined] / denominators[defined]))


def performance_report(
    probabilities: np.ndarray,
    labels: np.ndarray,
    fold_index: np.ndarray,
    tag_ids: Sequence[str],
    *,
    threshold: float = DEFAULT_THRESHOLD,
) -> PerformanceReport:
    """The whole GetIterationPerformance report from out-of-fold predictions.

    probabilities, labels: (n_images, n_tags), columns in ``tag_ids`` order.
    fold_index: (n_images,) the cross-validation fold each image was predicted in (any integers).
    """
    probabilities, labels = _check_scores_labels(probabilities, labels)
    fold_index = np.asarray(fold_index)
    if probabilities.ndim != 2 or probabilities.shape[1] != len(tag_ids):
        raise ValueError(f"expected (n_images, {len(tag_ids)}) matrices, got {probabilities.shape}")
    if fold_index.shape != (probabilities.shape[0],):
        raise ValueError(f"fold_index must have shape ({probabilities.shape[0]},), got {fold_index.shape}")

    predicted = probabilities >= threshold
    folds = np.unique(fold_index)
    # TP, FP and FN per fold and tag, (n_folds, n_tags) each: every number below is a sum of these.
    fold_tp, fold_fp, fold_fn = (np.zeros((folds.size, len(tag_ids)), dtype=np.int64) for _ in range(3))
    for row, fold in enumerate(folds):
        members = fold_index == fold
        fold_tp[row], fold_fp[row], fold_fn[row] = _counts(predicted[members], labels[members], axis=0)
    tp, fp, fn = fold_tp.sum(axis=0), fold_fp.sum(axis=0), fold_fn.sum(axis=0)

    per_tag = []
    for column, tag_id in enumerate(tag_ids):
        per_tag.append(
            TagPerformance(
                tag_id=tag_id,
                precision=_ratio(tp[column], tp[column] + fp[column]),
                precision_std=_fold_spread(fold_tp[:, column], fold_tp[:, column] + fold_fp[:, column]),
                recall=_ratio(tp[column], tp[column] + fn[column]),
                recall_std=_fold_spread(fold_tp[:, column], fold_tp[:, column] + fold_fn[:, column]),
                average_precision=average_precision(probabilities[:, column], labels[:, column]),
            )
        )
    # Mean AP over the tags that have at least one image to find.
    has_images = labels.sum(axis=0) > 0
    found = [tag.average_precision for column, tag in enumerate(per_tag) if has_images[column]]
    mean_ap = float(np.mean(found)) if found else 0.0
    micro_tp, micro_fp, micro_fn = fold_tp.sum(axis=1), fold_fp.sum(axis=1), fold_fn.sum(axis=1)
    return PerformanceReport(
        precision=_ratio(tp.sum(), tp.sum() + fp.sum()),
        precision_std=_fold_spread(micro_tp, micro_tp + micro_fp),
        recall=_ratio(tp.sum(), tp.sum() + fn.sum()),
        recall_std=_fold_spread(micro_tp, micro_tp + micro_fn),
        average_precision=mean_ap,
        threshold=float(threshold),
        per_tag=per_tag,
    )
