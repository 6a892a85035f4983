"""A training job: embeddings (cached per image and backbone), honest cross-validation, the final head.

This is where the database meets the ML code: it reads an iteration's snapshot, hands arrays to
``ml/`` and stores what comes back. ``ml/`` itself never sees a session.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from opencustomvision.domain.catalog import DETECTION_BACKBONE, backbone_for, is_detection
from opencustomvision.domain.images import images_by_id
from opencustomvision.domain.iterations import CANCELED_REASON, COMPLETED, FAILED, TRAINING
from opencustomvision.embeddings import EmbeddingCache
from opencustomvision.imaging.decode import ImageRejected
from opencustomvision.jobs.notify import TrainingNotifier
from opencustomvision.jobs.runner import TRANSIENT_ERRORS, JobCanceled, JobContext, JobLost
from opencustomvision.jobs.workdirs import job_workdir
from opencustomvision.ml import finetune
from opencustomvision.ml.child import ChildStopped
from opencustomvision.ml.detection import isolated as detection_training
from opencustomvision.ml.evaluation import cross_validated_predictions
from opencustomvision.ml.heads import TagClassifier
from opencustomvision.ml.registry import BackboneRegistry
from opencustomvision.storage.blobs import BlobStore
from opencustomvision.storage.models import Iteration, IterationImage, Project, Tag, utcnow

logger = logging.getLogger(__name__)
# A child's time limit is its training budget plus this margin for start-up, decoding and export.
_CHILD_OVERHEAD_SECONDS = 600
# Each of the two detectors an iteration trains (one without its held-out images, one on all) trains for a
# number of steps chosen from its images (ml/detection/settings.py); this caps the time those steps may take
# (caching the backbone's features of the augmented views, once for both, comes on top). A capped schedule
# is logged: its detector is worse than the same images would give on a quieter machine. Set well above what
# the longest schedule (2000 steps, 0.1-0.2 s each on one core) needs, so that only an overloaded machine hits
# it: a quickstart's 158 steps took 150 s on 2 cores at load average 8-10.
DETECTOR_SECONDS = 600.0


def model_key(project_id: str, iteration_id: str) -> str:
    return f"projects/{project_id}/iterations/{iteration_id}/classifier.npz"


@dataclass(frozen=True)
class StoredClassifier:
    """An iteration's model: a head over the embeddings of a backbone, in one blob."""

    head: TagClassifier
    backbone: str  # what its embeddings are cached under (Backbone.identity)
    base_backbone: str  # the pretrained model it is, or was fine-tuned from
    fine_tuned_onnx: bytes | None = None  # Advanced: the fine-tuned backbone's weights


def save_classifier(model: StoredClassifier) -> bytes:
    buffer = io.BytesIO()
    tuned = np.frombuffer(model.fine_tuned_onnx or b"", dtype=np.uint8)
    np.savez(buffer, backbone=np.array(model.backbone), base_backbone=np.array(model.base_backbone),
             fine_tuned_onnx=tuned, **model.head.to_arrays())
    return buffer.getvalue()


def load_classifier(data: bytes) -> StoredClassifier:
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        contents = {name: arrays[name] for name in arrays.files}
    backbone = str(contents.pop("backbone"))
    base = str(contents.pop("base_backbone", backbone))
    tuned = contents.pop("fine_tuned_onnx", np.empty(0, np.uint8)).tobytes()
    return StoredClassifier(TagClassifier.from_arrays(contents), backbone, base, tuned or None)


@dataclass(frozen=True)
class StoredDetector:
    model: bytes  # DetectionModel.to_bytes
    tag_ids: list[str]  # tag index -> tag id, as trained


def save_detector(detector: StoredDetector) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, model=np.frombuffer(detector.model, dtype=np.uint8), tag_ids=np.array(detector.tag_ids, dtype=str))
    return buffer.getvalue()


def load_detector(data: bytes) -> StoredDetector:
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        return StoredDetector(arrays["model"].tobytes(), [str(tag_id) for tag_id in arrays["tag_ids"]])


def retag_model(iteration: Iteration, blob: bytes, tag_ids: dict[str, str]) -> bytes:
    """An iteration's stored model with its tag ids renamed by ``tag_ids`` (a project copied under new ids)."""
    if is_detection(iteration.domain_id):
        detector = load_detector(blob)
        return save_detector(StoredDetector(detector.model, [tag_ids.get(t, t) for t in detector.tag_ids]))
    stored = load_classifier(blob)
    head = stored.head
    head.tag_ids_ = [tag_ids.get(t, t) for t in head.tag_ids_]
    head.negative_tag = tag_ids.get(head.negative_tag, head.negative_tag) if head.negative_tag is not None else None
    return save_classifier(stored)


def detector_key(project_id: str, iteration_id: str) -> str:
    return f"projects/{project_id}/iterations/{iteration_id}/detector.bin"


