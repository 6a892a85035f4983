"""The official SDK's image-classification quickstart, unchanged, against a live server."""

from __future__ import annotations

import email
import email.policy
import io
import time
import uuid

import pytest
from azure.cognitiveservices.vision.customvision.prediction import CustomVisionPredictionClient
from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
from azure.cognitiveservices.vision.customvision.training.models import (
    ImageFileCreateBatch,
    ImageFileCreateEntry,
    ImageIdCreateBatch,
    ImageIdCreateEntry,
    PredictionQueryToken,
    SuggestedTagAndRegionQueryToken,
)
from msrest.authentication import ApiKeyCredentials
from PIL import Image as PILImage

from tests.conftest import LiveServer, error_code, shared_data

pytestmark = [pytest.mark.slow, pytest.mark.heavy]



def wait_for_training(trainer: CustomVisionTrainingClient, project_id: str, iteration_id: str, timeout: float = 240):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    iteration = trainer.get_iteration(project_id, iteration_id)
    while iteration.status == "Training":
        assert time.monotonic() < deadline, "training did not finish in time"
        time.sleep(0.5)
        iteration = trainer.get_iteration(project_id, iteration_id)
    return iteration


@pytest.fixture(scope="module")
def quickstart(live_server: LiveServer):  # type: ignore[no-untyped-def]
    base = shared_data("customvision-samples", "ImageClassification", "Images")
    trainer = CustomVisionTrainingClient(live_server.endpoint, ApiKeyCredentials(in_headers={"Training-key": live_server.default.training_key}))
    project = trainer.create_project(f"quickstart-{uuid.uuid4().hex[:8]}")
    hemlock = trainer.create_tag(project.id, "Hemlock")
    cherry = trainer.create_tag(project.id, "Japanese Cherry")
    entries = []
    for folder, tag in (("Hemlock", hemlock), ("Japanese_Cherry", cherry)):
        for path in sorted((base / folder).glob("*.jpg")):
            entries.append(ImageFileCreateEntry(name=path.name, contents=path.read_bytes(), tag_ids=[tag.id]))
    assert trainer.create_images_from_files(project.id, ImageFileCreateBatch(images=entries)).is_batch_successful

    started = time.monotonic()
    iteration = trainer.train_project(project.id)
    assert iteration.status == "Training"
    iteration = wait_for_training(trainer, project.id, iteration.id)
    training_seconds = time.monotonic() - started
    assert iteration.status == "Completed", iteration
    return trainer, project, iteration, hemlock, cherry, base, training_seconds


def test_train_publish_classify(quickstart, live_server: LiveServer) -> None:  # type: ignore[no-untyped-def]
    trainer, project, iteration, hemlock, _, base, _ = quickstart
    trainer.publish_iteration(project.id, iteration.id, "classifyModel", live_server.default.prediction_resource_id)
    predictor = CustomVisionPredictionClient(live_server.endpoint, ApiKeyCredentials(in_headers={"Prediction-key": live_server.default.prediction_key}))
    with open(base / "Test" / "test_image.jpg", "rb") as image:
        results = predictor.classify_image(project.id, "classifyModel", image.read())
    assert [p.tag_name for p in results.predictions][0] == "Hemlock"
    assert results.predictions[0].probability > 0.5
    assert results.predictions[0].tag_type == "Regular"
    probabilities = [p.probability for p in results.predictions]
    assert probabilities == sorted(probabilities, reverse=True) and abs(sum(probabilities) - 1) < 1e-4
    with open(base / "Test" / "test_image.jpg", "rb") as image:
        again = predictor.classify_image_with_no_store(project.id, "classifyModel", image.read())
    assert again.predictions[0].tag_name == "Hemlock"

    stranger = CustomVisionPredictionClient(live_server.endpoint, ApiKeyCredentials(in_headers={"Prediction-key": live_server.other.prediction_key}))
    with pytest.raises(Exception):
        stranger.classify_image(project.id, "classifyModel", b"irrelevant")


def test_iteration_fields_and_honest_performance(quickstart) -> None:  # type: ignore[no-untyped-def]
    trainer, project, iteration, hemlock, cherry, _, _ = quickstart
    assert iteration.trained_at is not None and iteration.domain_id == project.settings.domain_id
    assert iteration.classification_type == "Multiclass" and iteration.training_type == "Regular"
    performance = trainer.get_iteration_performance(project.id, iteration.id, threshold=0.5)
    assert {tag.name for tag in performance.per_tag_performance} == {"Hemlock", "Japanese Cherry"}
    assert 0 <= performance.precision <= 1 and 0 <= performance.recall <= 1
    assert trainer.get_image_performance_count(project.id, iteration.id) == 20
    images = trainer.get_image_performances(project.id, iteration.id, take=20)
    assert len(images) == 20 and all(len(image.predictions) == 2 for image in images)


