"""Advanced training: fine-tune the top of a pretrained backbone on a project's images (torch, CPU).

Regular training keeps the backbone frozen and fits a linear ``TagClassifier`` on cached embeddings.
Advanced training spends more compute for better features. It starts from that same head (so the
regularisation chosen by cross-validation, the Negative tag and Multiclass / Multilabel semantics
carry over), then trains the backbone's last stages, its final 1x1 convolution and the head
together on augmented copies of the training images (random crops, mirror, colour jitter).
Batch-norm statistics stay frozen: a few dozen images cannot estimate them.

The result has the interfaces Regular training produces: an ONNX backbone with the same inputs and
outputs as ``ml.backbone`` (``embedding``, ``logits``), opened by ``Backbone.from_onnx_bytes``, and a
``TagClassifier`` over its embeddings. Serving, caching embeddings and metrics then need nothing new.

Honest metrics cost more here than for a linear head: ``cross_validated_fine_tune`` fine-tunes once
per fold (fewer folds than Regular) and once more on every image, and shares the time budget
between those runs.

The training job runs all of this in a child process (``python -m opencustomvision.ml.finetune
WORKDIR``, see ``run_in_child``), so torch and its memory never stay in the server.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageEnhance

from opencustomvision.imaging.decode import load_rgb
from opencustomvision.ml.backbone import (
    INPUT_NAME,
    OUTPUT_NAMES,
    backbone_metadata,
    build_torch_model,
    default_threads,
    export_module,
    get_spec,
)
from opencustomvision.ml.child import exit_with_parent, run_module
from opencustomvision.ml.evaluation import evaluation_folds
from opencustomvision.ml.heads import Mode, TagClassifier
from opencustomvision.ml.preprocess import INPUT_MEAN, INPUT_STD, preprocess_batch, resized_short_side

if TYPE_CHECKING:
    import torch

__all__ = ["FineTuneResult", "FineTuneSettings", "TunedClassifier", "cross_validated_fine_tune", "fine_tune", "run_in_child"]

# The head sees L2-normalised embeddings times this scale: the TagClassifier's weights divided by it
# are of a size Adam's step (the learning rate) moves sensibly.
_HEAD_SCALE = 16.0
# Initial head logits are clipped here: a tag the linear head could not learn gets an infinite
# intercept (probability exactly 0 or 1), which gradients cannot pass through.
_LOGIT_CLIP = 30.0


@dataclass(frozen=True)
class FineTuneSettings:
    """How hard to train. Defaults measured with ``bench/accuracy.py`` (docs/models.md)."""

    epochs: int = 12
    batch_size: int = 16
    unfrozen_stages: int = 2  # the backbone's last stages (blocks of one width) that learn
    backbone_lr: float = 3e-4
    head_lr: float = 1e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1  # Multiclass only
    min_crop_area: float = 0.35  # random crops keep 35-100 % of the image's area
    max_folds: int = 3  # for the out-of-fold predictions that metrics are computed from
    seed: int = 0


@dataclass
class TunedClassifier:
    """A fine-tuned backbone (a torch module with ``embed``) and the head over its embeddings."""

    backbone: str
    module: torch.nn.Module
    head: TagClassifier
    epochs_run: int

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        return model_embeddings(self.module, images, get_spec(self.backbone).input_size)

    def predict_proba(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.head.predict_proba(self.embed(images))

    def export(self, path: Path) -> Path:
        """The fine-tuned backbone as ONNX, with the interface (and checks) of ``ml.backbone``'s exports."""
        import torch

        spec = get_spec(self.backbone)
        export_module(
            self.module.eval(),
            (torch.zeros(2, 3, spec.input_size, spec.input_size),),
            path,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            metadata=backbone_metadata(spec.name),
        )
        return Path(path)


