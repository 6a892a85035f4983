"""End to end through the official SDK against a live server: what a Custom Vision user does."""

from __future__ import annotations

import io
import json
import uuid

import httpx
import pytest
from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
from azure.cognitiveservices.vision.customvision.training.models import (
    ImageFileCreateBatch,
    ImageFileCreateEntry,
    ImageRegionCreateEntry,
    ImageTagCreateEntry,
    Region,
)
from msrest.authentication import ApiKeyCredentials
from PIL import Image as PILImage
from PIL import ImageOps

from tests.conftest import LiveServer, error_code, shared_data

pytestmark = [pytest.mark.slow, pytest.mark.heavy]


def trainer(server: LiveServer, key: str | None = None) -> CustomVisionTrainingClient:
    credentials = ApiKeyCredentials(in_headers={"Training-key": key or server.default.training_key})
    return CustomVisionTrainingClient(server.endpoint, credentials)


def domain_id(client: CustomVisionTrainingClient, name: str, kind: str) -> str:
    return next(d.id for d in client.get_domains() if d.name == name and d.type == kind)


def upload(client: CustomVisionTrainingClient, project_id: str, entries: list[ImageFileCreateEntry]):
    summaries = []
    for start in range(0, len(entries), 64):
        summaries.append(client.create_images_from_files(project_id, ImageFileCreateBatch(images=entries[start:start + 64])))
    return summaries



@pytest.fixture(scope="module")
def classification(live_server: LiveServer):  # type: ignore[no-untyped-def]
    """The quickstart's classification project: Hemlock and Japanese Cherry, ten photos each."""
    images_dir = shared_data("customvision-samples", "ImageClassification", "Images")
    client = trainer(live_server)
    project = client.create_project(f"sdk-quickstart-{uuid.uuid4().hex[:8]}", domain_id=domain_id(client, "General", "Classification"))
    hemlock = client.create_tag(project.id, "Hemlock")
    cherry = client.create_tag(project.id, "Japanese Cherry")
    entries = []
    for folder, tag in (("Hemlock", hemlock), ("Japanese_Cherry", cherry)):
        for path in sorted((images_dir / folder).glob("*.jpg")):
            entries.append(ImageFileCreateEntry(name=path.name, contents=path.read_bytes(), tag_ids=[tag.id]))
    summaries = upload(client, project.id, entries)
    return client, project, hemlock, cherry, summaries, images_dir


def test_domains_are_azures(live_server: LiveServer) -> None:
    client = trainer(live_server)
    domains = {(d.name, d.type): d for d in client.get_domains()}
    assert domains[("General", "Classification")].id == "ee85a74c-405e-4adc-bb47-ffa8ca0c9f31"
    assert domains[("General (compact)", "Classification")].exportable is True
    assert domains[("General", "ObjectDetection")].id == "da2e3a8a-40a5-4171-82f4-58522f70fbc1"
    assert client.get_domain("0732100f-1a38-4e49-a514-c9b44c697ab5").name == "General (compact)"
    assert error_code(lambda: client.get_domain("00000000-0000-0000-0000-000000000001")) == "NotFoundDomain"


def test_upload_tagged_images(classification) -> None:  # type: ignore[no-untyped-def]
    client, project, hemlock, cherry, summaries, _ = classification
    assert all(summary.is_batch_successful for summary in summaries)
    results = [result for summary in summaries for result in summary.images]
    assert len(results) == 20 and {result.status for result in results} == {"OK"}
    assert client.get_image_count(project.id) == 20
    assert client.get_tagged_image_count(project.id, tag_ids=[hemlock.id]) == 10
    assert client.get_untagged_image_count(project.id) == 0
    tags = {tag.name: tag.image_count for tag in client.get_tags(project.id)}
    assert tags == {"Hemlock": 10, "Japanese Cherry": 10}


def test_exif_orientation_is_applied(classification) -> None:  # type: ignore[no-untyped-def]
    _, _, _, _, summaries, images_dir = classification
    expected = []
    rotated = 0
    for folder in ("Hemlock", "Japanese_Cherry"):
        for path in sorted((images_dir / folder).glob("*.jpg")):
            with PILImage.open(path) as opened:
                rotated += opened.getexif().get(0x0112, 1) != 1
                expected.append(ImageOps.exif_transpose(opened).size)
    assert rotated >= 1, "the quickstart set holds a photo with an EXIF orientation"
    stored = [(result.image.width, result.image.height) for summary in summaries for result in summary.images]
    assert stored == expected


def test_paging_and_order(classification) -> None:  # type: ignore[no-untyped-def]
    client, project, _, _, _, _ = classification
    newest = client.get_images(project.id, take=256)
    oldest = client.get_images(project.id, order_by="Oldest", take=256)
    assert [image.id for image in newest] == [image.id for image in reversed(oldest)]
    pages = [client.get_images(project.id, take=7, skip=skip) for skip in (0, 7, 14)]
    assert [image.id for page in pages for image in page] == [image.id for image in newest]
    assert len(client.get_tagged_images(project.id, take=5)) == 5
    assert client.get_untagged_images(project.id) == []


