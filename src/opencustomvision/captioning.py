"""Automatic captions, computed: labels from ml/ over cached embeddings, and a background captioner.

Every image gets its caption when it arrives (domain/captions.py says from what). A Scenario request that
answers with captions makes them itself; images uploaded through the Custom Vision API are captioned here
in a background thread at the lowest CPU priority, so uploads never wait for it. The embeddings it
computes are the ones training needs anyway (the project's own backbone), cached for it.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from opencustomvision.domain.captions import ensure_captions
from opencustomvision.embeddings import EmbeddingCache
from opencustomvision.inference import StoredImageScorer
from opencustomvision.ml.captions import ImageNetLabeler
from opencustomvision.ml.registry import BackboneRegistry
from opencustomvision.storage.models import Image, Project

logger = logging.getLogger(__name__)
_LOWEST_PRIORITY = 19


class Labeler:
    """domain.captions.ImageLabeler over this process's backbones, embedding cache and trained models."""

    def __init__(self, backbones: BackboneRegistry, embeddings: EmbeddingCache, scorer: StoredImageScorer) -> None:
        self._backbones = backbones
        self._embeddings = embeddings
        self._scorer = scorer
        self._imagenet: dict[str, ImageNetLabeler] = {}
        self._lock = threading.Lock()

    def rank(self, session: Session, model_key: str, image_ids: list[str]) -> list[list[tuple[str, float]]]:
        return self._scorer.rank(session, model_key, image_ids)

    def imagenet_labels(self, session: Session, backbone: str, image_ids: list[str]) -> list[str]:
        model = self._backbones.get(backbone)
        features = self._embeddings.for_images(session, image_ids, model)
        return self._classifier(backbone).labels(features)

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
        self.labeler = labeler
        self._queue: queue.Queue[list[str] | None] = queue.Queue()
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
        if image_ids:
            self._queue.put(list(image_ids))

    def wait_idle(self) -> None:
        """Block until everything submitted so far is captioned (benchmarks measure the whole ingest)."""
        self._queue.join()

    def _loop(self) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _LOWEST_PRIORITY)
        except (AttributeError, OSError):  # not Linux, or not allowed: run at normal priority
            pass
        while True:
            image_ids = self._queue.get()
            try:
                if image_ids is None:
                    return
                self._caption(image_ids)
            except Exception:  # a caption is made again on first read; this only keeps the thread alive
                logger.exception("captioning %d images failed", len(image_ids or []))
            finally:
                self._queue.task_done()

    def _caption(self, image_ids: list[str]) -> None:
        with self._sessions() as session:
            by_project: dict[str, list[str]] = {}
            for image_id, project_id in session.execute(select(Image.id, Image.project_id).where(Image.id.in_(image_ids))):
                by_project.setdefault(project_id, []).append(image_id)
            for project_id, ids in by_project.items():
                project = session.get(Project, project_id)
                if project is not None:
                    ensure_captions(session, self.labeler, project, ids)
