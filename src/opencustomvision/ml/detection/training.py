"""Fitting the detection head on cached backbone features (torch, CPU).

The backbone stays frozen, so its features are computed once (``views.py``): for every training image,
the plain view plus augmented ones, kept in float16 with their assigned targets. A step then draws a
batch of cached views (each image once per pass over the data, one of its views at random) and trains
only the head on it, ~50x cheaper than running the backbone, at the price of a fixed pool of
augmentations instead of fresh ones every step.

The number of steps is fixed before training from the number of images (``settings.planned_steps``),
so the result does not depend on the machine's load. A warm-up of one pass, then a cosine decay to zero
over the planned steps. The time budget is a cap only: when the steps so far say the rest would not fit,
the remaining steps are cut to what fits (the decay still ends at zero) and the schedule is marked capped.
"""

from __future__ import annotations

import copy
import io
import logging
import math
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import onnx
import onnxscript.optimizer
import torch

from opencustomvision.ml.detection.features import FEATURE_NAMES, FeatureExtractor
from opencustomvision.ml.detection.head import ExportedQualityHead, QualityHead, quality_loss
from opencustomvision.ml.detection.model import DISTANCES_OUTPUT, SCORES_OUTPUT, DetectionModel, DetectorConfig
from opencustomvision.ml.detection.settings import Schedule, TrainingSettings
from opencustomvision.ml.detection.views import TrainingViews

__all__ = ["EpochReport", "export_head", "train_head"]

logger = logging.getLogger(__name__)