def test_signed_image_links(classification, live_server: LiveServer) -> None:  # type: ignore[no-untyped-def]
    client, project, _, _, _, _ = classification
    image = client.get_images(project.id, take=1)[0]
    original = httpx.get(image.original_image_uri)
    assert original.status_code == 200 and original.headers["content-type"] == "image/jpeg"
    thumbnail = httpx.get(image.thumbnail_uri)
    with PILImage.open(io.BytesIO(thumbnail.content)) as opened:
        assert max(opened.size) <= 200
    tampered = image.original_image_uri.replace("signature=", "signature=0")
    assert httpx.get(tampered).status_code == 403
    expired = image.original_image_uri.split("?")[0] + "?expires=1&signature=" + image.original_image_uri.split("signature=")[1]
    assert httpx.get(expired).status_code == 403


def test_duplicate_upload_returns_existing_image(classification) -> None:  # type: ignore[no-untyped-def]
    client, project, hemlock, _, _, images_dir = classification
    path = images_dir / "Hemlock" / "hemlock_1.jpg"
    existing = client.get_tagged_images(project.id, tag_ids=[hemlock.id], take=256)
    summary = client.create_images_from_files(
        project.id, ImageFileCreateBatch(images=[ImageFileCreateEntry(name="again.jpg", contents=path.read_bytes())])
    )
    assert summary.is_batch_successful is False
    assert summary.images[0].status == "OKDuplicate"
    assert summary.images[0].image.id in {image.id for image in existing}
    assert client.get_image_count(project.id) == 20


def test_retag_and_metadata(classification) -> None:  # type: ignore[no-untyped-def]
    client, project, hemlock, cherry, _, _ = classification
    image = client.get_tagged_images(project.id, tag_ids=[hemlock.id], take=1)[0]
    added = client.create_image_tags(project.id, tags=[ImageTagCreateEntry(image_id=image.id, tag_id=cherry.id)])
    assert [(entry.image_id, entry.tag_id) for entry in added.created] == [(image.id, cherry.id)]
    again = client.create_image_tags(project.id, tags=[ImageTagCreateEntry(image_id=image.id, tag_id=cherry.id)])
    assert again.created == [] and len(again.duplicated) == 1
    assert client.get_tagged_image_count(project.id, tag_ids=[cherry.id]) == 11
    client.delete_image_tags(project.id, image_ids=[image.id], tag_ids=[cherry.id])
    assert client.get_tagged_image_count(project.id, tag_ids=[cherry.id]) == 10

    summary = client.update_image_metadata(project.id, image_ids=[image.id], metadata={"camera": "phone", "site": "north"})
    assert summary.is_batch_successful and summary.images[0].metadata == {"camera": "phone", "site": "north"}
    assert [found.id for found in client.get_images(project.id, filter="camera eq 'phone'")] == [image.id]
    assert client.get_image_count(project.id, filter="camera eq 'phone' and site ne 'north'") == 0
    assert client.get_image_count(project.id, filter="camera ne 'phone'") == 19
    assert client.get_images_by_ids(project.id, image_ids=[image.id])[0].metadata == {"camera": "phone", "site": "north"}


def test_create_images_from_data_multipart(live_server: LiveServer, unique_name: str) -> None:
    images_dir = shared_data("customvision-samples", "ImageClassification", "Images")
    client = trainer(live_server)
    project = client.create_project(unique_name)
    tag = client.create_tag(project.id, "Hemlock")
    with open(images_dir / "Hemlock" / "hemlock_2.jpg", "rb") as stream:
        summary = client.create_images_from_data(project.id, stream, tag_ids=[tag.id])
    assert summary.is_batch_successful and summary.images[0].image.tags[0].tag_name == "Hemlock"
    client.delete_images(project.id, image_ids=[summary.images[0].image.id])
    assert client.get_image_count(project.id) == 0
    client.delete_project(project.id)
    assert error_code(lambda: client.get_project(project.id)) == "NotFoundProject"


