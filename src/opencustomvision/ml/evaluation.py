"""Honest, out-of-sample evaluation: every image is predicted by a head that never saw it.

``cross_validated_predictions`` splits the training images into k stratified folds and, for each
fold, trains a fresh head on the other folds and predicts the held-out one. The head chooses its
own regularisation by an inner cross-validation inside ``fit``, so that choice, too, only ever sees
the training part of each outer fold (nested cross-validation): nothing about an evaluated image
leaks into the model that predicts it.

The resulting out-of-fold probabilities are what Custom Vision's evaluation endpoints report:
``ml.metrics.performance_report`` turns them into GetIterationPerformance at any threshold, and
``ranked_predictions`` lists, image by image, what was predicted for it (GetImagePerformances).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from opencustomvision.ml.heads import Mode, TagClassifier, count_folds, stratified_folds

__all__ = ["DEFAULT_MAX_FOLDS", "cross_validated_predictions", "evaluation_folds", "ranked_predictions"]

DEFAULT_MAX_FOLDS = 5


def evaluation_folds(
    Y: np.ndarray, tag_ids: Sequence[str], mode: Mode, *, max_folds: int = DEFAULT_MAX_FOLDS, random_state: int = 0
) -> np.ndarray:
    """Fold index (0..k-1) of each image, k = min(max_folds, images of the smallest tag), k >= 2.

    Stratified by tag (Multiclass: the image's tag; Multilabel: its rarest tag), so every fold sees
    every tag. Raises ValueError when some tag has a single image: it could not be both trained on
    and evaluated.
    """
    if max_folds < 2:
        raise ValueError(f"max_folds must be at least 2, got {max_folds}")
    Y = np.asarray(Y)
    if Y.ndim != 2 or Y.shape[1] != len(tag_ids):
        raise ValueError(f"Y must be (n_images, {len(tag_ids)}), got {Y.shape}")
    n_folds = count_folds(Y, mode, max_folds)
    if n_folds < 2:
        counts = Y.sum(axis=0)
        thin = [f"{tag_id} ({int(count)})" for tag_id, count in zip(tag_ids, counts) if 0 < count < 2]
        detail = f"; tags with fewer: {', '.join(thin)}" if thin else f" (there are {Y.shape[0]} images)"
        raise ValueError(f"cross-validation needs at least 2 images of every tag{detail}")
    return stratified_folds(Y, mode, n_folds, random_state)


def cross_validated_predictions(
    make_head: Callable[[], TagClassifier],
    X: np.ndarray,
    Y: np.ndarray,
    tag_ids: Sequence[str],
    *,
    max_folds: int = DEFAULT_MAX_FOLDS,
    random_state: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold probabilities (n_images, n_tags), columns in ``tag_ids`` order, and each image's
    fold (n_images,).

    ``make_head`` returns a fresh, unfitted head (its mode decides the stratification); one is
    trained per fold on the other folds' images. Raises ValueError for labels the head cannot learn
    from (checked once, up front) or too few images to cross-validate (see ``evaluation_folds``).
    """
    prototype = make_head()
    X, Y = prototype.check_training_data(X, Y, tag_ids)
    fold_index = evaluation_folds(Y, tag_ids, prototype.mode, max_folds=max_folds, random_state=random_state)
    probabilities = np.empty(Y.shape, dtype=np.float64)
    for fold in np.unique(fold_index):
        held_out = fold_index == fold
        head = make_head().fit(X[~held_out], Y[~held_out], tag_ids)
        probabilities[held_out] = head.predict_proba(X[held_out])
    return probabilities, fold_index


def ranked_predictions(probabilities: np.ndarray, tag_ids: Sequence[str]) -> list[list[tuple[str, float]]]:
    """For each image, (tag id, probability) for every tag, most probable first (ties: column order)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[1] != len(tag_ids):
        raise ValueError(f"expected (n_images, {len(tag_ids)}) probabilities, got {probabilities.shape}")
    order = np.argsort(-probabilities, axis=1, kind="stable")
    return [[(tag_ids[column], float(row[column])) for column in columns] for row, columns in zip(probabilities, order)]
