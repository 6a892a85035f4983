"""A trained detector at prediction time: ONNX Runtime and numpy only, never torch.

A stored model is a small zip blob: ``head.onnx`` (the trained head, ~100 kB) and
``metadata.json`` (backbone, input size, tag count). The backbone is not in it: it is
the shared multi-scale export in the cache directory, opened once per process and
shared by every model that names it.
"""

from __future__ import annotations

import functools
import io
import json
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnxruntime as ort
from PIL import Image

from opencustomvision.ml.backbone import session_options
from opencustomvision.ml.detection.boxes import (
    clip_boxes,
    decode_distances,
    per_class_non_maximum_suppression,
    xyxy_to_ltwh,
)
from opencustomvision.ml.detection.features import (
    FEATURE_NAMES,
    FeatureExtractor,
    preprocess_stretched,
)
from opencustomvision.ml.detection.targets import anchor_points

__all__ = ["BLOB_FORMAT", "Detection", "DetectionModel", "DetectorConfig", "ModelFormatError"]

BLOB_FORMAT = 1
SCORES_OUTPUT = "scores"
DISTANCES_OUTPUT = "distances"
# Low floor: a ranked list with a long tail keeps average precision honest; callers threshold.
PROBABILITY_FLOOR = 0.01
CANDIDATES_BEFORE_NMS = 1000
NMS_IOU = 0.5
MAX_DETECTIONS = 200


class ModelFormatError(ValueError):
    """The blob is not a detection model this version can read."""


class Detection(NamedTuple):
    tag: int
    probability: float
    box: tuple[float, float, float, float]  # (left, top, width, height), normalised to the image


@dataclass(frozen=True)
class DetectorConfig:
    backbone: str
    input_size: int  # side of the square network input, a multiple of 32
    tag_count: int
    strides: tuple[int, ...]


class DetectionModel:
    """Predicts tagged boxes for an image. Thread-safe (ONNX Runtime sessions are)."""

    def __init__(self, config: DetectorConfig, head_onnx: bytes, features: FeatureExtractor, *, threads: int | None = None) -> None:
        self.config = config
        self._head_onnx = head_onnx
        self._features = features
        self._head = ort.InferenceSession(head_onnx, session_options(threads), providers=["CPUExecutionProvider"])
        points = anchor_points(config.input_size, config.strides)
        self._points, self._strides = points.xy, points.strides

    @classmethod
    def from_bytes(cls, blob: bytes, cache_dir: Path, *, threads: int | None = None) -> DetectionModel:
        """Open a stored model; the backbone comes from (or is exported once into) ``cache_dir``."""
        try:
            with zipfile.ZipFile(io.BytesIO(blob)) as archive:
                metadata = json.loads(archive.read("metadata.json"))
                head_onnx = archive.read("head.onnx")
        except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
            raise ModelFormatError(f"not a detection model blob: {exc}") from exc
        if metadata.get("format") != BLOB_FORMAT:
            raise ModelFormatError(f"detection model format {metadata.get('format')!r}, expected {BLOB_FORMAT}")
        config = DetectorConfig(
            backbone=metadata["backbone"],
            input_size=int(metadata["input_size"]),
            tag_count=int(metadata["tag_count"]),
            strides=tuple(metadata["strides"]),
        )
        return cls(config, head_onnx, shared_feature_extractor(config.backbone, Path(cache_dir), threads), threads=threads)

    @property
    def head_onnx(self) -> bytes:
        """The trained head's ONNX graph (FEATURE_NAMES in; scores and distances out), as stored."""
        return self._head_onnx

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("metadata.json", json.dumps({"format": BLOB_FORMAT, **asdict(self.config)}))
            archive.writestr("head.onnx", self._head_onnx)
        return buffer.getvalue()

    def predict(self, image: Image.Image) -> list[Detection]:
        """Tagged boxes, most probable first, at most MAX_DETECTIONS, probability >= PROBABILITY_FLOOR."""
        scores, distances = self.run_networks(preprocess_stretched(image, self.config.input_size)[None])
        return self._decode(scores[0], distances[0])

    def run_networks(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The backbone and head sessions on a preprocessed (1, 3, S, S) input: per-point
        class scores (1, L, tags) and (left, top, right, bottom) distances in strides (1, L, 4)."""
        features = self._features.run(batch)
        scores, distances = self._head.run(
            [SCORES_OUTPUT, DISTANCES_OUTPUT], dict(zip(FEATURE_NAMES, features, strict=True))
        )
        return scores, distances

    def _decode(self, scores: np.ndarray, distances: np.ndarray) -> list[Detection]:
        point_index, tags = np.nonzero(scores >= PROBABILITY_FLOOR)
        probabilities = scores[point_index, tags]
        if len(probabilities) > CANDIDATES_BEFORE_NMS:
            top = np.argpartition(-probabilities, CANDIDATES_BEFORE_NMS)[:CANDIDATES_BEFORE_NMS]
            point_index, tags, probabilities = point_index[top], tags[top], probabilities[top]
        boxes = decode_distances(self._points[point_index], distances[point_index], self._strides[point_index])
        boxes = clip_boxes(boxes / self.config.input_size)
        kept = per_class_non_maximum_suppression(boxes, probabilities, tags, NMS_IOU, MAX_DETECTIONS)
        ltwh = xyxy_to_ltwh(boxes[kept])
        return [
            Detection(int(tag), float(probability), (float(box[0]), float(box[1]), float(box[2]), float(box[3])))
            for tag, probability, box in zip(tags[kept], probabilities[kept], ltwh, strict=True)
        ]


@functools.lru_cache(maxsize=4)
def shared_feature_extractor(backbone: str, cache_dir: Path, threads: int | None) -> FeatureExtractor:
    """One backbone session per (backbone, cache directory, threads), shared by all models in the process."""
    return FeatureExtractor.load(backbone, cache_dir, threads=threads)
