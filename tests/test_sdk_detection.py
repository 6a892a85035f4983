"""The official SDK's object-detection quickstart, unchanged, against a live server."""

from __future__ import annotations

import json
import time
import uuid

import numpy as np
import pytest
from azure.cognitiveservices.vision.customvision.prediction import CustomVisionPredictionClient
from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
from azure.cognitiveservices.vision.customvision.training.models import (
    CustomVisionErrorException,
    ImageFileCreateBatch,
    ImageFileCreateEntry,
    PredictionQueryToken,
    Region,
)
from msrest.authentication import ApiKeyCredentials

from opencustomvision.ml.detection.boxes import ltwh_to_xyxy, pairwise_iou
from tests.conftest import LiveServer, shared_data

pytestmark = pytest.mark.slow

# The fork in the quickstart's test photo, measured by hand (left, top, width, height).
TEST_FORK = (0.11, 0.255, 0.70, 0.545)


def error_code(call) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(CustomVisionErrorException) as caught:
        call()
    return caught.value.error.code


@pytest.fixture(scope="module")
def detection(live_server: LiveServer):  # type: ignore[no-untyped-def]
    base = shared_data("customvision-samples", "ObjectDetection")
    trainer = CustomVisionTrainingClient(live_server.endpoint, ApiKeyCredentials(in_headers={"Training-key": live_server.default.training_key}))
    domain = next(d for d in trainer.get_domains() if d.type == "ObjectDetection" and d.name == "General")
    project = trainer.create_project(f"detection-{uuid.uuid4().hex[:8]}", domain_id=domain.id)
    tags = {name: trainer.create_tag(project.id, name) for name in ("fork", "scissors")}

    # Too few images: the spec's validation code, and no iteration.
    assert error_code(lambda: trainer.train_project(project.id)) == "BadRequestDetectionTrainingValidationFailed"

    boxes = json.loads((base / "regions.json").read_text())
    entries = []
    for name, tag in tags.items():
        for stem, (left, top, width, height) in sorted(boxes[name].items()):
            entries.append(ImageFileCreateEntry(
                name=f"{stem}.jpg", contents=(base / "Images" / name / f"{stem}.jpg").read_bytes(),
                regions=[Region(tag_id=tag.id, left=left, top=top, width=width, height=height)]))
    for start in range(0, len(entries), 64):
        assert trainer.create_images_from_files(project.id, ImageFileCreateBatch(images=entries[start:start + 64])).is_batch_successful

    assert error_code(lambda: trainer.train_project(project.id, training_type="Advanced")) == "BadRequestDomainNotSupportedForAdvancedTraining"
    iteration = trainer.train_project(project.id)
    assert iteration.status == "Training"
    deadline = time.monotonic() + 900
    while iteration.status == "Training":
        assert time.monotonic() < deadline, "training did not finish in time"
        time.sleep(1)
        iteration = trainer.get_iteration(project.id, iteration.id)
    assert iteration.status == "Completed", iteration
    return trainer, project, iteration, tags, base


def test_detect_finds_the_fork_with_a_tight_box(detection, live_server: LiveServer) -> None:  # type: ignore[no-untyped-def]
    trainer, project, iteration, tags, base = detection
    trainer.publish_iteration(project.id, iteration.id, "detectModel", live_server.default.prediction_resource_id)
    predictor = CustomVisionPredictionClient(live_server.endpoint, ApiKeyCredentials(in_headers={"Prediction-key": live_server.default.prediction_key}))
    with open(base / "Images" / "test" / "test_image.jpg", "rb") as image:
        results = predictor.detect_image(project.id, "detectModel", image.read())
    top = results.predictions[0]
    assert top.tag_name == "fork" and top.probability > 0.4
    box = (top.bounding_box.left, top.bounding_box.top, top.bounding_box.width, top.bounding_box.height)
    assert pairwise_iou(ltwh_to_xyxy([box]), ltwh_to_xyxy([TEST_FORK]))[0, 0] > 0.5
    probabilities = [p.probability for p in results.predictions]
    assert probabilities == sorted(probabilities, reverse=True) and len(probabilities) <= 200
    corners = ltwh_to_xyxy([[p.bounding_box.left, p.bounding_box.top, p.bounding_box.width, p.bounding_box.height]
                            for p in results.predictions])
    assert np.all(corners >= 0) and np.all(corners <= 1)

    with open(base / "Images" / "test" / "test_image.jpg", "rb") as image:
        quick = trainer.quick_test_image(project.id, image.read(), iteration_id=iteration.id, store=False)
    assert quick.predictions[0].tag_name == "fork" and quick.predictions[0].bounding_box is not None

    # The stored prediction keeps its boxes; a classification call on a detector is refused.
    stored = trainer.query_predictions(project.id, PredictionQueryToken(max_count=5))
    assert stored.results and stored.results[0].predictions[0].bounding_box is not None
    with pytest.raises(Exception):
        predictor.classify_image(project.id, "detectModel", b"irrelevant")


