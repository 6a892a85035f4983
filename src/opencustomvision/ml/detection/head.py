"""The trainable part of the detector (torch): a light feature pyramid and Generalised Focal Loss outputs.

Input: the backbone's three maps (strides 8, 16, 32). Each goes through a 1x1 projection
to ``width`` channels and the coarser levels are added top-down (FPN), so the fine level
also sees the stride-32 context. One small tower of depthwise-separable 3x3 convolutions,
shared by all levels, then predicts per point: class logits whose probability is the box's
expected IoU, and for each side a distribution over distances (in strides).

Depthwise-separable convolutions keep a training step cheap on a CPU: training runs on
cached backbone features, so the head is the whole cost of an epoch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DISTANCE_BINS", "ExportedQualityHead", "QualityHead", "quality_loss"]

PRIOR_PROBABILITY = 0.01  # initial foreground probability, so early focal loss is not swamped


class _SeparableConv(nn.Sequential):
    def __init__(self, width: int) -> None:
        super().__init__(
            nn.Conv2d(width, width, 3, padding=1, groups=width, bias=False),
            nn.Conv2d(width, width, 1, bias=False),
            nn.GroupNorm(8, width),
            nn.ReLU(inplace=True),
        )


def _giou_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - GIoU of two boxes given as (left, top, right, bottom) distances from the same point."""
    return 1 - _overlaps(predicted, target)[1]


def _overlaps(predicted: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(IoU, GIoU) of pairs of boxes given as (left, top, right, bottom) distances from the same point."""
    predicted_area = (predicted[:, 0] + predicted[:, 2]) * (predicted[:, 1] + predicted[:, 3])
    target_area = (target[:, 0] + target[:, 2]) * (target[:, 1] + target[:, 3])
    overlap_width = torch.minimum(predicted[:, 0], target[:, 0]) + torch.minimum(predicted[:, 2], target[:, 2])
    overlap_height = torch.minimum(predicted[:, 1], target[:, 1]) + torch.minimum(predicted[:, 3], target[:, 3])
    intersection = overlap_width * overlap_height
    union = predicted_area + target_area - intersection
    enclosing_width = torch.maximum(predicted[:, 0], target[:, 0]) + torch.maximum(predicted[:, 2], target[:, 2])
    enclosing_height = torch.maximum(predicted[:, 1], target[:, 1]) + torch.maximum(predicted[:, 3], target[:, 3])
    enclosing = enclosing_width * enclosing_height
    iou = intersection / union.clamp(min=1e-9)
    return iou, iou - (enclosing - union) / enclosing.clamp(min=1e-9)


# Generalised Focal Loss (Li et al., 2020), as NanoDet's head uses it.

DISTANCE_BINS = 8  # each side's distance is a distribution over 0..7 strides


class QualityHead(nn.Module):
    """One shared tower for classes and boxes; the class score is the box's expected IoU (no centre-ness).

    Per point: class logits trained with Quality Focal Loss (target: the IoU of the predicted box with
    its object), and per side a distribution over DISTANCE_BINS distances (Distribution Focal Loss),
    whose expectation is the distance. 1x1 output convolutions keep a training step cheap.
    """

    def __init__(self, in_channels: tuple[int, ...], class_count: int, width: int = 64, depth: int = 2) -> None:
        super().__init__()
        self.class_count = class_count
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in in_channels)
        self.tower = nn.Sequential(*(_SeparableConv(width) for _ in range(depth)))
        self.class_logits = nn.Conv2d(width, class_count, 1)
        self.distance_logits = nn.Conv2d(width, 4 * DISTANCE_BINS, 1)
        nn.init.constant_(self.class_logits.bias, -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY))
        self.register_buffer("bin_values", torch.arange(DISTANCE_BINS, dtype=torch.float32), persistent=False)

    def forward(self, *features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(class logits (N, L, C), distance logits (N, L, 4, DISTANCE_BINS))."""
        pyramid = [lateral(f) for lateral, f in zip(self.lateral, features, strict=True)]
        for level in range(len(pyramid) - 2, -1, -1):
            coarser = F.interpolate(pyramid[level + 1], size=pyramid[level].shape[-2:], mode="nearest")
            pyramid[level] = pyramid[level] + coarser
        logits, distances = [], []
        for p in pyramid:
            shared = self.tower(p)
            logits.append(self.class_logits(shared).flatten(2))
            distances.append(self.distance_logits(shared).flatten(2))
        batch = features[0].shape[0]
        return (
            torch.cat(logits, dim=2).transpose(1, 2),
            torch.cat(distances, dim=2).transpose(1, 2).reshape(batch, -1, 4, DISTANCE_BINS),
        )

    def expected_distances(self, distance_logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(distance_logits, dim=-1) @ self.bin_values


class ExportedQualityHead(nn.Module):
    """What the ONNX file computes: per-point class scores and distances in strides, ready to decode."""

    def __init__(self, head: QualityHead) -> None:
        super().__init__()
        self.head = head

    def forward(self, *features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, distance_logits = self.head(*features)
        return torch.sigmoid(logits), self.head.expected_distances(distance_logits)


QFL_WEIGHT, GIOU_WEIGHT, DFL_WEIGHT = 1.0, 2.0, 0.25  # GFL's


def quality_loss(
    head: QualityHead,
    logits: torch.Tensor,
    distance_logits: torch.Tensor,
    target_classes: torch.Tensor,
    target_distances: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, float]]:
    """GFL: Quality Focal Loss on every point; GIoU and Distribution Focal Loss on positives, weighted by
    the prediction's confidence. QFL is normalised by the positives, the box terms by their weights."""
    positive = target_classes >= 0
    positives = max(int(positive.sum()), 1)
    quality = torch.zeros_like(logits)
    if positive.any():
        predicted = head.expected_distances(distance_logits[positive])
        wanted = target_distances[positive]
        with torch.no_grad():
            iou = _overlaps(predicted, wanted)[0].clamp(min=0)
            quality[positive] = F.one_hot(target_classes[positive], logits.shape[-1]).to(logits.dtype) * iou[:, None]
            weights = torch.sigmoid(logits[positive]).max(dim=1).values
        weight_sum = weights.sum().clamp(min=1e-6)
        giou = (_giou_loss(predicted, wanted) * weights).sum() / weight_sum
        dfl = (_distribution_focal_loss(distance_logits[positive], wanted) * weights[:, None]).sum() / (4 * weight_sum)
    else:
        giou = dfl = logits.sum() * 0.0
    probability = torch.sigmoid(logits)
    qfl = (F.binary_cross_entropy_with_logits(logits, quality, reduction="none") * (quality - probability).abs().pow(2)).sum() / positives
    total = QFL_WEIGHT * qfl + GIOU_WEIGHT * giou + DFL_WEIGHT * dfl
    return total, {"qfl": qfl.item(), "giou": giou.item(), "dfl": dfl.item()}


def _distribution_focal_loss(distance_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(P, 4) cross-entropy of each side's distribution with the two bins around the target distance."""
    target = target.clamp(0, DISTANCE_BINS - 1 - 1e-3)
    lower = target.floor().long()
    upper_weight = target - lower
    log_probabilities = F.log_softmax(distance_logits, dim=-1)
    lower_term = log_probabilities.gather(-1, lower[..., None])[..., 0]
    upper_term = log_probabilities.gather(-1, (lower + 1)[..., None])[..., 0]
    return -(lower_term * (1 - upper_weight) + upper_term * upper_weight)
