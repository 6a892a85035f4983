"""Classifier heads: tag probabilities from backbone embeddings, the Custom Vision way.

One estimator, ``TagClassifier``, covers both project types:

* **Multiclass** (each image has exactly one tag): a multinomial logistic regression (softmax,
  scikit-learn's ``LogisticRegression`` model, solved with SciPy's L-BFGS) over the tags, so the probabilities of an
  image sum to 1. The Negative tag is an ordinary class here, so its probability is reported like
  any other tag's.
* **Multilabel** (each image has any subset of the tags): one L2-regularised logistic regression
  per tag (one-vs-rest), independent probabilities: scikit-learn's objective, solved for all tags
  in one L-BFGS run (see ``_fit_one_vs_rest`` for why). A Negative image is an all-zero row for the
  regular tags; the Negative tag's own column (when it is passed) gets its own logistic
  regression, so the caller gets a probability for it too.

Labels are a 0/1 matrix ``Y`` of shape (n_images, n_tags) whose columns follow ``tag_ids``; the
Negative tag, when the project has one, is just one of those columns (named by ``negative_tag``).
``predict_proba`` returns the same columns in the same order.

Features are L2-normalised inside the head (in ``fit`` and in ``predict_proba``), so callers pass
raw embeddings: pretrained embeddings carry their meaning in their direction (they are compared by
cosine), and a fixed length keeps one grid of regularisation strengths meaningful whatever the
backbone's scale.

The regularisation strength C is chosen by stratified cross-validation on the training set
(lowest held-out log-loss over ``C_grid``), then the head is refitted on all of it. The learned
model is two plain arrays (``coef_``, ``intercept_``), so inference is a matrix product and a
softmax or sigmoid: it needs neither scikit-learn nor pickle (see ``to_arrays``/``from_arrays``).

Arrays in, arrays out: nothing here knows about databases or HTTP.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Final, Literal, get_args

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, logsumexp, softmax
from threadpoolctl import threadpool_limits

# scikit-learn is imported where a head is fitted, not here: a process that only predicts
# (from_arrays + predict_proba) then starts seconds faster and never loads it.

__all__ = [
    "DEFAULT_C_GRID",
    "MODES",
    "Mode",
    "TagClassifier",
    "count_folds",
    "import_solvers",
    "l2_normalise",
    "stratified_folds",
]

Mode = Literal["Multiclass", "Multilabel"]


def import_solvers() -> None:
    """Import scikit-learn's fold splitter now (most of a second of CPU): the service does it in the background
    at start, so that its first training does not pay for it; every other process imports it when a fit first
    needs it."""
    import sklearn.model_selection  # noqa: F401
MODES: Final[tuple[str, ...]] = get_args(Mode)

# Chosen by measurement on L2-normalised EfficientNet-Lite0 embeddings (random crops of 18 scenes,
# 5 to 30 images a tag, 0-40% of labels shuffled) and on pure noise. Cross-validation picked
# C = 300..1000 on clean labels, 3..30 with 20-40% wrong labels and the low end on noise; beyond
# 1e3 the held-out log-loss barely moved (0.04 -> 0.03) and fits got slower. Unit-length features
# need large weights, hence the grid's high end; half-decade steps are finer than the loss cares.
DEFAULT_C_GRID: Final[tuple[float, ...]] = tuple(float(c) for c in np.logspace(-1, 3, 9))

# Clipping for the held-out log-loss: a class missing from an inner training fold is predicted with
# probability 0, which must cost a lot but not infinity (every C would tie at infinity).
_LOG_LOSS_FLOOR: Final = 1e-15
_FORMAT_VERSION: Final = 1
# Grid steps past the best C before the search stops (see TagClassifier._select_C).
_PATIENCE: Final = 2
# cv_folds="auto": 5 folds, or 3 from this many training images on. Measured on EfficientNet-Lite0
# embeddings of real photos (flowers, ants/bees) and scene crops, 10 to 500 images, 26 draws: from
# 40 images on, 3 and 5 folds chose the same C in 19 of 20 draws (same held-out log-loss on
# average); 5 folds cost 1.6x the time (1.8 s instead of 1.0 s at 500 images). Below 40 images,
# 5 folds chose better in 3 of 6 draws.
_FEWER_FOLDS_FROM: Final = 100


def l2_normalise(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit Euclidean length (all-zero rows stay zero)."""
    X = np.asarray(X, dtype=np.float64)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0.0, norms, 1.0)


