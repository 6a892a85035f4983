"""Export operations through the official SDK: refusals with the spec's codes, exports of deleted iterations,
newerVersionAvailable, ExportProject / ImportProject copying a project whole, GetArtifact's refusals."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
from azure.cognitiveservices.vision.customvision.training.models import (
    ImageFileCreateBatch,
    ImageFileCreateEntry,
)
from msrest.authentication import ApiKeyCredentials
from sqlalchemy import select

from opencustomvision.domain import exports as export_rules
from opencustomvision.domain.errors import DomainError
from opencustomvision.inference import Predictor
from opencustomvision.jobs.training import detector_key
from opencustomvision.ml.export import platforms
from opencustomvision.ml.registry import BackboneRegistry
from opencustomvision.storage.blobs import LocalBlobStore
from opencustomvision.storage.db import create_db_engine, session_factory
from opencustomvision.storage.models import Export, Job
from tests.conftest import LiveServer, error_code, shared_data, trained

pytestmark = pytest.mark.slow


def client(live_server: LiveServer, key: str | None = None) -> CustomVisionTrainingClient:
    return CustomVisionTrainingClient(live_server.endpoint, ApiKeyCredentials(in_headers={"Training-key": key or live_server.default.training_key}))


@pytest.fixture(scope="module")
def sessions(live_server: LiveServer):  # type: ignore[no-untyped-def]
    engine = create_db_engine(live_server.settings.database_url)
    yield session_factory(engine)
    engine.dispose()


@pytest.fixture(scope="module")
def small(live_server: LiveServer):  # type: ignore[no-untyped-def]
    """A small trained classifier (compact domain, five images a tag)."""
    base = shared_data("customvision-samples", "ImageClassification", "Images")
    trainer = client(live_server)
    domain = next(d for d in trainer.get_domains() if d.type == "Classification" and d.name == "General (compact)")
    project = trainer.create_project(f"export-api-{uuid.uuid4().hex[:8]}", domain_id=domain.id)
    entries = []
    for folder in ("Hemlock", "Japanese_Cherry"):
        tag = trainer.create_tag(project.id, folder)
        entries += [ImageFileCreateEntry(name=p.name, contents=p.read_bytes(), tag_ids=[tag.id]) for p in sorted((base / folder).glob("*.jpg"))[:5]]
    assert trainer.create_images_from_files(project.id, ImageFileCreateBatch(images=entries)).is_batch_successful
    return trainer, project, trained(trainer, project.id)


def wait_for_exports(trainer: CustomVisionTrainingClient, project_id: str, iteration_id: str, timeout: float = 600):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        listed = trainer.get_exports(project_id, iteration_id)
        if all(export.status != "Exporting" for export in listed):
            return listed
        assert time.monotonic() < deadline, "exports did not finish"
        time.sleep(1)


def test_export_refusals_use_the_specs_codes(small) -> None:  # type: ignore[no-untyped-def]
    trainer, project, iteration = small
    assert iteration.exportable and iteration.exportable_to == platforms.available_platforms()
    assert "VAIDK" not in iteration.exportable_to
    assert error_code(lambda: trainer.export_iteration(project.id, iteration.id, "Banana")) == "ErrorExporterInvalidPlatform"
    assert error_code(lambda: trainer.export_iteration(project.id, iteration.id, "VAIDK")) == "BadRequestProjectUnsupportedExportPlatform"
    assert error_code(lambda: trainer.export_iteration(project.id, iteration.id, "ONNX", flavor="TensorFlowLite")) == \
        "BadRequestProjectUnsupportedExportPlatform"
    assert error_code(lambda: trainer.export_iteration(project.id, str(uuid.uuid4()), "ONNX")) == "NotFoundIteration"


def test_export_names_are_matched_as_azure_spells_them_and_a_running_export_is_not_doubled(small, live_server: LiveServer) -> None:  # type: ignore[no-untyped-def]
    trainer, project, iteration = small
    first = trainer.export_iteration(project.id, iteration.id, "onnx", flavor="onnxfloat16")
    assert (first.platform, first.flavor, first.status) == ("ONNX", "OnnxFloat16", "Exporting")
    assert error_code(lambda: trainer.export_iteration(project.id, iteration.id, "ONNX", flavor="OnnxFloat16")) == \
        "BadRequestExportAlreadyInProgress"
    (done,) = wait_for_exports(trainer, project.id, iteration.id)
    assert done.status == "Done" and done.download_uri and not done.newer_version_available
    # The link is signed: tampering with it is refused.
    assert httpx.get(done.download_uri.replace("signature=", "signature=0"), timeout=30).status_code == 403
    # Another resource's key sees neither the project nor its exports.
    stranger = client(live_server, live_server.other.training_key)
    assert error_code(lambda: stranger.get_exports(project.id, iteration.id)) == "NotFoundProject"
    # Exporting again once done replaces the package.
    again = trainer.export_iteration(project.id, iteration.id, "ONNX", flavor="OnnxFloat16")
    assert again.status == "Exporting"
    (replaced,) = wait_for_exports(trainer, project.id, iteration.id)
    assert replaced.status == "Done" and replaced.download_uri != done.download_uri


def test_an_export_made_by_an_earlier_exporter_says_a_newer_version_is_available(small, sessions) -> None:  # type: ignore[no-untyped-def]
    trainer, project, iteration = small
    trainer.export_iteration(project.id, iteration.id, "DockerFile", flavor="ARM")
    wait_for_exports(trainer, project.id, iteration.id)
    with sessions() as session:
        export = session.scalars(select(Export).where(Export.iteration_id == iteration.id, Export.platform == "DockerFile")).one()
        export.exporter_version = "0"
        session.commit()
    docker = next(e for e in trainer.get_exports(project.id, iteration.id) if e.platform == "DockerFile")
    assert docker.newer_version_available is True and docker.flavor == "ARM"


def test_an_iteration_still_training_is_not_exported(small) -> None:  # type: ignore[no-untyped-def]
    trainer, project, _ = small
    training = trainer.train_project(project.id, force_train=True)
    assert training.status == "Training" and not training.exportable and training.exportable_to == []
    assert error_code(lambda: trainer.export_iteration(project.id, training.id, "ONNX")) == "BadRequestExportWhileTraining"
    trained_again = trainer.get_iteration(project.id, training.id)
    while trained_again.status == "Training":
        time.sleep(1)
        trained_again = trainer.get_iteration(project.id, training.id)
    trainer.delete_iteration(project.id, training.id)


def test_deleting_an_iteration_while_it_exports_ends_the_export_cleanly(small, live_server: LiveServer, sessions) -> None:  # type: ignore[no-untyped-def]
    trainer, project, _ = small
    iteration = trainer.train_project(project.id, force_train=True)
    while iteration.status == "Training":
        time.sleep(1)
        iteration = trainer.get_iteration(project.id, iteration.id)
    export = trainer.export_iteration(project.id, iteration.id, "ONNX")
    assert export.status == "Exporting"
    trainer.delete_iteration(project.id, iteration.id)
    assert error_code(lambda: trainer.get_exports(project.id, iteration.id)) == "NotFoundIteration"
    assert error_code(lambda: trainer.export_iteration(project.id, iteration.id, "ONNX")) == "NotFoundIteration"
    deadline = time.monotonic() + 300
    with sessions() as session:
        while True:
            jobs = list(session.scalars(select(Job).where(Job.kind == export_rules.EXPORT_JOB)))
            session.expire_all()
            if all(job.status in ("succeeded", "failed", "canceled") for job in jobs):
                break
            assert time.monotonic() < deadline
            time.sleep(1)
        assert session.scalars(select(Export).where(Export.iteration_id == iteration.id)).first() is None
    folder = live_server.settings.blob_dir / "projects" / project.id / "iterations" / iteration.id
    assert not folder.exists() or not any(folder.rglob("*.zip")), "the deleted iteration's export left a package behind"


def test_platforms_needing_the_export_extra_are_refused_by_name_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the extra (its modules not importable), those platforms answer the spec's code naming the extra, and
    exportableTo leaves them out."""
    import importlib.util

    found = importlib.util.find_spec
    heavy = {module for target in platforms.TARGETS for module in target.requires}
    monkeypatch.setattr(platforms.importlib.util, "find_spec", lambda name, *a: None if name in heavy else found(name, *a))
    with pytest.raises(DomainError) as refused:
        export_rules.resolve_target("TensorFlow", "TensorFlowLite")
    assert refused.value.code == "BadRequestProjectUnsupportedExportPlatform" and "'export' extra" in refused.value.message
    assert "pip install" in refused.value.message
    assert platforms.available_platforms() == ["ONNX", "DockerFile"]
    assert export_rules.resolve_target("ONNX", None).platform == "ONNX"


