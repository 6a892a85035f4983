"""Class-agnostic region proposals from the pretrained backbone alone (GetImageRegionProposals).

Before any tag is trained there is no detector, but the ImageNet-pretrained network already responds to
objects: its last feature maps are strongest where something ImageNet-like is. A proposal is a connected
blob of that response: the stride-32 and stride-16 maps are reduced to one "activation energy" per cell
(mean over channels), and each map is cut at several fractions of its maximum; every connected component
above a cut becomes a box, scored by its mean energy relative to the map's maximum. Overlapping boxes
are merged by NMS. This finds dominant objects well and touching objects of one kind poorly (they
merge into one blob); the measured recall is in docs/detection.md.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from PIL import Image
from scipy import ndimage

from opencustomvision.ml.detection.boxes import non_maximum_suppression, xyxy_to_ltwh
from opencustomvision.ml.detection.features import FEATURE_STRIDES, FeatureExtractor, preprocess_stretched

__all__ = ["Proposal", "RegionProposer"]

PROPOSAL_INPUT_SIZE = 320
_CUTS = (0.2, 0.35, 0.5, 0.65, 0.8)  # fractions of a map's maximum energy
_NMS_IOU = 0.7
MAX_PROPOSALS = 50



class Proposal(NamedTuple):
    confidence: float
    box: tuple[float, float, float, float]  # (left, top, width, height), normalised to the image


class RegionProposer:
    def __init__(self, features: FeatureExtractor) -> None:
        self._features = features

    def propose(self, image: Image.Image) -> list[Proposal]:
        """Up to MAX_PROPOSALS boxes, most confident first."""
        maps = self._features.run(preprocess_stretched(image, PROPOSAL_INPUT_SIZE)[None])
        boxes, scores = [], []
        for feature_map in (maps[FEATURE_STRIDES.index(16)], maps[FEATURE_STRIDES.index(32)]):
            found_boxes, found_scores = _blobs(np.sqrt(np.mean(np.square(feature_map[0]), axis=0)))
            boxes += found_boxes
            scores += found_scores
        if not boxes:
            return []
        xyxy = np.asarray(boxes, dtype=np.float64)
        kept = non_maximum_suppression(xyxy, scores, _NMS_IOU, MAX_PROPOSALS)
        ltwh = xyxy_to_ltwh(xyxy[kept])
        return [Proposal(float(scores[i]), tuple(float(v) for v in box)) for i, box in zip(kept, ltwh)]  # type: ignore[misc]


def _blobs(energy: np.ndarray) -> tuple[list[tuple[float, float, float, float]], list[float]]:
    """Normalised xyxy boxes of the connected components above each cut, and their scores."""
    peak = float(energy.max())
    if peak <= 0:
        return [], []
    rows, columns = energy.shape
    boxes, scores = [], []
    for cut in _CUTS:
        labels, _ = ndimage.label(energy >= cut * peak)
        for index, found in enumerate(ndimage.find_objects(labels), start=1):
            if found is None:
                continue
            y, x = found
            boxes.append((x.start / columns, y.start / rows, x.stop / columns, y.stop / rows))
            scores.append(float(energy[labels == index].sum() / energy.sum()))
    return boxes, scores