# --- how labelled images are split into folds (shared with ml.evaluation) --------------------


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")


def _stratification_key(Y: np.ndarray, mode: str) -> np.ndarray:
    """One label per image to stratify on.

    Multiclass: the image's tag. Multilabel: the image's rarest tag (so that the rarest tags spread
    over all folds), or an extra "no tag" value for images without any.
    """
    if mode == "Multiclass":
        return np.argmax(Y, axis=1)
    positives = Y.sum(axis=0)
    rarity = np.where(Y > 0, positives[np.newaxis, :], np.inf)
    return np.where(Y.any(axis=1), np.argmin(rarity, axis=1), Y.shape[1])


def count_folds(Y: np.ndarray, mode: Mode, max_folds: int) -> int:
    """How many stratified folds the labels support: at most ``max_folds``, at most the image
    count of the smallest tag (ignoring tags with no images), so every fold can hold each tag.

    May return 0 or 1, meaning "too few images to cross-validate"; callers decide what that means.
    """
    _check_mode(mode)
    Y = np.asarray(Y)
    positives = Y.sum(axis=0)
    present = positives[positives > 0]
    if present.size == 0:
        return 0
    return int(min(max_folds, present.min(), Y.shape[0]))


def stratified_folds(Y: np.ndarray, mode: Mode, n_folds: int, random_state: int) -> np.ndarray:
    """Fold index (0..n_folds-1) of each image, stratified by tag (see ``_stratification_key``)."""
    _check_mode(mode)
    if n_folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {n_folds}")
    Y = np.asarray(Y)
    key = _stratification_key(Y, mode)
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=random_state)
    fold_index = np.empty(Y.shape[0], dtype=np.int64)
    with warnings.catch_warnings():
        # Multilabel keys (rarest tag, "no tag") can have fewer members than folds; StratifiedKFold
        # then warns but still spreads them as evenly as it can, which is all we ask of it.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        for fold, (_, held_out) in enumerate(splitter.split(np.zeros((Y.shape[0], 1)), key)):
            fold_index[held_out] = fold
    return fold_index


# --- the estimator ---------------------------------------------------------------------------