def test_training_validation(quickstart, live_server: LiveServer) -> None:  # type: ignore[no-untyped-def]
    trainer, project, iteration, _, _, _, _ = quickstart
    assert error_code(lambda: trainer.train_project(project.id)) == "BadRequestTrainingNotNeeded"
    lonely = trainer.create_project(f"lonely-{uuid.uuid4().hex[:8]}")
    trainer.create_tag(lonely.id, "only")
    assert error_code(lambda: trainer.train_project(lonely.id)).startswith("BadRequest")
    assert error_code(lambda: trainer.publish_iteration(project.id, iteration.id, "x", "not-a-resource")) == "BadRequestInvalidPublishTarget"
    trainer.publish_iteration(project.id, iteration.id, "classifyModel", live_server.default.prediction_resource_id)
    assert error_code(lambda: trainer.delete_iteration(project.id, iteration.id)) == "BadRequestIterationIsPublished"
    assert error_code(lambda: trainer.publish_iteration(project.id, iteration.id, "bad/name", live_server.default.prediction_resource_id)) == "BadRequestInvalidPublishName"


def test_stored_predictions_and_quick_test(quickstart, live_server: LiveServer) -> None:  # type: ignore[no-untyped-def]
    trainer, project, iteration, hemlock, cherry, base, _ = quickstart
    trainer.publish_iteration(project.id, iteration.id, "classifyModel", live_server.default.prediction_resource_id)
    predictor = CustomVisionPredictionClient(live_server.endpoint, ApiKeyCredentials(in_headers={"Prediction-key": live_server.default.prediction_key}))
    test_image = (base / "Test" / "test_image.jpg").read_bytes()
    before = {p.id for p in trainer.query_predictions(project.id, PredictionQueryToken(max_count=256)).results}
    unstored = predictor.classify_image_with_no_store(project.id, "classifyModel", test_image, application="bench")
    stored = predictor.classify_image(project.id, "classifyModel", test_image, application="field-app")
    result = trainer.query_predictions(project.id, PredictionQueryToken(max_count=256, application="field-app"))
    ids = {p.id for p in result.results}
    assert stored.id in ids and unstored.id not in ids and stored.id not in before
    kept = next(p for p in result.results if p.id == stored.id)
    assert kept.predictions[0].tag_name == "Hemlock" and kept.iteration == iteration.id

    quick = trainer.quick_test_image(project.id, test_image)
    assert quick.predictions[0].tag_name == "Hemlock" and quick.iteration == iteration.id
    assert quick.id in {p.id for p in trainer.query_predictions(project.id, PredictionQueryToken(max_count=256)).results}
    unkept = trainer.quick_test_image(project.id, test_image, store=False)
    assert unkept.id not in {p.id for p in trainer.query_predictions(project.id, PredictionQueryToken(max_count=256)).results}

    count = trainer.get_tagged_image_count(project.id, tag_ids=[hemlock.id])
    summary = trainer.create_images_from_predictions(
        project.id, ImageIdCreateBatch(images=[ImageIdCreateEntry(id=stored.id, tag_ids=[hemlock.id])]))
    assert summary.is_batch_successful and summary.images[0].image.tags[0].tag_name == "Hemlock"
    assert trainer.get_tagged_image_count(project.id, tag_ids=[hemlock.id]) == count + 1

    trainer.delete_prediction(project.id, ids=[stored.id])
    assert stored.id not in {p.id for p in trainer.query_predictions(project.id, PredictionQueryToken(max_count=256)).results}


def test_smart_labeler_suggests_tags_for_untagged_images(quickstart) -> None:  # type: ignore[no-untyped-def]
    trainer, project, iteration, hemlock, cherry, base, _ = quickstart
    image = (base / "Test" / "test_image.jpg").read_bytes()
    flipped = io.BytesIO()
    PILImage.open(io.BytesIO(image)).transpose(PILImage.Transpose.FLIP_LEFT_RIGHT).save(flipped, "JPEG")
    created = trainer.create_images_from_files(project.id, ImageFileCreateBatch(images=[
        ImageFileCreateEntry(name="untagged.jpg", contents=flipped.getvalue())]))
    untagged_id = created.images[0].image.id

    suggested = trainer.suggest_tags_and_regions(project.id, iteration.id, image_ids=[untagged_id])
    assert [s.id for s in suggested] == [untagged_id]
    assert suggested[0].predictions[0].tag_name == "Hemlock"
    assert 0 <= suggested[0].prediction_uncertainty < 0.5

    query = trainer.query_suggested_images(project.id, iteration.id, SuggestedTagAndRegionQueryToken(
        tag_ids=[hemlock.id], threshold=0.5, max_count=10, sort_by="UncertaintyAscending"))
    assert untagged_id in {r.id for r in query.results}
    assert all(r.predictions for r in query.results)
    none = trainer.query_suggested_images(project.id, iteration.id, SuggestedTagAndRegionQueryToken(
        tag_ids=[cherry.id], threshold=0.99, max_count=10))
    assert untagged_id not in {r.id for r in none.results}
    counts = trainer.query_suggested_image_count(project.id, iteration.id, tag_ids=[hemlock.id, cherry.id], threshold=0.5)
    assert counts[hemlock.id] >= 1


