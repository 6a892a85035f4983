"""A training job: embeddings (cached per image and backbone), honest cross-validation, the final head.

This is where the database meets the ML code: it reads an iteration's snapshot, hands arrays to
``ml/`` and stores what comes back. ``ml/`` itself never sees a session.
"""

from __future__ import annotations

import io
import logging
import time

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from opencustomvision.domain.catalog import backbone_for
from opencustomvision.domain.iterations import COMPLETED, FAILED, TRAINING
from opencustomvision.embeddings import EmbeddingCache
from opencustomvision.imaging.decode import ImageRejected
from opencustomvision.ml.evaluation import cross_validated_predictions
from opencustomvision.ml.heads import TagClassifier
from opencustomvision.storage.blobs import BlobStore
from opencustomvision.jobs.notify import TrainingNotifier
from opencustomvision.storage.models import Iteration, IterationImage, Project, Tag, utcnow

logger = logging.getLogger(__name__)


def model_key(project_id: str, iteration_id: str) -> str:
    return f"projects/{project_id}/iterations/{iteration_id}/classifier.npz"


def save_classifier(head: TagClassifier, backbone: str) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, backbone=np.array(backbone), **head.to_arrays())
    return buffer.getvalue()


def load_classifier(data: bytes) -> tuple[TagClassifier, str]:
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        contents = {name: arrays[name] for name in arrays.files}
    backbone = str(contents.pop("backbone"))
    return TagClassifier.from_arrays(contents), backbone


class TrainingJob:
    def __init__(self, sessions: sessionmaker[Session], blobs: BlobStore, embeddings: EmbeddingCache,
                 notifier: TrainingNotifier) -> None:
        self._sessions = sessions
        self._blobs = blobs
        self._embeddings = embeddings
        self._notifier = notifier

    def __call__(self, iteration_id: str) -> None:
        started = time.monotonic()
        try:
            self._train(iteration_id, started)
        except Exception as error:
            logger.exception("iteration %s failed", iteration_id)
            self._fail(iteration_id, f"{type(error).__name__}: {error}")
        self._notify(iteration_id)

    def _notify(self, iteration_id: str) -> None:
        with self._sessions() as session:
            iteration = session.get(Iteration, iteration_id)
            if iteration is None or not iteration.notification_email or iteration.status == TRAINING:
                return
            project = session.get(Project, iteration.project_id)
            self._notifier.training_finished(iteration.notification_email, project.name if project else iteration.project_id,
                                             iteration.name, iteration.status, iteration.failure_reason)

    def _fail(self, iteration_id: str, reason: str) -> None:
        with self._sessions() as session:
            iteration = session.get(Iteration, iteration_id)
            if iteration is not None and iteration.status == TRAINING:
                iteration.status = FAILED
                iteration.failure_reason = reason[:2000]
                iteration.last_modified = utcnow()
                session.commit()

    def _train(self, iteration_id: str, started: float) -> None:
        with self._sessions() as session:
            iteration = session.get(Iteration, iteration_id)
            if iteration is None or iteration.status != TRAINING:
                return
            members = list(session.scalars(select(IterationImage).where(IterationImage.iteration_id == iteration_id)))
            tags = {tag.id: tag for tag in session.scalars(select(Tag).where(Tag.project_id == iteration.project_id))}
            # Tags deleted since the snapshot drop out; images that kept no tag drop out with them.
            members = [m for m in members if any(tag_id in tags for tag_id in m.tag_ids)]
            tag_ids = sorted({tag_id for m in members for tag_id in m.tag_ids if tag_id in tags}, key=lambda t: tags[t].name)
            backbone_name = backbone_for(iteration.domain_id)
            try:
                features = self._embeddings.for_images(session, [m.image_id for m in members], backbone_name)
            except ImageRejected as error:
                raise RuntimeError(f"a stored image could not be decoded: {error}") from error
            labels = np.array([[1.0 if tag_id in m.tag_ids else 0.0 for tag_id in tag_ids] for m in members], dtype=np.float32)
            mode = iteration.classification_type or "Multiclass"
            negative = next((tag_id for tag_id in tag_ids if tags[tag_id].type == "Negative"), None)

            def make_head() -> TagClassifier:
                return TagClassifier(mode, negative_tag=negative)

            probabilities, folds = cross_validated_predictions(make_head, features, labels, tag_ids)
            head = make_head().fit(features, labels, tag_ids)

            key = model_key(iteration.project_id, iteration.id)
            self._blobs.put(key, save_classifier(head, backbone_name))
            for member, row, fold in zip(members, probabilities, folds):
                member.predictions = {tag_id: float(p) for tag_id, p in zip(tag_ids, row)}
                member.fold = int(fold)
            now = utcnow()
            iteration.status = COMPLETED
            iteration.model_key = key
            iteration.backbone = backbone_name
            iteration.trained_at = now
            iteration.last_modified = now
            iteration.training_seconds = time.monotonic() - started
            session.commit()
