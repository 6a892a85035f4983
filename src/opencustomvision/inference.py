"""Published models, loaded once and kept in an LRU cache, answering predictions."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from opencustomvision.domain.predictions import PREDICTION_IMAGE_LIMITS
from opencustomvision.embeddings import EmbeddingCache
from opencustomvision.imaging.decode import load_rgb
from opencustomvision.jobs.training import load_classifier
from opencustomvision.ml.backbone import Backbone
from opencustomvision.ml.evaluation import ranked_predictions
from opencustomvision.ml.heads import TagClassifier
from opencustomvision.ml.preprocess import preprocess_batch, resized_short_side
from opencustomvision.ml.registry import BackboneRegistry
from opencustomvision.storage.blobs import BlobStore

@dataclass(frozen=True)
class LoadedModel:
    head: TagClassifier
    backbone: Backbone


class Predictor:
    def __init__(self, blobs: BlobStore, backbones: BackboneRegistry, *, capacity: int = 16) -> None:
        self._blobs = blobs
        self._backbones = backbones
        self._capacity = capacity
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def _model(self, model_key: str) -> LoadedModel:
        with self._lock:
            if model_key in self._models:
                self._models.move_to_end(model_key)
                return self._models[model_key]
        stored = load_classifier(self._blobs.get(model_key))
        if stored.fine_tuned_onnx is None:
            backbone = self._backbones.get(stored.backbone)
        else:
            backbone = self._backbones.fine_tuned(stored.base_backbone, stored.fine_tuned_onnx, stored.backbone)
        model = LoadedModel(stored.head, backbone)
        with self._lock:
            self._models[model_key] = model
            while len(self._models) > self._capacity:
                self._models.popitem(last=False)
        return model

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

    def __init__(self, predictor: Predictor, embeddings: EmbeddingCache) -> None:
        self._predictor = predictor
        self._embeddings = embeddings

    def rank(self, session: Session, model_key: str, image_ids: list[str]) -> list[list[tuple[str, float]]]:
        if not image_ids:
            return []
        features = self._embeddings.for_images(session, image_ids, self._predictor.backbone_of(model_key))
        return self._predictor.rank_embeddings(model_key, features)
