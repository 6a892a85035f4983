"""Published models (classifiers and detectors), loaded once and kept in an LRU cache, answering predictions;
and class-agnostic region proposals, which need no trained model."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from sqlalchemy.orm import Session

from opencustomvision.domain.catalog import DETECTION_BACKBONE
from opencustomvision.domain.images import Box, images_by_id
from opencustomvision.domain.predictions import PREDICTION_IMAGE_LIMITS
from opencustomvision.embeddings import EmbeddingCache
from opencustomvision.imaging.decode import load_rgb
from opencustomvision.jobs.training import load_classifier, load_detector
from opencustomvision.ml.backbone import Backbone
from opencustomvision.ml.detection import DetectionModel
from opencustomvision.ml.detection.model import shared_feature_extractor
from opencustomvision.ml.detection.proposals import Proposal, RegionProposer
from opencustomvision.ml.evaluation import ranked_predictions
from opencustomvision.ml.heads import TagClassifier
from opencustomvision.ml.preprocess import preprocess_batch, resized_short_side
from opencustomvision.ml.registry import BackboneRegistry
from opencustomvision.storage.blobs import BlobStore


@dataclass(frozen=True)
class LoadedModel:
    head: TagClassifier
    backbone: Backbone


@dataclass(frozen=True)
class LoadedDetector:
    model: DetectionModel
    tag_ids: list[str]


T = TypeVar("T", LoadedModel, LoadedDetector)
# The detector looks at the whole image at 320 px: a JPEG is decoded at a reduced scale down to this.
DETECTION_DECODE_SIDE = 640


class Predictor:
    def __init__(self, blobs: BlobStore, backbones: BackboneRegistry, *, capacity: int = 16) -> None:
        self._blobs = blobs
        self._backbones = backbones
        self._capacity = capacity
        self._models: OrderedDict[str, LoadedModel | LoadedDetector] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def backbones(self) -> BackboneRegistry:
        return self._backbones

    def _cached(self, model_key: str, load: Callable[[bytes], T]) -> T:
        with self._lock:
            if model_key in self._models:
                self._models.move_to_end(model_key)
                return self._models[model_key]  # type: ignore[return-value]
        model = load(self._blobs.get(model_key))
        with self._lock:
            self._models[model_key] = model
            while len(self._models) > self._capacity:
                self._models.popitem(last=False)
        return model

    def _model(self, model_key: str) -> LoadedModel:
        return self._cached(model_key, self._load_classifier)

    def _load_classifier(self, blob: bytes) -> LoadedModel:
        stored = load_classifier(blob)
        if stored.fine_tuned_onnx is None:
            backbone = self._backbones.get(stored.backbone)
        else:
            backbone = self._backbones.fine_tuned(stored.base_backbone, stored.fine_tuned_onnx, stored.backbone)
        return LoadedModel(stored.head, backbone)

    def _load_detector(self, blob: bytes) -> LoadedDetector:
        stored = load_detector(blob)
        return LoadedDetector(DetectionModel.from_bytes(stored.model, self._backbones.cache_dir), stored.tag_ids)

    def propose_regions(self, image_bytes: bytes) -> list[Proposal]:
        """Class-agnostic proposals from the pretrained detection backbone: no trained model needed."""
        proposer = RegionProposer(shared_feature_extractor(DETECTION_BACKBONE, self._backbones.cache_dir, None))
        return proposer.propose(load_rgb(image_bytes, PREDICTION_IMAGE_LIMITS, min_short_side=DETECTION_DECODE_SIDE))

    def detect(self, model_key: str, image_bytes: bytes) -> list[tuple[str, float, Box]]:
        """(tag id, probability, (left, top, width, height)) of each object found, most probable first."""
        detector = self._cached(model_key, self._load_detector)
        picture = load_rgb(image_bytes, PREDICTION_IMAGE_LIMITS, min_short_side=DETECTION_DECODE_SIDE)
        return [(detector.tag_ids[found.tag], found.probability, found.box) for found in detector.model.predict(picture)]

    def classify(self, model_key: str, image_bytes: bytes) -> list[tuple[str, float]]:
        """(tag id, probability) for every tag of the model, most probable first."""
        model = self._model(model_key)
        backbone = model.backbone
        picture = load_rgb(image_bytes, PREDICTION_IMAGE_LIMITS, min_short_side=resized_short_side(backbone.spec.input_size))
        features = backbone.embed(preprocess_batch([picture], backbone.spec.input_size))
        return ranked_predictions(model.head.predict_proba(features), model.head.tag_ids_)[0]

    def rank_embeddings(self, model_key: str, features: np.ndarray) -> list[list[tuple[str, float]]]:
        """For each already embedded image, (tag id, probability) for every tag, most probable first."""
        model = self._model(model_key)
        return ranked_predictions(model.head.predict_proba(features), model.head.tag_ids_)

    def backbone_of(self, model_key: str) -> Backbone:
        return self._model(model_key).backbone


class StoredImageScorer:
    """Scores images already in a project with an iteration's model, reusing cached embeddings."""

    def __init__(self, predictor: Predictor, embeddings: EmbeddingCache, blobs: BlobStore) -> None:
        self._predictor = predictor
        self._embeddings = embeddings
        self._blobs = blobs

    def detect(self, session: Session, model_key: str, image_ids: list[str]) -> list[list[tuple[str, float, Box]]]:
        """For each stored image, the objects an iteration's detector finds in its resized copy."""
        images = images_by_id(session, image_ids)
        return [self._predictor.detect(model_key, self._blobs.get(images[image_id].resized_key)) for image_id in image_ids]

    def rank(self, session: Session, model_key: str, image_ids: list[str], *, background: bool = False) -> list[list[tuple[str, float]]]:
        if not image_ids:
            return []
        features = self._embeddings.for_images(session, image_ids, self._predictor.backbone_of(model_key), background=background)
        return self._predictor.rank_embeddings(model_key, features)