def test_performance_is_measured_on_held_out_images(detection) -> None:  # type: ignore[no-untyped-def]
    trainer, project, iteration, tags, _ = detection
    performance = trainer.get_iteration_performance(project.id, iteration.id, threshold=0.3, overlap_threshold=0.5)
    assert {tag.name for tag in performance.per_tag_performance} == {"fork", "scissors"}
    assert 0 < performance.average_precision <= 1
    evaluated = trainer.get_image_performances(project.id, iteration.id, take=256)
    total = trainer.get_image_count(project.id, iteration_id=iteration.id)
    # A fifth of the images, kept out of the detector that judged them.
    assert 1 <= len(evaluated) == trainer.get_image_performance_count(project.id, iteration.id) < total
    assert all(p.bounding_box is not None for image in evaluated for p in image.predictions)


def test_smart_labeler_suggests_regions_for_untagged_images(detection) -> None:  # type: ignore[no-untyped-def]
    trainer, project, iteration, tags, base = detection
    untagged = trainer.create_images_from_files(project.id, ImageFileCreateBatch(images=[
        ImageFileCreateEntry(name="untagged.jpg", contents=(base / "Images" / "test" / "test_image.jpg").read_bytes())]))
    image_id = untagged.images[0].image.id
    suggested = trainer.suggest_tags_and_regions(project.id, iteration.id, image_ids=[image_id])
    assert [s.id for s in suggested] == [image_id]
    top = suggested[0].predictions[0]
    assert top.tag_name == "fork" and top.bounding_box is not None
    box = (top.bounding_box.left, top.bounding_box.top, top.bounding_box.width, top.bounding_box.height)
    assert pairwise_iou(ltwh_to_xyxy([box]), ltwh_to_xyxy([TEST_FORK]))[0, 0] > 0.5
    counts = trainer.query_suggested_image_count(project.id, iteration.id, tag_ids=[tags["fork"].id], threshold=0.4)
    assert counts[tags["fork"].id] >= 1


def test_region_proposals_need_no_trained_iteration(live_server: LiveServer) -> None:
    base = shared_data("customvision-samples", "ObjectDetection")
    trainer = CustomVisionTrainingClient(live_server.endpoint, ApiKeyCredentials(in_headers={"Training-key": live_server.default.training_key}))
    project = trainer.create_project(f"proposals-{uuid.uuid4().hex[:8]}")
    created = trainer.create_images_from_files(project.id, ImageFileCreateBatch(images=[
        ImageFileCreateEntry(name="test.jpg", contents=(base / "Images" / "test" / "test_image.jpg").read_bytes())]))
    image_id = created.images[0].image.id

    found = trainer.get_image_region_proposals(project.id, image_id)
    assert found.project_id == project.id and found.image_id == image_id
    confidences = [p.confidence for p in found.proposals]
    assert 1 <= len(confidences) <= 50 and confidences == sorted(confidences, reverse=True)
    boxes = [(p.bounding_box.left, p.bounding_box.top, p.bounding_box.width, p.bounding_box.height) for p in found.proposals]
    corners = ltwh_to_xyxy(boxes)
    assert np.all(corners >= 0) and np.all(corners <= 1)
    assert pairwise_iou(ltwh_to_xyxy([TEST_FORK]), corners[:10]).max() >= 0.5  # the fork is among the first ten

    assert error_code(lambda: trainer.get_image_region_proposals(project.id, str(uuid.uuid4()))) == "NotFoundImage"