def fine_tuned_identity(base_backbone: str, iteration_id: str) -> str:
    return f"{base_backbone}~{iteration_id}"


class TrainingJob:
    def __init__(self, sessions: sessionmaker[Session], blobs: BlobStore, backbones: BackboneRegistry,
                 embeddings: EmbeddingCache, notifier: TrainingNotifier, *, advanced_max_seconds: float) -> None:
        self._sessions = sessions
        self._blobs = blobs
        self._backbones = backbones
        self._embeddings = embeddings
        self._notifier = notifier
        self._advanced_max_seconds = advanced_max_seconds

    def run(self, context: JobContext) -> None:
        started = time.monotonic()
        iteration_id = context.subject_id
        try:
            self._train(context, started)
        except (JobLost, *TRANSIENT_ERRORS):
            raise  # another worker has it, or it is taken up again once the database or the store is back
        except (JobCanceled, ChildStopped):
            context.stop_if_asked()  # JobLost if the job moved to another worker: then that one goes on
            self._fail(iteration_id, CANCELED_REASON, context)
            self._notify(iteration_id)
            raise JobCanceled(context.job_id) from None
        except Exception as error:
            self._fail(iteration_id, f"{type(error).__name__}: {error}", context)
            self._notify(iteration_id)
            raise
        self._notify(iteration_id)

    def give_up(self, subject_id: str, reason: str) -> None:
        self._fail(subject_id, reason)
        self._notify(subject_id)

    def _notify(self, iteration_id: str) -> None:
        with self._sessions() as session:
            iteration = session.get(Iteration, iteration_id)
            if iteration is None or not iteration.notification_email or iteration.status == TRAINING:
                return
            project = session.get(Project, iteration.project_id)
            self._notifier.training_finished(iteration.notification_email, project.name if project else iteration.project_id,
                                             iteration.name, iteration.status, iteration.failure_reason)

    def _fail(self, iteration_id: str, reason: str, context: JobContext | None = None) -> None:
        with self._sessions() as session:
            if context is not None:
                context.hold(session)
            iteration = session.get(Iteration, iteration_id)
            if iteration is not None and iteration.status == TRAINING:
                iteration.status = FAILED
                iteration.failure_reason = reason[:2000]
                iteration.last_modified = utcnow()
            session.commit()

    def _train(self, context: JobContext, started: float) -> None:
        with self._sessions() as session:
            iteration = session.get(Iteration, context.subject_id)
            if iteration is None or iteration.status != TRAINING:
                return
            members = list(session.scalars(select(IterationImage).where(IterationImage.iteration_id == iteration.id)))
            tags = {tag.id: tag for tag in session.scalars(select(Tag).where(Tag.project_id == iteration.project_id))}
            # Tags deleted since the snapshot drop out; images that kept no tag drop out with them.
            members = [m for m in members if any(tag_id in tags for tag_id in m.tag_ids)]
            tag_ids = sorted({tag_id for m in members for tag_id in m.tag_ids if tag_id in tags}, key=lambda t: tags[t].name)
            context.report_progress(0.05)
            if is_detection(iteration.domain_id):
                self._train_detector(session, context, iteration, members, tag_ids, started)
                return
            backbone_name = backbone_for(iteration.domain_id)
            labels = np.array([[1.0 if tag_id in m.tag_ids else 0.0 for tag_id in tag_ids] for m in members], dtype=np.float32)
            mode = iteration.classification_type or "Multiclass"
            negative = next((tag_id for tag_id in tag_ids if tags[tag_id].type == "Negative"), None)
            if iteration.training_type == "Advanced":
                model, probabilities, folds = self._fine_tune(session, context, iteration, members, labels, tag_ids, mode,
                                                              negative, backbone_name)
            else:
                model, probabilities, folds = self._fit_head(session, context, members, labels, tag_ids, mode, negative,
                                                             backbone_name)
            context.stop_if_asked()

            key = model_key(iteration.project_id, iteration.id)
            self._blobs.put(key, save_classifier(model))
            for member, row, fold in zip(members, probabilities, folds):
                member.predictions = {tag_id: float(p) for tag_id, p in zip(tag_ids, row)}
                member.fold = int(fold)
            _complete(session, context, iteration, key, model.backbone, started)

    def _fit_head(self, session: Session, context: JobContext, members: list[IterationImage], labels: np.ndarray,
                  tag_ids: list[str], mode: str, negative: str | None,
                  backbone_name: str) -> tuple[StoredClassifier, np.ndarray, np.ndarray]:
        """Regular: a linear head on the frozen backbone's cached embeddings."""
        try:
            features = self._embeddings.for_images(session, [m.image_id for m in members], self._backbones.get(backbone_name))
        except ImageRejected as error:
            raise RuntimeError(f"a stored image could not be decoded: {error}") from error
        context.report_progress(0.5)
        context.stop_if_asked()

        def make_head() -> TagClassifier:
            return TagClassifier(mode, negative_tag=negative)  # type: ignore[arg-type]  # checked by the head

        probabilities, folds = cross_validated_predictions(make_head, features, labels, tag_ids)
        head = make_head().fit(features, labels, tag_ids)
        return StoredClassifier(head, backbone_name, backbone_name), probabilities, folds

    def _fine_tune(self, session: Session, context: JobContext, iteration: Iteration, members: list[IterationImage],
                   labels: np.ndarray,
                   tag_ids: list[str], mode: str, negative: str | None,
                   backbone_name: str) -> tuple[StoredClassifier, np.ndarray, np.ndarray]:
        """Advanced: fine-tune the backbone in a child process, within the iteration's budget."""
        budget = self._advanced_max_seconds
        if iteration.reserved_budget_in_hours > 0:
            budget = min(budget, iteration.reserved_budget_in_hours * 3600.0)
        request = {"backbone": backbone_name, "mode": mode, "negative_tag": negative, "tag_ids": tag_ids, "budget_seconds": budget}
        with self._child_workdir(session, "ocv-finetune-", members, request) as workdir:
            np.save(workdir / "labels.npy", labels)
            report = finetune.run_in_child(workdir, timeout_seconds=budget + _CHILD_OVERHEAD_SECONDS,
                                           should_stop=context.should_stop)
            logger.info("iteration %s fine-tuned: %s", iteration.id, report)
            with np.load(workdir / "head.npz", allow_pickle=False) as arrays:
                head = TagClassifier.from_arrays({name: arrays[name] for name in arrays.files})
            with np.load(workdir / "validation.npz", allow_pickle=False) as arrays:
                probabilities, folds = arrays["probabilities"], arrays["folds"]
            onnx = (workdir / "backbone.onnx").read_bytes()
        identity = fine_tuned_identity(backbone_name, iteration.id)
        return StoredClassifier(head, identity, backbone_name, onnx), probabilities, folds

    def _train_detector(self, session: Session, context: JobContext, iteration: Iteration, members: list[IterationImage],
                        tag_ids: list[str], started: float) -> None:
        """A detector on the snapshot's regions, trained in a child process; metrics from a held-out fifth."""
        index = {tag_id: i for i, tag_id in enumerate(tag_ids)}
        regions = [[[index[r[0]], *r[1:]] for r in (m.regions or []) if r[0] in index] for m in members]
        backbone = DETECTION_BACKBONE
        request = {"backbone": backbone, "tag_count": len(tag_ids), "seconds_per_model": DETECTOR_SECONDS,
                   "held_out": detection_training.held_out_images(len(members)), "cache_dir": str(self._backbones.cache_dir)}
        with self._child_workdir(session, "ocv-detector-", members, request) as workdir:
            (workdir / "regions.json").write_text(json.dumps(regions))
            report = detection_training.run_in_child(workdir, timeout_seconds=2 * DETECTOR_SECONDS + _CHILD_OVERHEAD_SECONDS,
                                                     should_stop=context.should_stop)
            logger.info("iteration %s: detector trained: %s", iteration.id, report)
            for name in ("evaluator", "final"):
                if report.get(name, {}).get("capped"):  # type: ignore[union-attr]
                    logger.warning("iteration %s: the %s detector's schedule was cut short by the %.0f s cap: %s",
                                   iteration.id, name, DETECTOR_SECONDS, report[name])
            validation = json.loads((workdir / "validation.json").read_text())
            model = (workdir / "model.bin").read_bytes()
        key = detector_key(iteration.project_id, iteration.id)
        self._blobs.put(key, save_detector(StoredDetector(model, tag_ids)))
        for i, member in enumerate(members):
            found = validation.get(str(i))
            member.fold = 0 if found is not None else None
            member.detections = None if found is None else [[tag_ids[int(d[0])], *d[1:]] for d in found]
        _complete(session, context, iteration, key, backbone, started)

    @contextmanager
    def _child_workdir(self, session: Session, prefix: str, members: list[IterationImage],
                       request: dict[str, object]) -> Iterator[Path]:
        """A temporary folder holding each member's stored image (``images/{i}.img``) and ``request.json``.

        Commits first, ending the read transaction: what runs in the folder takes minutes."""
        images = images_by_id(session, [m.image_id for m in members])
        with job_workdir(prefix) as workdir:
            (workdir / "images").mkdir()
            for index, member in enumerate(members):
                (workdir / "images" / f"{index}.img").write_bytes(self._blobs.get(images[member.image_id].resized_key))
            (workdir / "request.json").write_text(json.dumps(request))
            session.commit()
            yield workdir


def _complete(session: Session, context: JobContext, iteration: Iteration, key: str, backbone: str, started: float) -> None:
    context.hold(session)
    now = utcnow()
    iteration.status = COMPLETED
    iteration.model_key = key
    iteration.backbone = backbone
    iteration.trained_at = now
    iteration.last_modified = now
    iteration.training_seconds = time.monotonic() - started
    session.commit()