class _StepsBesideExports:
    """Detectors train side by side in threads (the evaluator beside the final one): their steps run together, but
    what changes torch's process-wide state runs alone. An ONNX export sets torch-wide state that every thread's
    operations then see (torch.onnx's in-export flag; torch.export, used before, pushed dispatch modes, and two
    exports at once failed: "Trying to pop empty mode stack"), and the heads' initial weights come from torch's one
    global generator."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._steps = 0
        self._alone = 0  # running alone (at most 1) or waiting to
        self._running_alone = False

    @contextmanager
    def step(self) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: self._alone == 0)  # those waiting to run alone go first
            self._steps += 1
        try:
            yield
        finally:
            with self._changed:
                self._steps -= 1
                self._changed.notify_all()

    @contextmanager
    def alone(self) -> Iterator[None]:
        with self._changed:
            self._alone += 1
            self._changed.wait_for(lambda: self._steps == 0 and not self._running_alone)
            self._running_alone = True
        try:
            yield
        finally:
            with self._changed:
                self._running_alone = False
                self._alone -= 1
                self._changed.notify_all()


_TORCH = _StepsBesideExports()
# The backbones' export opset, so that a merged export package (ml/export) is one opset throughout.
HEAD_OPSET = 20


@dataclass(frozen=True)
class EpochReport:
    epoch: int  # 1-based: passes over the training images
    planned_epochs: int
    loss: float  # mean total loss over the pass's steps
    loss_terms: dict[str, float]  # the loss's terms, means over the same steps
    seconds: float  # training time so far, callbacks excluded
    snapshot: Callable[[], DetectionModel]  # a prediction model of the head as it is when called


def train_head(
    views: TrainingViews,
    image_indices: Sequence[int],
    config: DetectorConfig,
    extractor: FeatureExtractor,
    settings: TrainingSettings,
    *,
    seed: int,
    steps: int,
    time_budget_seconds: float,
    on_epoch: Callable[[EpochReport], None] | None = None,
) -> tuple[QualityHead, Schedule]:
    """Train a head for ``config`` on the views of ``image_indices`` for ``steps`` steps (the cap permitting)."""
    started = time.perf_counter()
    paused = 0.0  # time spent in callbacks, which the budget does not pay for
    rng = np.random.default_rng(seed)
    views_of_image = [views.views_of(i) for i in image_indices]
    images = len(views_of_image)
    batch_size = min(settings.batch_size, images)
    steps_per_epoch = math.ceil(images / batch_size)
    warm_up = max(1, min(steps_per_epoch, steps // 4))

    with _TORCH.alone():  # the head's initial weights come from torch's one global generator
        torch.manual_seed(seed)
        head = QualityHead(extractor.channels, config.tag_count, settings.head_width, settings.head_depth)
        # NHWC: the convolutions of a step run ~2x faster on the CPU than in NCHW (measured on the head's shapes).
        head = head.to(memory_format=torch.channels_last)
    optimiser = torch.optim.AdamW(head.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    planned, capped = steps, False
    stream: list[int] = []  # views to train on, one pass over the images at a time
    step_seconds: list[float] = []
    totals: dict[str, float] = {}
    steps_in_epoch = 0
    epoch = 0
    step = 0
    head.train()
    while step < planned:
        step_started = time.perf_counter()
        while len(stream) < batch_size:
            stream += [int(rng.choice(views_of_image[i])) for i in rng.permutation(images)]
        batch, stream = np.sort(stream[:batch_size]), stream[batch_size:]
        _set_learning_rate(optimiser, settings.learning_rate, step, planned, warm_up)
        with _TORCH.step():
            features = [torch.from_numpy(level[batch]).float().contiguous(memory_format=torch.channels_last)
                        for level in views.features]
            loss, terms = quality_loss(head, *head(*features), torch.from_numpy(views.classes[batch]),
                                       torch.from_numpy(views.distances[batch]))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            for name, value in {"total": loss.item(), **terms}.items():
                totals[name] = totals.get(name, 0.0) + value
        step += 1
        steps_in_epoch += 1
        step_seconds.append(time.perf_counter() - step_started)

        elapsed = time.perf_counter() - started - paused
        typical = float(np.median(step_seconds[-50:]))
        if step < planned and elapsed + (planned - step) * typical > time_budget_seconds:
            # The cap bites: keep the steps that fit; the learning rate still decays to zero by the last.
            fitting = step + max(0, int((time_budget_seconds - elapsed) / max(typical, 1e-9)))
            if fitting < planned:
                planned, capped = fitting, True
        if steps_in_epoch == steps_per_epoch or step == planned:
            epoch += 1
            if on_epoch is not None:
                callback_started = time.perf_counter()
                means = {name: value / steps_in_epoch for name, value in totals.items()}
                total = means.pop("total")
                head.eval()
                on_epoch(EpochReport(epoch, math.ceil(planned / steps_per_epoch), total, means, elapsed,
                                     lambda: _snapshot(head, config, extractor)))
                head.train()
                paused += time.perf_counter() - callback_started
            totals, steps_in_epoch = {}, 0
    head.eval()
    if capped:
        logger.warning("the time budget of %.0f s cut the schedule from %d to %d steps", time_budget_seconds, steps, planned)
    return head, Schedule(steps, planned, capped, time.perf_counter() - started - paused)


def export_head(head: QualityHead, config: DetectorConfig, channels: tuple[int, ...]) -> bytes:
    """The head as ONNX bytes: inputs FEATURE_NAMES for one image, outputs scores and distances.

    Traced with torch's TorchScript-based exporter, not the torch.export one the backbones use: every training
    exports its heads (the evaluator's and the kept one), and for this small graph of convolutions tracing takes
    0.3 s where torch.export took 3 s (7 s the first time in a process), time the other detector's steps waited."""
    with _TORCH.alone(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the exporter says it is the legacy one, each time
        # Group norm's check of its input's size is traced as a constant: right, the head is exported for one size.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        examples = tuple(
            torch.zeros(1, c, config.input_size // s, config.input_size // s)
            for c, s in zip(channels, config.strides, strict=True)
        )
        exported = copy.deepcopy(head).to(memory_format=torch.contiguous_format)  # the export traces the layout it is given
        buffer = io.BytesIO()
        torch.onnx.export(ExportedQualityHead(exported).eval(), examples, buffer, dynamo=False, opset_version=HEAD_OPSET,
                          input_names=list(FEATURE_NAMES), output_names=[SCORES_OUTPUT, DISTANCES_OUTPUT])
    # The optimiser torch.export's path runs too: constants folded into initializers, which is where onnx2tf (the
    # TensorFlow export packages) reads a normalisation's constant inputs from.
    return onnxscript.optimizer.optimize(onnx.load_from_string(buffer.getvalue())).SerializeToString()


def _snapshot(head: QualityHead, config: DetectorConfig, extractor: FeatureExtractor) -> DetectionModel:
    return DetectionModel(config, export_head(head, config, extractor.channels), extractor)


def _set_learning_rate(optimiser: torch.optim.Optimizer, peak: float, step: int, planned: int, warm_up: int) -> None:
    # Linear warm-up (fresh heads on frozen features diverge at a cold full rate), then cosine to 0 at the last step.
    if step < warm_up:
        rate = peak * (0.1 + 0.9 * step / warm_up)
    else:
        rate = peak * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm_up) / max(planned - warm_up, 1))))
    for group in optimiser.param_groups:
        group["lr"] = rate