def augmented(image: Image.Image, size: int, rng: np.random.Generator, min_crop_area: float) -> np.ndarray:
    """One random training view of ``image`` as a (3, size, size) float32 array.

    A random crop of 35-100 % of the area with an aspect ratio between 3:4 and 4:3, resized to the
    input; mirrored half of the time; brightness, contrast and saturation each scaled by 0.8-1.2.
    """
    width, height = image.size
    crop_w, crop_h = min(width, height), min(width, height)  # fallback: the largest centred square
    for _ in range(10):
        area = rng.uniform(min_crop_area, 1.0) * width * height
        ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        w, h = int(round(np.sqrt(area * ratio))), int(round(np.sqrt(area / ratio)))
        if 0 < w <= width and 0 < h <= height:
            crop_w, crop_h = w, h
            break
    left, top = rng.integers(0, width - crop_w + 1), rng.integers(0, height - crop_h + 1)
    view = image.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + crop_w, top + crop_h))
    if rng.random() < 0.5:
        view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        view = enhancer(view).enhance(rng.uniform(0.8, 1.2))
    pixels = (np.asarray(view, dtype=np.float32) - INPUT_MEAN) / INPUT_STD
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def fine_tune(
    backbone: str,
    images: Sequence[Image.Image],
    Y: np.ndarray,
    tag_ids: Sequence[str],
    mode: Mode,
    *,
    negative_tag: str | None = None,
    settings: FineTuneSettings = FineTuneSettings(),
    deadline: float | None = None,
) -> TunedClassifier:
    """Fine-tune ``backbone`` on RGB ``images`` labelled by the 0/1 matrix ``Y`` (columns: ``tag_ids``).

    ``deadline`` (a ``time.monotonic()`` value) ends training early, between two steps; the model
    then is whatever the steps so far made of it (at worst the frozen backbone and its linear head).
    """
    import torch
    import torch.nn.functional as F

    spec = get_spec(backbone)
    model = build_torch_model(backbone)  # eval mode: batch norm uses its pretrained statistics
    Y = np.asarray(Y, dtype=np.float32)
    head = TagClassifier(mode, negative_tag=negative_tag, random_state=settings.seed)
    head.fit(model_embeddings(model, images, spec.input_size), Y, tag_ids)

    start = _first_unfrozen_block(model.net, settings.unfrozen_stages)
    tail = _unfrozen_tail(model.net, settings.unfrozen_stages)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for module in tail:
        for parameter in module.parameters():
            parameter.requires_grad_(True)
    classifier = torch.nn.Linear(spec.embedding_dim, len(tag_ids))
    with torch.no_grad():
        classifier.weight.copy_(torch.from_numpy(head.coef_ / _HEAD_SCALE))
        classifier.bias.copy_(torch.from_numpy(np.clip(head.intercept_, -_LOGIT_CLIP, _LOGIT_CLIP)))

    steps_per_epoch = -(-len(images) // settings.batch_size)
    optimiser = torch.optim.AdamW(
        [{"params": [p for m in tail for p in m.parameters()], "lr": settings.backbone_lr},
         {"params": classifier.parameters(), "lr": settings.head_lr}],
        weight_decay=settings.weight_decay,
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=[settings.backbone_lr, settings.head_lr], total_steps=settings.epochs * steps_per_epoch, pct_start=0.15
    )
    targets = torch.from_numpy(Y)
    classes = targets.argmax(dim=1)
    rng = np.random.default_rng(settings.seed)
    torch.manual_seed(settings.seed)
    epochs_run = 0
    for _ in range(settings.epochs):
        if deadline is not None and time.monotonic() >= deadline:
            break
        order = rng.permutation(len(images))
        for start in range(0, len(order), settings.batch_size):
            chosen = order[start:start + settings.batch_size]
            batch = torch.from_numpy(np.stack([augmented(images[i], spec.input_size, rng, settings.min_crop_area) for i in chosen]))
            logits = classifier(F.normalize(_embedding(model, batch, start), dim=1) * _HEAD_SCALE)
            if mode == "Multiclass":
                loss = F.cross_entropy(logits, classes[chosen], label_smoothing=settings.label_smoothing)
            else:
                loss = F.binary_cross_entropy_with_logits(logits, targets[chosen])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
        epochs_run += 1

    for parameter in model.parameters():
        parameter.requires_grad_(False)
    head.coef_ = classifier.weight.detach().double().numpy() * _HEAD_SCALE
    head.intercept_ = classifier.bias.detach().double().numpy()
    return TunedClassifier(backbone, model.eval(), head, epochs_run)


def model_embeddings(model: torch.nn.Module, images: Sequence[Image.Image], size: int, batch_size: int = 32) -> np.ndarray:
    """(n, embedding_dim) embeddings of the centre crops of ``images`` by a ``build_torch_model`` module."""
    import torch

    out = [np.empty((0, model.net._fc.in_features), np.float32)]
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            out.append(model(torch.from_numpy(preprocess_batch(images[start:start + batch_size], size)))[0].numpy())
    return np.concatenate(out)


def _first_unfrozen_block(net: torch.nn.Module, stages: int) -> int:
    """Index of the first block of the last ``stages`` stages (runs of blocks with one output width)."""
    widths = [block._project_conv.out_channels for block in net._blocks]
    first = len(widths)
    for _ in range(stages):
        first -= 1
        while first > 0 and widths[first - 1] == widths[first]:
            first -= 1
    return first


def _unfrozen_tail(net: torch.nn.Module, stages: int) -> list[torch.nn.Module]:
    """The blocks of the last ``stages`` stages, then the head conv."""
    return [*net._blocks[_first_unfrozen_block(net, stages):], net._conv_head, net._bn1]


def _embedding(model: torch.nn.Module, batch: torch.Tensor, start: int) -> torch.Tensor:
    """The pooled embedding, computing the blocks before ``start`` without keeping what backpropagation needs."""
    import torch

    net = model.net
    blocks = list(net._blocks)
    with torch.no_grad():
        x = net._swish(net._bn0(net._conv_stem(batch)))
        for block in blocks[:start]:
            x = block(x)
    for block in blocks[start:]:
        x = block(x)
    return net._swish(net._bn1(net._conv_head(x))).mean(dim=(2, 3))


@dataclass
class FineTuneResult:
    final: TunedClassifier
    probabilities: np.ndarray  # out-of-fold, (n_images, n_tags)
    folds: np.ndarray  # (n_images,)
    seconds: float


def cross_validated_fine_tune(
    backbone: str,
    images: Sequence[Image.Image],
    Y: np.ndarray,
    tag_ids: Sequence[str],
    mode: Mode,
    *,
    negative_tag: str | None = None,
    settings: FineTuneSettings = FineTuneSettings(),
    budget_seconds: float,
) -> FineTuneResult:
    """Out-of-fold probabilities from one fine-tuning per fold, then the model fine-tuned on everything.

    Each of the k + 1 runs gets an equal share of ``budget_seconds``.
    """
    started = time.monotonic()
    Y = np.asarray(Y, dtype=np.float32)
    folds = evaluation_folds(Y, tag_ids, mode, max_folds=settings.max_folds, random_state=settings.seed)
    share = budget_seconds / (len(np.unique(folds)) + 1)
    probabilities = np.empty(Y.shape, dtype=np.float64)
    for fold in np.unique(folds):
        held_out = np.flatnonzero(folds == fold)
        kept = np.flatnonzero(folds != fold)
        tuned = fine_tune(backbone, [images[i] for i in kept], Y[kept], tag_ids, mode, negative_tag=negative_tag,
                          settings=settings, deadline=time.monotonic() + share)
        probabilities[held_out] = tuned.predict_proba([images[i] for i in held_out])
    final = fine_tune(backbone, images, Y, tag_ids, mode, negative_tag=negative_tag, settings=settings,
                      deadline=time.monotonic() + share)
    return FineTuneResult(final, probabilities, folds, time.monotonic() - started)


# --- the child process --------------------------------------------------------------------------------
# WORKDIR/request.json: {"backbone", "mode", "negative_tag", "tag_ids", "budget_seconds"}
# WORKDIR/labels.npy (n, n_tags) and WORKDIR/images/{i}.img (the stored bytes of image i)
# out: WORKDIR/backbone.onnx, WORKDIR/head.npz (TagClassifier.to_arrays), WORKDIR/validation.npz
#      (probabilities, folds), WORKDIR/report.json


def run_in_child(workdir: Path, *, timeout_seconds: float, should_stop: Callable[[], bool] | None = None) -> dict[str, object]:
    """Run ``main(workdir)`` in a child Python process; its report, or BackboneError saying why not."""
    return run_module("opencustomvision.ml.finetune", workdir, timeout_seconds=timeout_seconds, what="fine-tuning",
                      should_stop=should_stop)


def main(workdir: Path) -> None:
    import torch

    exit_with_parent()

    torch.set_num_threads(default_threads())
    request = json.loads((workdir / "request.json").read_text())
    backbone = request["backbone"]
    labels = np.load(workdir / "labels.npy")
    short_side = resized_short_side(get_spec(backbone).input_size)
    images = [load_rgb((workdir / "images" / f"{i}.img").read_bytes(), min_short_side=short_side) for i in range(len(labels))]
    settings = FineTuneSettings()
    result = cross_validated_fine_tune(
        backbone, images, labels, request["tag_ids"], request["mode"], negative_tag=request["negative_tag"],
        settings=settings, budget_seconds=float(request["budget_seconds"]),
    )
    result.final.export(workdir / "backbone.onnx")
    np.savez(workdir / "head.npz", **result.final.head.to_arrays())
    np.savez(workdir / "validation.npz", probabilities=result.probabilities, folds=result.folds)
    report = {"seconds": result.seconds, "epochs_run": result.final.epochs_run, "settings": asdict(settings)}
    (workdir / "report.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
