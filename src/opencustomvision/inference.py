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
from opencustomvision.ml.heads import TagClassifier
from opencustomvision.ml.preprocess import preprocess_batch, resized_short_side
from opencustomvision.ml.registry import BackboneRegistry
from opencustomvision.storage.blobs import BlobStore

@dataclass(frozen=True)
class LoadedModel:
    head: TagClassifier
    backbone: str


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
        head, backbone = load_classifier(self._blobs.get(model_key))
        model = LoadedModel(head, backbone)
        with self._lock:
            self._models[model_key] = model
            while len(self._models) > self._capacity:
                self._models.popitem(last=False)
        return model

    def classify(self, model_key: str, image_bytes: bytes) -> list[tuple[str, float]]:
        """(tag id, probability) for every tag of the model, most probable first."""
        model = self._model(model_key)
        backbone = self._backbones.get(model.backbone)
        picture = load_rgb(image_bytes, PREDICTION_IMAGE_LIMITS, min_short_side=resized_short_side(backbone.spec.input_size))
        features = backbone.embed(preprocess_batch([picture], backbone.spec.input_size))
        probabilities = model.head.predict_proba(features)[0]
        order = np.argsort(-probabilities, kind="stable")
        return [(model.head.tag_ids_[index], float(probabilities[index])) for index in order]

    def score_embeddings(self, model_key: str, features: np.ndarray) -> tuple[list[str], np.ndarray]:
        """The model's tag ids and its probabilities for already embedded images."""
        model = self._model(model_key)
        return list(model.head.tag_ids_), model.head.predict_proba(features)

    def backbone_of(self, model_key: str) -> str:
        return self._model(model_key).backbone


class StoredImageScorer:
    """Scores images already in a project with an iteration's model, reusing cached embeddings."""

    def __init__(self, predictor: Predictor, embeddings: EmbeddingCache) -> None:
        self._predictor = predictor
        self._embeddings = embeddings

    def score(self, session: Session, model_key: str, image_ids: list[str]) -> tuple[list[str], np.ndarray]:
        if not image_ids:
            return [], np.empty((0, 0), np.float32)
        features = self._embeddings.for_images(session, image_ids, self._predictor.backbone_of(model_key))
        return self._predictor.score_embeddings(model_key, features)
