"""Automatic captions, computed: labels from ml/ over cached embeddings, and a background captioner.

Every image gets its caption when it arrives (domain/captions.py says from what). A Scenario request that
answers with captions makes them itself; images uploaded through the Custom Vision API are captioned here
in a background thread at the lowest CPU priority, so uploads never wait for it. The embeddings it
computes are the ones training needs anyway (the project's own backbone), cached for it.
"""

from __future__ import annotations

import copy
import logging
import os
import queue
import threading
from collections.abc import Sequence

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from opencustomvision.domain.assets import SCENARIO_BACKBONE, embeddings_of_images_from, store_asset_embeddings
from opencustomvision.domain.captions import ensure_captions
from opencustomvision.domain.catalog import is_detection
from opencustomvision.embeddings import EmbeddingCache, ImagesGone
from opencustomvision.inference import StoredImageScorer
from opencustomvision.ml.captions import ImageNetLabeler
from opencustomvision.ml.registry import BackboneRegistry
from opencustomvision.storage.models import Image, Project, ScenarioAsset

logger = logging.getLogger(__name__)
_LOWEST_PRIORITY = 19


class Labeler:
    """domain.captions.ImageLabeler over this process's backbones, embedding cache and trained models."""

    def __init__(self, backbones: BackboneRegistry, embeddings: EmbeddingCache, scorer: StoredImageScorer,
                 *, background: bool = False) -> None:
        self._backbones = backbones
        self._embeddings = embeddings
        self._scorer = scorer
        # The background captioner's labeler waits for embeddings others compute; nobody waits for it.
        self._background = background
        self._imagenet: dict[str, ImageNetLabeler] = {}
        self._lock = threading.Lock()

    def in_background(self) -> Labeler:
        """The same labeler (sharing its loaded classifiers), for the background captioner."""
        twin = copy.copy(self)
        twin._background = True
        return twin

    def rank(self, session: Session, model_key: str, image_ids: list[str]) -> list[list[tuple[str, float]]]:
        return self._scorer.rank(session, model_key, image_ids, background=self._background)

    def imagenet_labels(self, session: Session, backbone: str, image_ids: list[str]) -> list[str]:
        features = self._embeddings.for_images(session, image_ids, self._backbones.get(backbone), background=self._background)
        return self.labels_of(features, backbone)

    def prepare(self, backbone: str) -> None:
        """Load the backbone and its ImageNet head now (exporting it first, once), so a later caption need not wait."""
        self._classifier(backbone)

    def labels_of(self, features: np.ndarray, backbone: str) -> list[str]:
        return self._classifier(backbone).labels(features)

    def embed_assets(self, assets: list[ScenarioAsset], backbone: str) -> np.ndarray:
        """Vectors of uploaded assets, before any model takes them."""
        return self._embeddings.embed_stored([asset.resized_key for asset in assets], self._backbones.get(backbone))

    def _classifier(self, backbone: str) -> ImageNetLabeler:
        with self._lock:
            if backbone not in self._imagenet:
                path = self._backbones.get(backbone).path
                if path is None:  # the registry only hands out exported, pretrained backbones
                    raise RuntimeError(f"{backbone} has no exported graph to read its classifier from")
                self._imagenet[backbone] = ImageNetLabeler.from_onnx(path)
            return self._imagenet[backbone]


class BackgroundCaptioner:
    """Captions newly stored images in a background thread; ``submit`` never blocks."""

    def __init__(self, sessions: sessionmaker[Session], labeler: Labeler) -> None:
        self._sessions = sessions
        self.labeler = labeler  # for requests, which make the captions they answer with
        self._labeler = labeler.in_background()
        # ("images", ids), ("assets", ids) or ("warm", []); None stops the thread.
        self._queue: queue.Queue[tuple[str, list[str]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="ocv-captioner", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def submit(self, image_ids: Sequence[str]) -> None:
        """Stored images, to caption (and embed with their project's backbone, which training reuses)."""
        if image_ids:
            self._queue.put(("images", list(image_ids)))

    def warm_up(self) -> None:
        """Load (exporting it first, the first time) the backbone Scenario's models caption with, ahead of their images."""
        self._queue.put(("warm", []))

    def submit_assets(self, asset_ids: Sequence[str]) -> None:
        """Uploaded assets, to embed ahead of time: a model that takes them then has their caption at once."""
        if asset_ids:
            self._queue.put(("assets", list(asset_ids)))

    def _loop(self) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _LOWEST_PRIORITY)
        except (AttributeError, OSError):  # not Linux, or not allowed: run at normal priority
            pass
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                kind, ids = item
                if kind == "warm":
                    self._labeler.prepare(SCENARIO_BACKBONE)
                elif kind == "assets":
                    self._embed_assets(ids)
                else:
                    self._caption(ids)
            except Exception:  # what is missing is made again when first needed; this only keeps the thread alive
                logger.exception("background captioning of %s failed", item[0] if item else "?")
            finally:
                self._queue.task_done()

    def _embed_assets(self, asset_ids: list[str]) -> None:
        with self._sessions() as session:
            assets = list(session.scalars(select(ScenarioAsset).where(ScenarioAsset.id.in_(asset_ids))))
            # An asset a model took before this turn came was embedded then, as that model's image: reuse it.
            vectors = embeddings_of_images_from(session, [asset.id for asset in assets], SCENARIO_BACKBONE)
            todo = [asset for asset in assets if asset.id not in vectors]
            if todo:
                vectors.update(zip([asset.id for asset in todo], self._labeler.embed_assets(todo, SCENARIO_BACKBONE)))
            if assets:
                ordered = np.stack([vectors[asset.id] for asset in assets])
                store_asset_embeddings(session, assets, SCENARIO_BACKBONE, ordered,
                                       self._labeler.labels_of(ordered, SCENARIO_BACKBONE))

    def _caption(self, image_ids: list[str], *, again: bool = True) -> None:
        try:
            self._caption_stored(image_ids)
        except ImagesGone:
            if again:  # some were deleted while this turn embedded them: the ones still stored, once more
                self._caption(image_ids, again=False)

    def _caption_stored(self, image_ids: list[str]) -> None:
        with self._sessions() as session:
            by_project: dict[str, list[str]] = {}
            for image_id, project_id in session.execute(select(Image.id, Image.project_id).where(Image.id.in_(image_ids))):
                by_project.setdefault(project_id, []).append(image_id)
            for project_id, ids in by_project.items():
                project = session.get(Project, project_id)
                # Detectors' images are captioned when a Scenario view first shows them: their backbone for
                # captions is one the detector does not use, not worth loading for images nobody may ask about.
                if project is not None and not is_detection(project.domain_id):
                    ensure_captions(session, self._labeler, project, ids)