def test_import_project_copies_a_project_whole(fork_scissors_detector, live_server: LiveServer) -> None:  # type: ignore[no-untyped-def]
    trainer, project, iteration, tags, _ = fork_scissors_detector
    images = trainer.get_tagged_images(project.id, take=256)
    trainer.update_image_metadata(project.id, [images[0].id, images[1].id], {"camera": "kitchen", "shelf": "2"})
    images = trainer.get_tagged_images(project.id, take=256)
    summary = trainer.export_project(project.id)
    assert (summary.image_count, summary.tag_count, summary.iteration_count) == (len(images), 2, 1)
    assert summary.region_count == sum(len(image.regions) for image in images) and summary.estimated_import_time_in_ms > 0

    # Any resource holding the token imports it, as on Azure.
    importer = client(live_server, live_server.other.training_key)
    assert error_code(lambda: importer.import_project("not-a-token")) == "BadRequestInvalidImportToken"
    copy = importer.import_project(summary.token, name="imported fork and scissors")
    assert copy.id != project.id and copy.name == "imported fork and scissors" and copy.status == "Succeeded"
    original = trainer.get_project(project.id)
    assert copy.settings.domain_id == original.settings.domain_id
    assert copy.settings.classification_type == original.settings.classification_type
    assert copy.description == original.description

    old_tags = {tag.name: tag for tag in trainer.get_tags(project.id)}
    new_tags = {tag.name: tag for tag in importer.get_tags(copy.id)}
    assert set(new_tags) == set(old_tags)
    for name, tag in new_tags.items():
        assert (tag.type, tag.description, tag.image_count) == (old_tags[name].type, old_tags[name].description, old_tags[name].image_count)
        assert tag.id != old_tags[name].id

    copied = importer.get_tagged_images(copy.id, take=256)
    assert len(copied) == len(images)
    by_hash = {}
    for image in images:
        by_hash[httpx.get(image.original_image_uri, timeout=30).content] = image
    for image in copied:
        source = by_hash[httpx.get(image.original_image_uri, timeout=30).content]  # the original file, byte for byte
        assert (image.width, image.height, image.metadata) == (source.width, source.height, source.metadata)
        assert sorted(t.tag_name for t in image.tags) == sorted(t.tag_name for t in source.tags)
        assert sorted((r.tag_name, r.left, r.top, r.width, r.height) for r in image.regions) == \
            sorted((r.tag_name, r.left, r.top, r.width, r.height) for r in source.regions)
        assert all(new_tags[r.tag_name].id == r.tag_id for r in image.regions)
        assert image.id != source.id
    assert sum(1 for image in copied if image.metadata == {"camera": "kitchen", "shelf": "2"}) == 2

    (twin,) = importer.get_iterations(copy.id)
    assert (twin.name, twin.status, twin.domain_id, twin.training_type) == (iteration.name, "Completed", iteration.domain_id, iteration.training_type)
    assert twin.publish_name is None and twin.exportable
    old_performance = trainer.get_iteration_performance(project.id, iteration.id)
    new_performance = importer.get_iteration_performance(copy.id, twin.id)
    assert new_performance.average_precision == pytest.approx(old_performance.average_precision)
    assert {t.name: t.average_precision for t in new_performance.per_tag_performance} == \
        pytest.approx({t.name: t.average_precision for t in old_performance.per_tag_performance})

    # The copied model answers with the copy's tags, as the original with its own.
    predictor = Predictor(LocalBlobStore(live_server.settings.blob_dir), BackboneRegistry(live_server.settings.data_dir / "models"))
    photo = httpx.get(images[0].original_image_uri, timeout=30).content
    before = predictor.detect(detector_key(project.id, iteration.id), photo)
    after = predictor.detect(detector_key(copy.id, twin.id), photo)
    old_names = {tag.id: name for name, tag in old_tags.items()}
    new_names = {tag.id: name for name, tag in new_tags.items()}
    assert [(old_names[t], p, b) for t, p, b in before] == [(new_names[t], p, b) for t, p, b in after]

    # GetArtifact serves the copy's own files and nothing else.
    path = copied[0].original_image_uri.split("/blobs/", 1)[1].split("?", 1)[0]
    artifact = httpx.get(live_server.training_url(f"/projects/{copy.id}/artifacts"), params={"path": path},
                         headers={"Training-Key": live_server.other.training_key}, timeout=30)
    assert artifact.status_code == 200 and artifact.content == httpx.get(copied[0].original_image_uri, timeout=30).content
    relative = path.split(f"projects/{copy.id}/", 1)[1]
    assert httpx.get(live_server.training_url(f"/projects/{copy.id}/artifacts"), params={"path": relative},
                     headers={"Training-Key": live_server.other.training_key}, timeout=30).content == artifact.content
    original_path = images[0].original_image_uri.split("/blobs/", 1)[1].split("?", 1)[0]
    for bad in (original_path, f"../{project.id}/{relative}", "images/../../../../etc/passwd", "", "images"):
        refused = httpx.get(live_server.training_url(f"/projects/{copy.id}/artifacts"), params={"path": bad},
                            headers={"Training-Key": live_server.other.training_key}, timeout=30)
        assert refused.status_code == 400 and refused.json()["code"] == "BadRequestInvalidArtifactUri", bad
    importer.delete_project(copy.id)
