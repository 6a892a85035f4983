"""The official SDK's object-detection quickstart, unchanged, against a live server."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import numpy as np
import pytest
from azure.cognitiveservices.vision.customvision.prediction import CustomVisionPredictionClient
from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
from azure.cognitiveservices.vision.customvision.training.models import (
    CustomVisionErrorException,
    ImageFileCreateBatch,
    ImageFileCreateEntry,
    ImageRegionCreateEntry,
    PredictionQueryToken,
    Region,
)
from msrest.authentication import ApiKeyCredentials
from PIL import Image

from opencustomvision.ml.detection.boxes import ltwh_to_xyxy, pairwise_iou
from tests.conftest import LiveServer, error_code, shared_data, trained

pytestmark = [pytest.mark.slow, pytest.mark.heavy]

# The fork in the quickstart's test photo, measured by hand (left, top, width, height).
TEST_FORK = (0.11, 0.255, 0.70, 0.545)
# The fruit in the AI-102 lab's test-detector/produce.jpg (1024x768), measured by hand.
PRODUCE = {"banana": (0.0137, 0.3177, 0.4307, 0.4831), "orange": (0.4746, 0.2148, 0.2480, 0.3281),
           "apple": (0.6426, 0.4583, 0.3516, 0.4427)}
# What the AI-102 lab has its learners draw in the portal on untagged-images/image1..10, drawn by hand likewise.
PORTAL_REGIONS = Path(__file__).parent / "data" / "ai102_od_fruit_portal_regions.json"


@pytest.fixture(scope="module")
def detection(fork_scissors_detector):  # type: ignore[no-untyped-def]
    """The quickstart's detector, trained once per session (tests/conftest.py) and shared with the export tests."""
    return fork_scissors_detector


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

    # A phone photo: pixels stored on their side, an EXIF orientation saying how to turn them upright. Boxes are
    # normalised to the upright picture: the same box as for the upright photo (unturned pixels would give a box
    # at IoU ~0.64 with it: the fork's box is nearly square and central, so the hand-drawn box cannot tell).
    upright = Image.open(base / "Images" / "test" / "test_image.jpg")
    sideways = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    upright.transpose(Image.Transpose.ROTATE_90).save(sideways, "JPEG", quality=95, exif=exif)
    turned = predictor.detect_image_with_no_store(project.id, "detectModel", sideways.getvalue()).predictions[0]
    assert turned.tag_name == "fork" and abs(turned.probability - top.probability) < 0.05
    turned_box = (turned.bounding_box.left, turned.bounding_box.top, turned.bounding_box.width, turned.bounding_box.height)
    assert pairwise_iou(ltwh_to_xyxy([turned_box]), ltwh_to_xyxy([box]))[0, 0] > 0.9

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


