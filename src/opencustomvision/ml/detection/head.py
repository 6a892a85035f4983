"""The trainable part of the detector (torch): a light feature pyramid and FCOS-style outputs.

Input: the backbone's three maps (strides 8, 16, 32). Each goes through a 1x1 projection
to ``width`` channels and the coarser levels are added top-down (FPN), so the fine level
also sees the stride-32 context. Two small towers of depthwise-separable 3x3 convolutions,
shared by all levels, then predict per point: class logits, the four side distances (in
strides, positive through ``exp`` with a learnt per-level scale) and centre-ness.

Depthwise-separable convolutions keep a training step cheap on a CPU: training runs on
cached backbone features, so the head is the whole cost of an epoch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DetectionHead", "ExportedHead", "detection_loss"]

PRIOR_PROBABILITY = 0.01  # initial foreground probability, so early focal loss is not swamped


class _SeparableConv(nn.Sequential):
    def __init__(self, width: int) -> None:
        super().__init__(
            nn.Conv2d(width, width, 3, padding=1, groups=width, bias=False),
            nn.Conv2d(width, width, 1, bias=False),
            nn.GroupNorm(8, width),
            nn.ReLU(inplace=True),
        )


class DetectionHead(nn.Module):
    def __init__(self, in_channels: tuple[int, ...], class_count: int, width: int = 64, depth: int = 2) -> None:
        super().__init__()
        self.class_count = class_count
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in in_channels)
        self.class_tower = nn.Sequential(*(_SeparableConv(width) for _ in range(depth)))
        self.box_tower = nn.Sequential(*(_SeparableConv(width) for _ in range(depth)))
        self.class_logits = nn.Conv2d(width, class_count, 3, padding=1)
        self.distances = nn.Conv2d(width, 4, 3, padding=1)
        self.centerness = nn.Conv2d(width, 1, 3, padding=1)
        self.level_scales = nn.Parameter(torch.ones(len(in_channels)))
        nn.init.constant_(self.class_logits.bias, -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY))

    def forward(self, *features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(class logits (N, L, C), distances in strides (N, L, 4), centre-ness logits (N, L))."""
        pyramid = [lateral(f) for lateral, f in zip(self.lateral, features, strict=True)]
        for level in range(len(pyramid) - 2, -1, -1):
            coarser = F.interpolate(pyramid[level + 1], size=pyramid[level].shape[-2:], mode="nearest")
            pyramid[level] = pyramid[level] + coarser
        logits, distances, centerness = [], [], []
        for level, p in enumerate(pyramid):
            class_features = self.class_tower(p)
            box_features = self.box_tower(p)
            logits.append(self.class_logits(class_features).flatten(2))
            # Clamped before exp: a diverging early step must not overflow to inf.
            scaled = (self.distances(box_features) * self.level_scales[level]).clamp(max=8.0)
            distances.append(torch.exp(scaled).flatten(2))
            centerness.append(self.centerness(box_features).flatten(2))
        return (
            torch.cat(logits, dim=2).transpose(1, 2),
            torch.cat(distances, dim=2).transpose(1, 2),
            torch.cat(centerness, dim=2)[:, 0],
        )


class ExportedHead(nn.Module):
    """What the ONNX file computes: per-point class scores and distances, ready to decode.

    The score is FCOS's sqrt(class probability x centre-ness): centre-ness ranks the
    well-centred point of an object above its off-centre neighbours before NMS.
    """

    def __init__(self, head: DetectionHead) -> None:
        super().__init__()
        self.head = head

    def forward(self, *features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, distances, centerness = self.head(*features)
        scores = torch.sqrt(torch.sigmoid(logits) * torch.sigmoid(centerness)[..., None])
        return scores, distances


def detection_loss(
    logits: torch.Tensor,
    distances: torch.Tensor,
    centerness_logits: torch.Tensor,
    target_classes: torch.Tensor,
    target_distances: torch.Tensor,
    target_centerness: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, float]]:
    """FCOS loss: focal loss on every point, GIoU and centre-ness BCE on positives.

    Each term is normalised by the number of positives (at least 1) in the batch.
    """
    positive = target_classes >= 0
    positives = max(int(positive.sum()), 1)

    one_hot = torch.zeros_like(logits)
    one_hot[positive] = F.one_hot(target_classes[positive], logits.shape[-1]).to(logits.dtype)
    focal = _sigmoid_focal_loss(logits, one_hot).sum() / positives

    if positive.any():
        weights = target_centerness[positive]
        giou = (_giou_loss(distances[positive], target_distances[positive]) * weights).sum() / weights.sum().clamp(
            min=1e-6
        )
        centerness = F.binary_cross_entropy_with_logits(
            centerness_logits[positive], target_centerness[positive], reduction="sum"
        ) / positives
    else:
        giou = centerness = logits.sum() * 0.0
    total = focal + giou + centerness
    return total, {"focal": focal.item(), "giou": giou.item(), "centerness": centerness.item()}


def _sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    probability = torch.sigmoid(logits)
    cross_entropy = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_true = probability * targets + (1 - probability) * (1 - targets)
    alpha_weight = alpha * targets + (1 - alpha) * (1 - targets)
    return alpha_weight * (1 - p_true) ** gamma * cross_entropy


def _giou_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - GIoU of two boxes given as (left, top, right, bottom) distances from the same point."""
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
    giou = iou - (enclosing - union) / enclosing.clamp(min=1e-9)
    return 1 - giou