class TagClassifier:
    """Tag probabilities from embeddings: softmax (Multiclass) or one-vs-rest (Multilabel).

    Hyperparameters (constructor):
        mode: "Multiclass" or "Multilabel".
        negative_tag: id of the project's Negative tag, or None. It must name one of the ``tag_ids``
            given to ``fit`` to have any effect; fit then checks that no image combines it with a
            regular tag.
        C_grid: inverse regularisation strengths to choose from (scikit-learn's C).
        cv_folds: most folds for choosing C, or "auto": 5, or 3 with 100 training images or more
            (the same choices of C, measured, in 40% less time). Fewer when the smallest tag has fewer
            images; with a single image in some tag no cross-validation is possible and
            ``fallback_C`` is used.
        fallback_C: C used when the training set is too small to cross-validate. Default: the
            grid's geometric middle.
        max_iter: L-BFGS iteration cap per fit.
        random_state: seeds the fold shuffling; everything else is deterministic.

    Learned attributes (after ``fit`` or ``from_arrays``):
        tag_ids_: the columns of ``predict_proba``, as given to ``fit``.
        C_: the chosen C.
        cv_log_loss_: mean held-out log-loss for each C of ``C_grid`` (NaN where C was not tried,
            all NaN when there were too few images to cross-validate).
        coef_ (n_tags, n_features), intercept_ (n_tags,): the linear model on L2-normalised
            features. A tag that cannot be learned (Multiclass: no training image; Multilabel: on
            none or all of the training images) gets zero weights and an infinite intercept, so
            its probability is exactly 0 (or 1 for a Multilabel tag on every image).
        n_features_in_: embedding width.
    """

    def __init__(
        self,
        mode: Mode,
        *,
        negative_tag: str | None = None,
        C_grid: Sequence[float] = DEFAULT_C_GRID,
        cv_folds: int | Literal["auto"] = "auto",
        fallback_C: float | None = None,
        max_iter: int = 1000,
        random_state: int = 0,
    ) -> None:
        _check_mode(mode)
        if len(C_grid) == 0 or any(not np.isfinite(c) or c <= 0 for c in C_grid):
            raise ValueError("C_grid must be a non-empty sequence of positive, finite numbers")
        if cv_folds != "auto" and (not isinstance(cv_folds, int) or cv_folds < 2):
            raise ValueError(f'cv_folds must be "auto" or an integer of at least 2, got {cv_folds!r}')
        self.mode: Mode = mode
        self.negative_tag = negative_tag
        self.C_grid = tuple(sorted(float(c) for c in C_grid))
        self.cv_folds = cv_folds
        self.fallback_C = fallback_C
        self.max_iter = max_iter
        self.random_state = random_state

    def __repr__(self) -> str:
        return f"TagClassifier({self.mode!r}, negative_tag={self.negative_tag!r}, cv_folds={self.cv_folds})"

    # -- training --

    def fit(self, X: np.ndarray, Y: np.ndarray, tag_ids: Sequence[str]) -> TagClassifier:
        """Learn from embeddings ``X`` (n, d) and 0/1 labels ``Y`` (n, len(tag_ids)).

        Multiclass: each row of Y has exactly one 1 (the Negative tag counts as a tag), and at least
        two tags have images. Multilabel: any rows, but the Negative tag never with another tag.
        """
        X, Y = self.check_training_data(X, Y, tag_ids)
        features = l2_normalise(X)
        # Tiny problems on few cores: multi-threaded BLAS only adds contention (measured 5-15x
        # slower with 2 threads on 2 cores than with 1). L-BFGS on separable data at large C creeps
        # towards infinite weights until max_iter; the iterate it stops at is a fine classifier, and
        # cross-validation judges it on held-out data anyway.
        with threadpool_limits(limits=1):
            # Fitting in the span of the training rows is exact (the L2 penalty pushes every weight
            # outside the span to zero and L-BFGS leaves the intercept unpenalised) and, with fewer
            # images than embedding dimensions, faster (measured 2-3x at 160 and 500 x 1280).
            basis = _row_space_basis(features)
            reduced = features @ basis
            self.cv_log_loss_, self.C_ = self._select_C(reduced, Y)
            coef, intercept = self._fit_linear(reduced, Y, self.C_, start=None)
        self.coef_ = coef @ basis.T
        self.intercept_ = intercept
        self.tag_ids_ = list(tag_ids)
        self.n_features_in_ = X.shape[1]
        return self

    def check_training_data(self, X: np.ndarray, Y: np.ndarray, tag_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """X as float64 and Y as int64, or ValueError saying why this head cannot learn from them."""
        X = np.asarray(X, dtype=np.float64)
        Y = np.asarray(Y)
        if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
            raise ValueError(f"X must be (n_images, n_features) and Y (n_images, n_tags); got {X.shape} and {Y.shape}")
        if X.shape[0] == 0:
            raise ValueError("cannot train on zero images")
        if not np.isfinite(X).all():
            raise ValueError("X contains NaN or infinite values")
        if len(tag_ids) != Y.shape[1]:
            raise ValueError(f"{len(tag_ids)} tag ids for {Y.shape[1]} label columns")
        if len(set(tag_ids)) != len(tag_ids):
            raise ValueError("tag ids must be unique")
        if not np.isin(Y, (0, 1)).all():
            raise ValueError("Y must contain only 0 and 1")
        Y = Y.astype(np.int64)
        if self.negative_tag is not None and self.negative_tag in tag_ids:
            negative = list(tag_ids).index(self.negative_tag)
            combined = (Y[:, negative] == 1) & (Y.sum(axis=1) > 1)
            if combined.any():
                raise ValueError(f"image {int(np.argmax(combined))} has the Negative tag together with another tag")
        if self.mode == "Multiclass":
            tags_per_image = Y.sum(axis=1)
            wrong = np.flatnonzero(tags_per_image != 1)
            if wrong.size:
                raise ValueError(
                    f"Multiclass needs exactly one tag per image (the Negative tag counts as one); "
                    f"image {int(wrong[0])} has {int(tags_per_image[wrong[0]])}"
                )
            if np.count_nonzero(Y.sum(axis=0)) < 2:
                raise ValueError("Multiclass needs images of at least 2 tags (the Negative tag counts as one)")
        return X, Y

    def _select_C(self, features: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, float]:
        """Mean held-out log-loss per C, and the C with the lowest one (the smaller C on ties)."""
        scores = np.full(len(self.C_grid), np.nan)
        max_folds = self.cv_folds
        if max_folds == "auto":
            max_folds = 5 if Y.shape[0] < _FEWER_FOLDS_FROM else 3
        n_folds = count_folds(Y, self.mode, max_folds)
        if n_folds < 2:
            fallback = self.fallback_C
            if fallback is None:
                fallback = float(np.sqrt(self.C_grid[0] * self.C_grid[-1]))
            return scores, fallback
        fold_index = stratified_folds(Y, self.mode, n_folds, self.random_state)
        previous: list[tuple[np.ndarray, np.ndarray] | None] = [None] * n_folds
        for position, C in enumerate(self.C_grid):
            loss = 0.0
            for fold in range(n_folds):
                train, held_out = fold_index != fold, fold_index == fold
                # Increasing C, each fit starting from the same fold's previous solution: the
                # regularisation path, far cheaper than cold starts.
                coef, intercept = self._fit_linear(features[train], Y[train], C, previous[fold])
                previous[fold] = coef, intercept
                loss += self._log_loss(self._link(features[held_out] @ coef.T + intercept), Y[held_out])
            scores[position] = loss / Y.shape[0]
            # Held-out log-loss is (near enough) unimodal in log C; once it has risen for
            # _PATIENCE grid steps past its best, larger C (the slowest fits) only overfit more.
            if position - int(np.nanargmin(scores)) >= _PATIENCE:
                break
        return scores, self.C_grid[int(np.nanargmin(scores))]

    def _fit_linear(
        self, features: np.ndarray, Y: np.ndarray, C: float, start: tuple[np.ndarray, np.ndarray] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """coef (n_tags, d) and intercept (n_tags,) at this C, starting from ``start`` if given."""
        if self.mode == "Multiclass":
            return _fit_softmax(features, np.argmax(Y, axis=1), Y.shape[1], C, start, self.max_iter)
        return _fit_one_vs_rest(features, Y, C, start, self.max_iter)

    def _log_loss(self, probabilities: np.ndarray, Y: np.ndarray) -> float:
        """Summed negative log-likelihood: categorical (Multiclass) or per-tag Bernoulli (Multilabel)."""
        clipped = np.clip(probabilities, _LOG_LOSS_FLOOR, 1.0 - _LOG_LOSS_FLOOR)
        if self.mode == "Multiclass":
            return float(-np.log(clipped[Y == 1]).sum())
        return float(-(Y * np.log(clipped) + (1 - Y) * np.log1p(-clipped)).sum())

    # -- inference --

    def _link(self, logits: np.ndarray) -> np.ndarray:
        if self.mode == "Multiclass":
            return softmax(logits, axis=1)
        return expit(logits)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probability of each tag (columns in ``tag_ids_`` order) for each embedding in ``X`` (n, d)."""
        if not hasattr(self, "coef_"):
            raise RuntimeError("this TagClassifier is not fitted yet; call fit or from_arrays first")
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1:
            X = X[np.newaxis, :]
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"expected embeddings of shape (n, {self.n_features_in_}), got {X.shape}")
        return self._link(l2_normalise(X) @ self.coef_.T + self.intercept_)

    # -- persistence without pickle --

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Everything needed to predict, as plain numeric and string arrays for ``np.savez``.

        Keys all start with ``head_`` so callers can store their own next to them; the result loads
        with ``np.load(..., allow_pickle=False)``.
        """
        if not hasattr(self, "coef_"):
            raise RuntimeError("this TagClassifier is not fitted yet")
        return {
            "head_format": np.array(_FORMAT_VERSION),
            "head_mode": np.array(self.mode),
            "head_negative_tag": np.array([] if self.negative_tag is None else [self.negative_tag], dtype=str),
            "head_tag_ids": np.array(self.tag_ids_, dtype=str),
            "head_coef": self.coef_,
            "head_intercept": self.intercept_,
            "head_C": np.array(self.C_),
            "head_C_grid": np.array(self.C_grid),
            "head_cv_log_loss": self.cv_log_loss_,
            "head_cv_folds": np.array(str(self.cv_folds)),
            "head_random_state": np.array(self.random_state),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> TagClassifier:
        """The classifier saved by ``to_arrays`` (extra keys are ignored)."""
        version = int(arrays["head_format"])
        if version != _FORMAT_VERSION:
            raise ValueError(f"unsupported head format {version} (this code reads {_FORMAT_VERSION})")
        negative = [str(tag) for tag in np.asarray(arrays["head_negative_tag"]).ravel()]
        head = cls(
            str(arrays["head_mode"]),  # type: ignore[arg-type]  # checked by __init__
            negative_tag=negative[0] if negative else None,
            C_grid=[float(c) for c in np.asarray(arrays["head_C_grid"]).ravel()],
            cv_folds=_parse_cv_folds(str(arrays["head_cv_folds"])),
            random_state=int(arrays["head_random_state"]),
        )
        coef = np.asarray(arrays["head_coef"], dtype=np.float64)
        intercept = np.asarray(arrays["head_intercept"], dtype=np.float64)
        tag_ids = [str(tag) for tag in np.asarray(arrays["head_tag_ids"]).ravel()]
        if coef.ndim != 2 or coef.shape[0] != len(tag_ids) or intercept.shape != (len(tag_ids),):
            raise ValueError(f"inconsistent head arrays: coef {coef.shape}, intercept {intercept.shape}, {len(tag_ids)} tags")
        head.coef_, head.intercept_, head.tag_ids_ = coef, intercept, tag_ids
        head.C_ = float(arrays["head_C"])
        head.cv_log_loss_ = np.asarray(arrays["head_cv_log_loss"], dtype=np.float64)
        head.n_features_in_ = coef.shape[1]
        return head


def _fit_softmax(
    features: np.ndarray, labels: np.ndarray, n_tags: int, C: float, start: tuple[np.ndarray, np.ndarray] | None, max_iter: int
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression laid out over all ``n_tags`` columns.

    scikit-learn's ``LogisticRegression(C=C, solver="lbfgs")`` model: with two classes one logit, that of
    ``classes[1]`` (softmax over (0, z) is sigmoid(z)); with more, one logit a class, all weights penalised
    alike. Solved here directly, as ``_fit_one_vs_rest`` is: scikit-learn's input checks cost more than the
    optimisation on these small problems (measured, quickstart warm training: 79 % of the job in
    ``LogisticRegression.fit``, half of it outside L-BFGS).
    Tags without a training image get zero weights and a -inf intercept: probability exactly 0.
    """
    coef = np.zeros((n_tags, features.shape[1]))
    intercept = np.full(n_tags, -np.inf)
    classes = np.unique(labels)
    if classes.size < 2:  # an inner training fold can lack tags; the one left is then certain
        intercept[classes] = 0.0
        return coef, intercept
    if classes.size == 2:
        positive = classes[1:]
        begin = None if start is None else (start[0][positive], start[1][positive])
        coef[positive], intercept[positive] = _fit_one_vs_rest(features, (labels == classes[1])[:, np.newaxis].astype(np.int64),
                                                               C, begin, max_iter)
        intercept[classes[0]] = 0.0
        return coef, intercept
    targets = (labels[:, np.newaxis] == classes[np.newaxis, :]).astype(np.float64)
    coef[classes], intercept[classes] = _fit_penalised(features, targets, _softmax_loss, C, start, classes, max_iter)
    return coef, intercept


def _fit_one_vs_rest(
    features: np.ndarray, Y: np.ndarray, C: float, start: tuple[np.ndarray, np.ndarray] | None, max_iter: int
) -> tuple[np.ndarray, np.ndarray]:
    """One L2-regularised binary logistic regression per column of ``Y``, all in one L-BFGS run.

    Per column this is exactly scikit-learn's ``LogisticRegression(C=C, solver="lbfgs")`` objective,
    mean log-loss + ||w||^2 / (2 C n) with the intercept unpenalised, and the same L-BFGS-B settings.
    The columns' objectives are independent, so minimising their sum minimises each; one run over
    all tags avoids scikit-learn's per-fit overhead, which dominates on these small problems
    (measured, 20 tags x 500 images with C chosen by 5-fold CV: 6.2 s with one LogisticRegression
    per tag, 1.9 s this way).
    Columns on no image or on every image get zero weights and a -inf / +inf intercept: a constant
    probability of exactly 0 / 1.
    """
    coef = np.zeros((Y.shape[1], features.shape[1]))
    intercept = np.where(Y.all(axis=0), np.inf, -np.inf)
    learnable = np.flatnonzero(Y.min(axis=0) != Y.max(axis=0))
    if learnable.size == 0:
        return coef, intercept
    targets = Y[:, learnable].astype(np.float64)
    coef[learnable], intercept[learnable] = _fit_penalised(features, targets, _logistic_loss, C, start, learnable, max_iter)
    return coef, intercept


def _softmax_loss(logits: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """Summed categorical log-loss of one-hot ``targets``, and its gradient with respect to the logits."""
    log_normaliser = logsumexp(logits, axis=1)
    return float(log_normaliser.sum() - (targets * logits).sum()), np.exp(logits - log_normaliser[:, np.newaxis]) - targets


def _logistic_loss(logits: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """Summed per-column binary log-loss of 0/1 ``targets``, and its gradient with respect to the logits."""
    # log(1 + e^z) - y z is the log-loss of a logit z; logaddexp keeps it finite for large |z|.
    return float((np.logaddexp(0.0, logits) - targets * logits).sum()), expit(logits) - targets


def _fit_penalised(
    features: np.ndarray,
    targets: np.ndarray,
    loss: Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]],
    C: float,
    start: tuple[np.ndarray, np.ndarray] | None,
    rows: np.ndarray,
    max_iter: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Weights (k, d) and intercepts (k,) of the logits of ``targets``' k columns: mean ``loss`` + ||w||^2 / (2 C n),
    intercepts unpenalised (scikit-learn's objective), from ``start``'s ``rows`` if given (a non-finite intercept
    starts at 0)."""
    n, width = features.shape
    penalty = 1.0 / (C * n)

    def objective(flat: np.ndarray) -> tuple[float, np.ndarray]:
        params = flat.reshape(targets.shape[1], width + 1)  # each row: weights, then intercept
        weights, biases = params[:, :width], params[:, width]
        value, residuals = loss(features @ weights.T + biases, targets)
        residuals = residuals / n
        gradient = np.hstack([residuals.T @ features + penalty * weights, residuals.sum(axis=0)[:, np.newaxis]])
        return value / n + 0.5 * penalty * float(np.sum(weights**2)), gradient.ravel()

    initial = np.zeros((targets.shape[1], width + 1))
    if start is not None:
        initial[:, :width] = start[0][rows]
        initial[:, width] = np.where(np.isfinite(start[1][rows]), start[1][rows], 0.0)
    params = _minimise(objective, initial, max_iter)
    return params[:, :width], params[:, width]


def _minimise(objective: Callable[[np.ndarray], tuple[float, np.ndarray]], initial: np.ndarray, max_iter: int) -> np.ndarray:
    """L-BFGS-B from ``initial`` with scikit-learn's settings for lbfgs (tol=1e-4), so results match its
    LogisticRegression's; the solution has ``initial``'s shape."""
    result = minimize(objective, initial.ravel(), jac=True, method="L-BFGS-B",
                      options={"maxiter": max_iter, "maxls": 50, "gtol": 1e-4, "ftol": 64 * np.finfo(float).eps})
    return result.x.reshape(initial.shape)


def _parse_cv_folds(text: str) -> int | Literal["auto"]:
    return "auto" if text == "auto" else int(text)


def _row_space_basis(features: np.ndarray) -> np.ndarray:
    """Orthonormal basis (d, r) of a space holding every row, r = min(n, d).

    Householder QR of the transposed rows: a few times cheaper than an SVD, and with repeated or
    collinear images it spans a little more than the rows, which keeps the fit exact.
    """
    n, d = features.shape
    if n >= d:
        return np.eye(d)
    basis, _ = np.linalg.qr(features.T, mode="reduced")
    return basis