def test_notification_email_when_training_ends(quickstart, live_server: LiveServer) -> None:  # type: ignore[no-untyped-def]
    trainer, project, _, _, _, _, _ = quickstart
    iteration = trainer.train_project(project.id, force_train=True, notification_email_address="owner@example.com")
    iteration = wait_for_training(trainer, project.id, iteration.id)
    deadline = time.monotonic() + 10
    while not any("owner@example.com" in rcpt for rcpt, _ in live_server.mail.messages):
        assert time.monotonic() < deadline, "no notification arrived"
        time.sleep(0.1)
    raw = next(body for rcpt, body in live_server.mail.messages if "owner@example.com" in rcpt)
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert project.name in message["Subject"] and iteration.name in message["Subject"]
    assert "status Completed" in message.get_content()
    assert error_code(lambda: trainer.train_project(project.id, force_train=True, notification_email_address="not-an-address")) == "BadRequestInvalidEmailAddress"


def test_listings_of_an_iteration_show_what_it_trained_on(quickstart) -> None:  # type: ignore[no-untyped-def]
    trainer, project, iteration, hemlock, _, _, _ = quickstart
    assert trainer.get_image_count(project.id, iteration_id=iteration.id) == 20
    assert trainer.get_tagged_image_count(project.id, iteration_id=iteration.id, tag_ids=[hemlock.id]) == 10
    trained = trainer.get_images(project.id, iteration_id=iteration.id, take=256)
    assert len(trained) == 20
    workspace = trainer.get_images(project.id, take=256)
    assert len(workspace) > 20  # later tests add images to the workspace, never to a trained iteration
    assert {t.name: t.image_count for t in trainer.get_tags(project.id, iteration_id=iteration.id)} == {"Hemlock": 10, "Japanese Cherry": 10}
    outsider = next(image for image in workspace if image.id not in {t.id for t in trained})
    assert trainer.get_images_by_ids(project.id, image_ids=[outsider.id], iteration_id=iteration.id) == []
    assert error_code(lambda: trainer.get_images(project.id, iteration_id=str(uuid.uuid4()))) == "NotFoundIteration"


def test_advanced_training_fine_tunes_the_backbone_and_serves_it(quickstart, live_server: LiveServer) -> None:  # type: ignore[no-untyped-def]
    trainer, project, regular, _, _, base, _ = quickstart
    iteration = trainer.train_project(project.id, training_type="Advanced", reserved_budget_in_hours=1)
    assert iteration.status == "Training" and iteration.training_type == "Advanced"
    iteration = wait_for_training(trainer, project.id, iteration.id, timeout=600)
    assert iteration.status == "Completed", iteration
    assert iteration.training_type == "Advanced" and iteration.reserved_budget_in_hours == 1

    # Metrics come from fine-tunings that never saw the image they judge.
    performance = trainer.get_iteration_performance(project.id, iteration.id, threshold=0.5)
    assert {tag.name for tag in performance.per_tag_performance} == {"Hemlock", "Japanese Cherry"}
    regular_images = {image.id: image for image in trainer.get_image_performances(project.id, regular.id, take=256)}
    advanced_images = trainer.get_image_performances(project.id, iteration.id, take=256)
    assert trainer.get_image_performance_count(project.id, iteration.id) == len(advanced_images) >= 20
    assert set(regular_images) <= {image.id for image in advanced_images}  # earlier tests may have added some
    assert any(  # another model: other probabilities for the same held-out images
        abs(image.predictions[0].probability - regular_images[image.id].predictions[0].probability) > 1e-3
        for image in advanced_images if image.id in regular_images
    )

    trainer.publish_iteration(project.id, iteration.id, "advancedModel", live_server.default.prediction_resource_id)
    predictor = CustomVisionPredictionClient(live_server.endpoint, ApiKeyCredentials(in_headers={"Prediction-key": live_server.default.prediction_key}))
    with open(base / "Test" / "test_image.jpg", "rb") as image:
        results = predictor.classify_image_with_no_store(project.id, "advancedModel", image.read())
    assert results.iteration == iteration.id
    assert results.predictions[0].tag_name == "Hemlock" and results.predictions[0].probability > 0.5

    # The smart labeler scores stored images with the fine-tuned backbone too.
    unseen = io.BytesIO()  # bytes no earlier test stored
    PILImage.open(base / "Test" / "test_image.jpg").transpose(PILImage.Transpose.FLIP_LEFT_RIGHT).save(unseen, "JPEG", quality=70)
    created = trainer.create_images_from_files(project.id, ImageFileCreateBatch(images=[
        ImageFileCreateEntry(name="untagged-advanced.jpg", contents=unseen.getvalue())]))
    assert created.is_batch_successful
    suggestion = trainer.suggest_tags_and_regions(project.id, iteration.id, image_ids=[created.images[0].image.id])
    assert suggestion[0].predictions[0].tag_name == "Hemlock"

    trainer.unpublish_iteration(project.id, iteration.id)
    trainer.delete_iteration(project.id, iteration.id)
    assert iteration.id not in {it.id for it in trainer.get_iterations(project.id)}