def test_detection_regions(live_server: LiveServer, unique_name: str) -> None:
    base = shared_data("customvision-samples", "ObjectDetection")
    boxes = json.loads((base / "regions.json").read_text())
    client = trainer(live_server)
    project = client.create_project(unique_name, domain_id=domain_id(client, "General", "ObjectDetection"))
    tags = {name: client.create_tag(project.id, name) for name in ("fork", "scissors")}
    entries = []
    for name, tag in tags.items():
        for stem, (left, top, width, height) in sorted(boxes[name].items()):
            path = base / "Images" / name / f"{stem}.jpg"
            region = Region(tag_id=tag.id, left=left, top=top, width=width, height=height)
            entries.append(ImageFileCreateEntry(name=path.name, contents=path.read_bytes(), regions=[region]))
    summaries = upload(client, project.id, entries)
    assert all(summary.is_batch_successful for summary in summaries)
    assert client.get_tagged_image_count(project.id, tag_ids=[tags["fork"].id]) == 20
    image = client.get_tagged_images(project.id, tag_ids=[tags["fork"].id], take=1)[0]
    assert len(image.regions) == 1 and image.regions[0].tag_name == "fork"

    created = client.create_image_regions(project.id, regions=[
        ImageRegionCreateEntry(image_id=image.id, tag_id=tags["scissors"].id, left=0.1, top=0.1, width=0.2, height=0.2)
    ])
    assert len(created.created) == 1
    assert {tag.tag_name for tag in client.get_images_by_ids(project.id, image_ids=[image.id])[0].tags} == {"fork", "scissors"}
    client.delete_image_regions(project.id, region_ids=[created.created[0].region_id])
    after = client.get_images_by_ids(project.id, image_ids=[image.id])[0]
    assert len(after.regions) == 1 and {tag.tag_name for tag in after.tags} == {"fork"}

    outside = ImageRegionCreateEntry(image_id=image.id, tag_id=tags["fork"].id, left=0.9, top=0.1, width=0.2, height=0.2)
    assert error_code(lambda: client.create_image_regions(project.id, regions=[outside])) == "BadRequestImageRegions"

    client.delete_tag(project.id, tags["scissors"].id)
    assert client.get_tagged_image_count(project.id) == 20
    assert all(region.tag_name == "fork" for found in client.get_images(project.id, take=256) for region in found.regions)


def test_project_settings_and_domain_change(live_server: LiveServer, unique_name: str) -> None:
    client = trainer(live_server)
    compact = domain_id(client, "General (compact)", "Classification")
    project = client.create_project(unique_name, classification_type="Multilabel", domain_id=compact,
                                    target_export_platforms=["ONNX", "CoreML"])
    assert project.settings.classification_type == "Multilabel"
    assert project.settings.target_export_platforms == ["ONNX", "CoreML"]
    assert error_code(lambda: client.create_project(unique_name)) == "BadRequestProjectNameNotUnique"
    project.description = "now described"
    updated = client.update_project(project.id, project)
    assert updated.description == "now described" and updated.settings.domain_id == compact

    image_bytes = (shared_data("customvision-samples", "ImageClassification", "Images") / "Hemlock" / "hemlock_3.jpg").read_bytes()
    client.create_images_from_files(project.id, ImageFileCreateBatch(images=[ImageFileCreateEntry(name="h.jpg", contents=image_bytes)]))
    project.settings.domain_id = domain_id(client, "General", "ObjectDetection")
    project.settings.target_export_platforms = []
    assert error_code(lambda: client.update_project(project.id, project)) == "BadRequestProjectUnsupportedDomainTypeChange"


def test_tag_rules(live_server: LiveServer, unique_name: str) -> None:
    client = trainer(live_server)
    project = client.create_project(unique_name)
    client.create_tag(project.id, "cat")
    assert error_code(lambda: client.create_tag(project.id, "cat")) == "BadRequestTagNameNotUnique"
    negative = client.create_tag(project.id, "nothing", type="Negative")
    assert negative.type == "Negative"
    assert error_code(lambda: client.create_tag(project.id, "none", type="Negative")) == "BadRequestMultipleNegativeTag"
    renamed = client.update_tag(project.id, negative.id, negative.__class__(name="Negative", description="no cat", type="Negative"))
    assert renamed.name == "Negative" and renamed.description == "no cat"


def test_another_resource_sees_nothing(classification, live_server: LiveServer) -> None:  # type: ignore[no-untyped-def]
    _, project, hemlock, _, _, _ = classification
    stranger = trainer(live_server, live_server.other.training_key)
    assert project.id not in {p.id for p in stranger.get_projects()}
    assert error_code(lambda: stranger.get_project(project.id)) == "NotFoundProject"
    assert error_code(lambda: stranger.get_images(project.id)) == "NotFoundProject"
    assert error_code(lambda: stranger.delete_tag(project.id, hemlock.id)) == "NotFoundProject"
    assert error_code(lambda: stranger.delete_project(project.id)) == "NotFoundProject"
    assert trainer(live_server).get_project(project.id).name == project.name


def test_wrong_key_is_refused(live_server: LiveServer) -> None:
    response = httpx.get(live_server.training_url("/projects"), headers={"Training-Key": "not-a-key"})
    assert response.status_code == 401
    assert httpx.get(live_server.training_url("/projects")).status_code == 401
    assert httpx.get(live_server.training_url("/projects"), headers={"Ocp-Apim-Subscription-Key": live_server.default.training_key}).status_code == 200
