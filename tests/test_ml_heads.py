"""TagClassifier on synthetic embeddings: both project types, the Negative tag, C selection, saving."""

from __future__ import annotations

import io

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from opencustomvision.ml.heads import DEFAULT_C_GRID, TagClassifier, l2_normalise

pytestmark = pytest.mark.db_independent

DIM = 64


def clusters(n_per_class: int, n_classes: int, *, spread: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian clusters around random centres; the smaller ``spread``, the easier."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, DIM))
    labels = np.repeat(np.arange(n_classes), n_per_class)
    return centres[labels] + spread * rng.normal(size=(labels.size, DIM)), labels


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    return np.eye(n_classes)[labels]


def save_and_load(head: TagClassifier) -> TagClassifier:
    """Through an .npz file exactly as a service would store it, with a key of its own beside ours."""
    buffer = io.BytesIO()
    np.savez(buffer, backbone=np.array("efficientnet-lite0"), **head.to_arrays())
    with np.load(io.BytesIO(buffer.getvalue()), allow_pickle=False) as arrays:
        return TagClassifier.from_arrays({name: arrays[name] for name in arrays.files})


# --- Multiclass ------------------------------------------------------------------------------


def test_multiclass_learns_and_probabilities_sum_to_one():
    X, labels = clusters(60, 4, spread=1.0, seed=0)
    train, test = np.arange(240) % 2 == 0, np.arange(240) % 2 == 1
    tags = ["cat", "dog", "fox", "owl"]
    head = TagClassifier("Multiclass").fit(X[train], one_hot(labels[train], 4), tags)
    probabilities = head.predict_proba(X[test])
    labels_test = labels[test]
    assert probabilities.shape == (120, 4)
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    assert (probabilities.argmax(axis=1) == labels_test).mean() > 0.95
    assert head.tag_ids_ == tags
    assert head.coef_.shape == (4, DIM) and head.n_features_in_ == DIM


def test_columns_follow_tag_ids_whatever_their_order():
    X, labels = clusters(20, 3, spread=1.0, seed=2)
    Y = one_hot(labels, 3)
    # A fixed C: reordered labels stratify into different folds, which could pick another C.
    forward = TagClassifier("Multiclass", C_grid=[1.0]).fit(X, Y, ["a", "b", "c"])
    backward = TagClassifier("Multiclass", C_grid=[1.0]).fit(X, Y[:, ::-1], ["c", "b", "a"])
    assert np.allclose(forward.predict_proba(X), backward.predict_proba(X)[:, ::-1], atol=1e-3)


def test_multiclass_with_two_tags_is_a_proper_softmax():
    X, labels = clusters(20, 2, spread=1.5, seed=3)
    head = TagClassifier("Multiclass").fit(X, one_hot(labels, 2), ["yes", "no"])
    probabilities = head.predict_proba(X)
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    assert (probabilities.argmax(axis=1) == labels).mean() > 0.9


def test_multiclass_negative_tag_is_a_class_with_its_own_probability():
    X, labels = clusters(25, 3, spread=1.0, seed=4)  # class 2 plays the images of "none of these"
    tags = ["cat", "dog", "negative"]
    head = TagClassifier("Multiclass", negative_tag="negative").fit(X, one_hot(labels, 3), tags)
    probabilities = head.predict_proba(X)
    assert probabilities.shape == (75, 3)
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    assert probabilities[labels == 2, 2].mean() > 0.8
    assert save_and_load(head).negative_tag == "negative"


def test_multiclass_needs_one_tag_per_image_and_two_tags():
    X, labels = clusters(10, 2, spread=1.0, seed=5)
    Y = one_hot(labels, 2)
    both = Y.copy()
    both[3] = 1
    with pytest.raises(ValueError, match="exactly one tag per image.*image 3 has 2"):
        TagClassifier("Multiclass").fit(X, both, ["a", "b"])
    none = Y.copy()
    none[0] = 0
    with pytest.raises(ValueError, match="image 0 has 0"):
        TagClassifier("Multiclass").fit(X, none, ["a", "b"])
    with pytest.raises(ValueError, match="at least 2 tags"):
        TagClassifier("Multiclass").fit(X, np.ones((20, 1)), ["only"])
    with pytest.raises(ValueError, match="at least 2 tags"):
        TagClassifier("Multiclass").fit(X, np.c_[np.ones(20), np.zeros(20)], ["only", "unused"])


def test_multiclass_tag_without_training_images_gets_probability_zero():
    X, labels = clusters(15, 2, spread=1.0, seed=6)
    Y = np.c_[one_hot(labels, 2), np.zeros(30)]
    head = TagClassifier("Multiclass").fit(X, Y, ["a", "b", "unused"])
    probabilities = head.predict_proba(X)
    assert np.all(probabilities[:, 2] == 0.0)
    assert np.allclose(probabilities.sum(axis=1), 1.0)


# --- Multilabel ------------------------------------------------------------------------------


def two_attributes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images with two independent attributes, each a shift along its own direction."""
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(2, DIM))
    Y = rng.integers(0, 2, size=(n, 2))
    return Y @ directions * 1.5 + rng.normal(size=(n, DIM)) * 0.5 + rng.normal(size=DIM), Y


def test_multilabel_probabilities_are_independent():
    X, Y = two_attributes(120, seed=7)
    head = TagClassifier("Multilabel").fit(X[:80], Y[:80], ["red", "round"])
    probabilities = head.predict_proba(X[80:])
    assert ((probabilities > 0.5) == Y[80:]).mean() > 0.9
    sums = probabilities.sum(axis=1)
    assert sums.max() > 1.5 and sums.min() < 0.5  # both tags, and neither: not a softmax


def test_multilabel_negative_rows_and_negative_column():
    X, Y = two_attributes(90, seed=8)
    rng = np.random.default_rng(8)
    negatives = rng.normal(size=(30, DIM)) * 0.5 - 3.0  # somewhere else entirely
    X = np.vstack([X, negatives])
    Y = np.vstack([np.c_[Y, np.zeros(90)], np.c_[np.zeros((30, 2)), np.ones(30)]])
    Y[:90][Y[:90, :2].sum(axis=1) == 0, 2] = 1  # images with neither attribute are Negative, too
    head = TagClassifier("Multilabel", negative_tag="neg").fit(X, Y, ["red", "round", "neg"])
    probabilities = head.predict_proba(negatives)
    assert probabilities.shape == (30, 3)
    assert probabilities[:, 2].min() > 0.5 and probabilities[:, :2].max() < 0.5

    Y[0, :] = [1, 0, 1]
    with pytest.raises(ValueError, match="Negative tag together with another tag"):
        TagClassifier("Multilabel", negative_tag="neg").fit(X, Y, ["red", "round", "neg"])


def test_multilabel_constant_columns_get_constant_probabilities():
    X, Y = two_attributes(40, seed=9)
    Y = np.c_[Y, np.zeros(40), np.ones(40)]
    head = TagClassifier("Multilabel").fit(X, Y, ["red", "round", "never", "always"])
    probabilities = head.predict_proba(X + 10.0)
    assert np.all(probabilities[:, 2] == 0.0) and np.all(probabilities[:, 3] == 1.0)
    assert np.array_equal(save_and_load(head).predict_proba(X), head.predict_proba(X))
    everything_constant = TagClassifier("Multilabel").fit(X, np.c_[np.zeros(40), np.ones(40)], ["never", "always"])
    assert np.array_equal(everything_constant.predict_proba(X[:2]), [[0.0, 1.0], [0.0, 1.0]])


# --- the model is the textbook one -----------------------------------------------------------


@pytest.mark.parametrize("C", [0.3, 10.0])
def test_same_model_as_scikit_learn_on_normalised_features(C: float):
    """Projection onto the training rows' span (Multiclass) and the joint one-vs-rest solver
    (Multilabel) change the computation, not the model: scikit-learn, run to tight tolerance on
    the full L2-normalised features, agrees up to the solvers' stopping tolerance."""
    X, labels = clusters(15, 3, spread=3.0, seed=10)
    X_new = clusters(5, 3, spread=3.0, seed=11)[0]
    reference = LogisticRegression(C=C, tol=1e-10, max_iter=10_000)

    head = TagClassifier("Multiclass", C_grid=[C]).fit(X, one_hot(labels, 3), ["a", "b", "c"])
    expected = reference.fit(l2_normalise(X), labels).predict_proba(l2_normalise(X_new))
    assert np.allclose(head.predict_proba(X_new), expected, atol=5e-3)

    Y = np.c_[labels == 0, labels != 2].astype(int)
    head = TagClassifier("Multilabel", C_grid=[C]).fit(X, Y, ["a", "ab"])
    for column in range(2):
        expected = reference.fit(l2_normalise(X), Y[:, column]).predict_proba(l2_normalise(X_new))[:, 1]
        assert np.allclose(head.predict_proba(X_new)[:, column], expected, atol=5e-3)


def test_features_are_l2_normalised_inside():
    X, labels = clusters(15, 2, spread=1.0, seed=12)
    head = TagClassifier("Multiclass").fit(X, one_hot(labels, 2), ["a", "b"])
    assert np.allclose(head.predict_proba(X), head.predict_proba(X * 7.5))
    assert np.allclose(head.predict_proba(X[0]), head.predict_proba(X[:1]))  # one embedding works too


# --- choosing C ------------------------------------------------------------------------------


def test_C_is_chosen_by_cross_validation():
    X, labels = clusters(20, 2, spread=0.5, seed=13)
    easy = TagClassifier("Multiclass").fit(X, one_hot(labels, 2), ["a", "b"])
    shuffled = np.random.default_rng(13).permutation(labels)  # labels unrelated to the features
    noisy = TagClassifier("Multiclass").fit(X, one_hot(shuffled, 2), ["a", "b"])
    assert easy.C_ in DEFAULT_C_GRID and noisy.C_ in DEFAULT_C_GRID
    assert easy.C_ > noisy.C_
    for head in (easy, noisy):
        tried = ~np.isnan(head.cv_log_loss_)
        assert tried[0] and head.C_ == DEFAULT_C_GRID[int(np.nanargmin(head.cv_log_loss_))]
    # Noise: the best held-out log-loss is no better than guessing the prior.
    assert np.nanmin(noisy.cv_log_loss_) > 0.6
    assert np.nanmin(easy.cv_log_loss_) < 0.1


def test_too_few_images_to_cross_validate_uses_the_fallback_C():
    X, labels = clusters(1, 3, spread=1.0, seed=14)
    head = TagClassifier("Multiclass", C_grid=[1.0, 100.0]).fit(X, one_hot(labels, 3), ["a", "b", "c"])
    assert head.C_ == pytest.approx(10.0) and np.isnan(head.cv_log_loss_).all()
    fixed = TagClassifier("Multiclass", fallback_C=3.0).fit(X, one_hot(labels, 3), ["a", "b", "c"])
    assert fixed.C_ == 3.0
    assert np.allclose(head.predict_proba(X).sum(axis=1), 1.0)


# --- saving, determinism, misuse -------------------------------------------------------------


@pytest.mark.parametrize("mode", ["Multiclass", "Multilabel"])
def test_arrays_round_trip_gives_identical_predictions(mode: str):
    X, labels = clusters(12, 3, spread=1.0, seed=15)
    head = TagClassifier(mode, negative_tag="c").fit(X, one_hot(labels, 3), ["a", "b", "c"])
    loaded = save_and_load(head)
    assert np.array_equal(loaded.predict_proba(X), head.predict_proba(X))
    assert (loaded.mode, loaded.tag_ids_, loaded.C_, loaded.negative_tag) == (mode, ["a", "b", "c"], head.C_, "c")
    assert loaded.cv_folds == "auto" and save_and_load(TagClassifier(mode, cv_folds=4).fit(X, one_hot(labels, 3), ["a", "b", "c"])).cv_folds == 4
    assert all(not name.startswith("backbone") for name in head.to_arrays())
    assert all(array.dtype != object for array in head.to_arrays().values())


def test_fitting_is_deterministic():
    X, labels = clusters(15, 3, spread=2.0, seed=16)
    first, second = (TagClassifier("Multiclass").fit(X, one_hot(labels, 3), ["a", "b", "c"]) for _ in range(2))
    assert first.C_ == second.C_
    assert np.array_equal(first.coef_, second.coef_) and np.array_equal(first.intercept_, second.intercept_)


def test_misuse_is_explained():
    X, labels = clusters(10, 2, spread=1.0, seed=17)
    Y = one_hot(labels, 2)
    with pytest.raises(ValueError, match="mode"):
        TagClassifier("Multiple")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cv_folds"):
        TagClassifier("Multiclass", cv_folds=1)
    with pytest.raises(ValueError, match="C_grid"):
        TagClassifier("Multiclass", C_grid=[0.0, 1.0])
    with pytest.raises(RuntimeError, match="not fitted"):
        TagClassifier("Multiclass").predict_proba(X)
    with pytest.raises(ValueError, match="3 tag ids for 2 label columns"):
        TagClassifier("Multiclass").fit(X, Y, ["a", "b", "c"])
    with pytest.raises(ValueError, match="unique"):
        TagClassifier("Multiclass").fit(X, Y, ["a", "a"])
    with pytest.raises(ValueError, match="only 0 and 1"):
        TagClassifier("Multilabel").fit(X, Y * 2, ["a", "b"])
    head = TagClassifier("Multiclass").fit(X, Y, ["a", "b"])
    with pytest.raises(ValueError, match=f"\\(n, {DIM}\\)"):
        head.predict_proba(X[:, :10])
    arrays = head.to_arrays()
    arrays["head_format"] = np.array(99)
    with pytest.raises(ValueError, match="unsupported head format"):
        TagClassifier.from_arrays(arrays)