def test_ai102_lab_fruit_detector(live_server: LiveServer) -> None:
    """The AI-102 object-detection lab, as its learners do it.

    Its tagged-images.json (Custom Vision's own region format: 23 images, apple 9, banana 13, orange 10 of them)
    is uploaded as the lab's code does; alone it is short of the 15 boxed images a tag that detection needs, and
    TrainProject says which tags. The lab's learners also draw boxes in the portal on the ten untagged images
    (uploaded without tags, then given regions); with those every tag has 18-20 images, the project trains, and
    the detector finds each fruit of the lab's test photo with a box that overlaps a hand-drawn one."""
    base = shared_data("cv_ai102_od_fruit")
    trainer = CustomVisionTrainingClient(live_server.endpoint, ApiKeyCredentials(in_headers={"Training-key": live_server.default.training_key}))
    domain = next(d for d in trainer.get_domains() if d.type == "ObjectDetection" and d.name == "General")
    project = trainer.create_project(f"fruit-od-{uuid.uuid4().hex[:8]}", domain_id=domain.id)
    tags = {name: trainer.create_tag(project.id, name).id for name in PRODUCE}

    lab_file = json.loads((base / "tagged-images.json").read_text())["files"]
    assert trainer.create_images_from_files(project.id, ImageFileCreateBatch(images=[
        ImageFileCreateEntry(name=item["filename"], contents=(base / "images" / item["filename"]).read_bytes(), regions=[
            Region(tag_id=tags[box["tag"]], left=box["left"], top=box["top"], width=box["width"], height=box["height"])
            for box in item["tags"]])
        for item in lab_file])).is_batch_successful
    stored = trainer.get_tagged_images(project.id, take=256)
    assert len(stored) == 23 and sum(len(image.regions) for image in stored) == 33
    assert {t.name: t.image_count for t in trainer.get_tags(project.id)} == {"apple": 9, "banana": 13, "orange": 10}
    with pytest.raises(CustomVisionErrorException) as caught:
        trainer.train_project(project.id)
    assert caught.value.error.code == "BadRequestDetectionTrainingValidationFailed"
    assert all(f"'{name}' ({count})" in caught.value.error.message for name, count in (("apple", 9), ("banana", 13), ("orange", 10)))

    # The portal step: the untagged images, then a region for each fruit on them.
    drawn = json.loads(PORTAL_REGIONS.read_text())["files"]
    uploaded = trainer.create_images_from_files(project.id, ImageFileCreateBatch(images=[
        ImageFileCreateEntry(name=item["filename"], contents=(base / "untagged-images" / item["filename"]).read_bytes())
        for item in drawn]))
    image_ids = {entry.source_url: entry.image.id for entry in uploaded.images}
    assert trainer.get_untagged_image_count(project.id) == 10
    created = trainer.create_image_regions(project.id, regions=[
        ImageRegionCreateEntry(image_id=image_ids[item["filename"]], tag_id=tags[box["tag"]],
                               left=box["left"], top=box["top"], width=box["width"], height=box["height"])
        for item in drawn for box in item["tags"]])
    assert not created.duplicated and not created.exceeded
    assert {t.name: t.image_count for t in trainer.get_tags(project.id)} == {"apple": 18, "banana": 20, "orange": 20}

    iteration = trained(trainer, project.id)
    trainer.publish_iteration(project.id, iteration.id, "fruitDetector", live_server.default.prediction_resource_id)
    predictor = CustomVisionPredictionClient(live_server.endpoint, ApiKeyCredentials(in_headers={"Prediction-key": live_server.default.prediction_key}))
    results = predictor.detect_image(project.id, "fruitDetector", (base / "test-detector" / "produce.jpg").read_bytes())
    # The lab prints the predictions above 50 %. This detector's probabilities are IoU-aware (GFL's quality score):
    # measured over seeds 0-2, orange 0.89-0.96 and banana 0.80-0.89, but apple 0.40-0.50 (CI once 0.37; seed 0's
    # apple boxes at IoU 0.56, 0.70, 0.51 with the hand-drawn one), so at the lab's 50 % the apple shows on some runs
    # only. What holds: the three
    # most probable predictions are one of each fruit, and above 30 % each fruit has a box that overlaps the
    # hand-drawn one.
    ranked = sorted(results.predictions, key=lambda p: -p.probability)
    assert sorted(p.tag_name for p in ranked[:3]) == sorted(PRODUCE), [(p.tag_name, round(p.probability, 2)) for p in ranked[:8]]
    for name, truth in PRODUCE.items():
        boxes = [(p.bounding_box.left, p.bounding_box.top, p.bounding_box.width, p.bounding_box.height)
                 for p in ranked if p.tag_name == name and p.probability > 0.3]
        assert boxes, f"no {name} above 30 %: {[(p.tag_name, round(p.probability, 2)) for p in ranked[:8]]}"
        assert pairwise_iou(ltwh_to_xyxy([truth]), ltwh_to_xyxy(boxes)).max() > 0.5, name
