"""The export job: an iteration's served model, handed to ``ml/export`` in a child process, comes back as a package.

Where the database meets the exporter: it reads the export and its iteration, writes the served graphs and head
into a work folder, runs ``ml.export.run`` there (the converters never load into this process) and stores the
package. The frozen TensorFlow twin a TensorFlow or CoreML export makes is kept beside the packages, so the next
such export of the same model skips onnx2tf, the slow step.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from opencustomvision.domain import exports
from opencustomvision.domain.catalog import is_detection
from opencustomvision.jobs.runner import JobCanceled, JobContext, JobLost
from opencustomvision.jobs.training import load_classifier, load_detector
from opencustomvision.jobs.workdirs import job_workdir
from opencustomvision.ml.backbone import ensure_onnx, get_spec
from opencustomvision.ml.child import ChildStopped
from opencustomvision.ml.detection import DetectionModel
from opencustomvision.ml.detection.features import ensure_multiscale_onnx
from opencustomvision.ml.export import run as export_run
from opencustomvision.ml.export.platforms import EXPORTER_VERSION, COREML, TENSORFLOW
from opencustomvision.ml.registry import BackboneRegistry
from opencustomvision.storage.blobs import BlobNotFound, BlobStore
from opencustomvision.storage.models import Export, Iteration, Tag

logger = logging.getLogger(__name__)

# onnx2tf on the largest backbone, then a conversion, on a busy 2-core machine, with room to spare.
EXPORT_TIMEOUT_SECONDS = 1800


def tensorflow_cache_key(iteration: Iteration) -> str:
    return f"{exports.exports_blob_prefix(iteration)}/tensorflow-v{EXPORTER_VERSION}.pb"


class ExportJob:
    def __init__(self, sessions: sessionmaker[Session], blobs: BlobStore, backbones: BackboneRegistry) -> None:
        self._sessions = sessions
        self._blobs = blobs
        self._backbones = backbones

    def run(self, context: JobContext) -> None:
        try:
            self._export(context)
        except JobLost:
            raise
        except (JobCanceled, ChildStopped):
            context.stop_if_asked()
            self._fail(context.subject_id, "canceled", context)
            raise JobCanceled(context.job_id) from None
        except Exception as error:
            self._fail(context.subject_id, f"{type(error).__name__}: {error}", context)
            raise

    def give_up(self, subject_id: str, reason: str) -> None:
        self._fail(subject_id, reason)

    def _fail(self, export_id: str, reason: str, context: JobContext | None = None) -> None:
        with self._sessions() as session:
            if context is not None:
                context.hold(session)
            export = session.get(Export, export_id)
            if export is not None and export.status == exports.EXPORTING:
                exports.fail_export(export, reason)
            session.commit()

    def _export(self, context: JobContext) -> None:
        with self._sessions() as session:
            export = session.get(Export, context.subject_id)
            if export is None:  # its iteration was deleted while it waited
                return
            iteration = session.get(Iteration, export.iteration_id)
            if iteration is None or iteration.model_key is None:
                raise RuntimeError("the iteration has no trained model any more")
            tags = {tag.id: tag.name for tag in session.scalars(select(Tag).where(Tag.project_id == iteration.project_id))}
            request: dict[str, object] = {"platform": export.platform, "flavor": export.flavor,
                                          "project_id": iteration.project_id, "iteration_id": iteration.id}
            model_blob = self._blobs.get(iteration.model_key)
            detection = is_detection(iteration.domain_id)
            uses_tensorflow = export.platform in (TENSORFLOW, COREML)
            cache_key = tensorflow_cache_key(iteration)
        context.report_progress(0.05)
        with job_workdir("ocv-export-") as workdir:
            tag_ids = self._write_model(workdir, model_blob, detection, request)
            request["tag_ids"] = tag_ids
            request["labels"] = [tags.get(tag_id, tag_id) for tag_id in tag_ids]  # a deleted tag keeps its id as label
            (workdir / "request.json").write_text(json.dumps(request))
            cached = False
            if uses_tensorflow:
                try:
                    (workdir / export_run.TENSORFLOW_CACHE).write_bytes(self._blobs.get(cache_key))
                    cached = True
                except BlobNotFound:
                    pass
            context.stop_if_asked()
            report = export_run.run_in_child(workdir, timeout_seconds=EXPORT_TIMEOUT_SECONDS, should_stop=context.should_stop)
            logger.info("export %s (%s): %s", context.subject_id, report.get("target"), report)
            context.report_progress(0.9)
            package = (workdir / "package.zip").read_bytes()
            made = workdir / export_run.TENSORFLOW_CACHE
            tensorflow_graph = made.read_bytes() if uses_tensorflow and not cached and made.is_file() else None
        self._store(context, package, tensorflow_graph, cache_key)

    def _write_model(self, workdir: Path, blob: bytes, detection: bool, request: dict[str, object]) -> list[str]:
        """The served graphs and head, as files the child reads; returns the model's tag ids in class order."""
        cache = self._backbones.cache_dir
        if detection:
            stored = load_detector(blob)
            model = DetectionModel.from_bytes(stored.model, cache)
            (workdir / "backbone.onnx").write_bytes(ensure_multiscale_onnx(model.config.backbone, cache).read_bytes())
            (workdir / "head.onnx").write_bytes(model.head_onnx)
            request.update(detection=True, mode=None, input_size=model.config.input_size, strides=list(model.config.strides),
                           tag_count=model.config.tag_count)
            return list(stored.tag_ids)
        classifier = load_classifier(blob)
        backbone = classifier.fine_tuned_onnx or ensure_onnx(classifier.base_backbone, cache).read_bytes()
        (workdir / "backbone.onnx").write_bytes(backbone)
        np.savez(workdir / "head.npz", coef=classifier.head.coef_, intercept=classifier.head.intercept_)
        request.update(detection=False, mode=classifier.head.mode, input_size=get_spec(classifier.base_backbone).input_size)
        return list(classifier.head.tag_ids_)

    def _store(self, context: JobContext, package: bytes, tensorflow_graph: bytes | None, cache_key: str) -> None:
        with self._sessions() as session:
            context.hold(session)
            export = session.get(Export, context.subject_id)
            iteration = session.get(Iteration, export.iteration_id) if export is not None else None
            if export is None or iteration is None:  # deleted while it ran: nothing to keep
                session.commit()
                return
            key = exports.finish_export(session, export, iteration, size=len(package))
            self._blobs.put(key, package)
            if tensorflow_graph is not None:
                self._blobs.put(cache_key, tensorflow_graph)
            try:
                session.commit()
            except BaseException:
                self._blobs.delete(key)
                raise
