"""Scenario's official SDK against a live server: models, assets, training images, pairs, training, jobs.

The same store seen through both APIs: a Scenario model is a Custom Vision project, its training images are the
project's images (listed by the Custom Vision SDK's get_images), and it trains through TrainProject's rules.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import time
import uuid
from pathlib import Path

import httpx
import pytest
from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
from azure.cognitiveservices.vision.customvision.training.models import (
    CustomVisionErrorException,
    ImageFileCreateBatch,
    ImageFileCreateEntry,
    ImageTagCreateEntry,
)
from msrest.authentication import ApiKeyCredentials
from PIL import Image as PILImage
from scenario_sdk import AuthenticationError, BadRequestError, NotFoundError, Scenario

from opencustomvision.api.scenario import ids
from tests.conftest import LiveServer, shared_data

pytestmark = [pytest.mark.slow, pytest.mark.heavy]

MODEL_ID = re.compile(r"^model_[0-9A-Za-z]{22}$")
ASSET_ID = re.compile(r"^asset_[0-9A-Za-z]{22}$")
JOB_ID = re.compile(r"^job_[0-9A-Za-z]{22}$")
ISO_MILLISECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def trainer(server: LiveServer) -> CustomVisionTrainingClient:
    return CustomVisionTrainingClient(server.endpoint, ApiKeyCredentials(in_headers={"Training-key": server.default.training_key}))


def photos(*parts: str, count: int) -> list[Path]:
    return sorted(shared_data(*parts).glob("*.jpg"))[:count]


def data_url(path: Path) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode()


def upload_asset(client: Scenario, path: Path) -> str:
    return client.assets.upload(name=path.name, image=base64.b64encode(path.read_bytes()).decode()).asset.id


def project_id(model_id: str) -> str:
    return ids.decode(ids.MODEL, model_id, what="Model")


def image_id(training_image_id: str) -> str:
    return ids.decode(ids.ASSET, training_image_id, what="Training image")


def cv_image_ids(cv: CustomVisionTrainingClient, model_id: str) -> set[str]:
    return {str(image.id) for image in cv.get_images(project_id(model_id), take=256)}


@pytest.fixture(scope="module")
def scenario(live_server: LiveServer) -> Scenario:
    return live_server.scenario()


@pytest.fixture(scope="module")
def cv(live_server: LiveServer) -> CustomVisionTrainingClient:
    return trainer(live_server)


def test_auth_is_the_resources_key_pair(live_server: LiveServer, scenario: Scenario) -> None:
    model = scenario.models.create(name=f"auth-{uuid.uuid4().hex[:8]}").model
    with pytest.raises(AuthenticationError) as wrong:
        live_server.scenario(secret="not-the-secret").models.retrieve(model.id)
    assert wrong.value.status_code == 401 and "reason" in wrong.value.body  # type: ignore[operator]
    anonymous = httpx.get(f"{live_server.scenario_url}/models")
    assert anonymous.status_code == 401 and set(anonymous.json()) == {"reason"}
    # Another resource's key pair sees none of this resource's models: 404, as if absent.
    other = live_server.scenario(live_server.other)
    with pytest.raises(NotFoundError):
        other.models.retrieve(model.id)
    assert model.id not in {m.id for m in other.models.list()}
    scenario.models.delete(model.id)


def test_models_are_projects_in_both_views(scenario: Scenario, cv: CustomVisionTrainingClient) -> None:
    name = f"model-{uuid.uuid4().hex[:8]}"
    created = scenario.models.create(name=name, short_description="hemlock or cherry", type="custom").model
    assert MODEL_ID.match(created.id) and ISO_MILLISECONDS.match(created.created_at)
    assert (created.status, created.training_images_number, created.type, created.training_images) == ("new", 0, "custom", [])
    project = cv.get_project(project_id(created.id))
    assert (project.name, project.description) == (name, "hemlock or cherry")

    renamed = scenario.models.update(created.id, name=name + "-renamed").model
    assert renamed.name == name + "-renamed" and cv.get_project(project.id).name == name + "-renamed"

    # A project created the Custom Vision way is a model too; pages of one walk every model.
    other = cv.create_project(f"cv-{uuid.uuid4().hex[:8]}")
    other_model = ids.encode(ids.MODEL, str(other.id))
    assert scenario.models.retrieve(other_model).model.name == other.name
    first = scenario.models.list(page_size=1)
    assert len(first.models) == 1 and first.next_pagination_token
    listed = {model.id for model in scenario.models.list(page_size=1)}  # the SDK follows nextPaginationToken
    assert {created.id, other_model} <= listed

    assert scenario.models.delete(other_model) == {}
    with pytest.raises(CustomVisionErrorException):
        cv.get_project(other.id)
    scenario.models.delete(created.id)
    with pytest.raises(NotFoundError):
        scenario.models.retrieve(created.id)


def test_assets_upload_read_page_update_delete(scenario: Scenario) -> None:
    paths = photos("cls_hymenoptera", "val", "ants", count=3)
    uploaded = [upload_asset(scenario, paths[0]),
                scenario.assets.upload(name=paths[1].name, image=data_url(paths[1])).asset.id,
                upload_asset(scenario, paths[2])]
    assert all(ASSET_ID.match(asset_id) for asset_id in uploaded)
    asset = scenario.assets.retrieve(uploaded[1], original_assets=True).asset
    assert (asset.metadata.name, asset.kind, asset.mime_type) == (paths[1].name, "image", "image/jpeg")
    assert httpx.get(asset.url).content == paths[1].read_bytes()

    page = scenario.assets.list(page_size=2)
    assert len(page.assets) == 2 and page.next_pagination_token
    assert set(uploaded) <= {a.id for a in scenario.assets.list(page_size=2)}

    updated = scenario.assets.update(uploaded[0], name="renamed.jpg", description="an ant on a leaf").asset
    assert (updated.metadata.name, updated.description) == ("renamed.jpg", "an ant on a leaf")

    with pytest.raises(BadRequestError):
        scenario.assets.delete_multiple(asset_ids=uploaded * 34)  # 102 ids: more than 100
    assert scenario.assets.delete_multiple(asset_ids=uploaded) == {}
    with pytest.raises(NotFoundError):
        scenario.assets.retrieve(uploaded[0])


def test_training_images_every_way_seen_by_the_custom_vision_sdk(live_server: LiveServer, scenario: Scenario,
                                                                cv: CustomVisionTrainingClient) -> None:
    model = scenario.models.create(name=f"images-{uuid.uuid4().hex[:8]}").model
    bees = photos("cls_hymenoptera", "val", "bees", count=14)

    # One as a data URL, with its file name; its caption comes from ImageNet.
    single = scenario.models.training_images.add(model.id, data=data_url(bees[0]), name=bees[0].name).training_image
    assert ASSET_ID.match(single.id) and single.name == bees[0].name and ISO_MILLISECONDS.match(single.created_at)
    assert single.automatic_captioning.startswith("a photo of ")
    # One from an asset.
    from_asset = scenario.models.training_images.add(model.id, asset_id=upload_asset(scenario, bees[1])).training_image
    assert from_asset.name == bees[1].name
    # Ten at once.
    batch_assets = [upload_asset(scenario, path) for path in bees[2:12]]
    batch = scenario.models.training_images.add(model.id, asset_ids=batch_assets)
    batch_images = batch.model_extra["trainingImages"]  # type: ignore[index]
    assert len(batch_images) == 10 and batch.training_image.id == batch_images[0]["id"]

    # Eleven is refused and stores nothing; so is an asset that already is a training image of this model.
    before = scenario.models.retrieve(model.id).model.training_images_number
    with pytest.raises(BadRequestError) as eleven:
        scenario.models.training_images.add(model.id, asset_ids=batch_assets + [upload_asset(scenario, bees[12])])
    assert "10" in eleven.value.body["reason"]  # type: ignore[index]
    with pytest.raises(BadRequestError) as again:
        scenario.models.training_images.add(model.id, asset_id=batch_assets[0])
    assert "already a training image" in again.value.body["reason"]  # type: ignore[index]
    assert scenario.models.retrieve(model.id).model.training_images_number == before == 12

    # Real captions: ImageNet has a "bee" class, and most of these photos show one.
    listed = scenario.models.retrieve(model.id).model.training_images
    captions = [image.automatic_captioning for image in listed]
    assert sum("bee" in caption for caption in captions) >= len(captions) // 2, captions

    # The same images, through the Custom Vision SDK (untagged until tagged there).
    scenario_ids = {image_id(image.id) for image in listed}
    assert cv_image_ids(cv, model.id) == scenario_ids
    assert {str(i.id) for i in cv.get_untagged_images(project_id(model.id), take=256)} == scenario_ids

    # Duplicate bytes are one image, whichever API sends them.
    assert scenario.models.training_images.add(model.id, data=data_url(bees[0]), name="again.jpg").training_image.id == single.id
    summary = cv.create_images_from_files(project_id(model.id), ImageFileCreateBatch(
        images=[ImageFileCreateEntry(name=bees[1].name, contents=bees[1].read_bytes())]))
    assert summary.images[0].status == "OKDuplicate" and str(summary.images[0].image.id) == image_id(from_asset.id)

    # downloadUrl: the resized training copy, or with originalAssets the untouched original.
    original = scenario.models.retrieve(model.id, original_assets=True).model.training_images
    by_id = {image.id: image for image in original}
    assert hashlib.sha256(httpx.get(by_id[single.id].download_url).content).hexdigest() == hashlib.sha256(bees[0].read_bytes()).hexdigest()
    resized = PILImage.open(io.BytesIO(httpx.get(single.download_url).content))
    assert max(resized.size) <= 1024

    # Replace: another image takes the place (and the pairs) of the first; a description is the user's.
    pairs = scenario.models.training_images.replace_pairs(model.id, body=[
        {"source_id": single.id, "target_id": from_asset.id, "instruction": "add a second bee"},
        {"source_id": from_asset.id, "target_id": batch_images[0]["id"]},
    ])
    assert pairs.count == 2 and pairs.pairs[0].instruction == "add a second bee"
    with pytest.raises(BadRequestError):
        scenario.models.training_images.replace_pairs(model.id, body=[{"source_id": single.id, "target_id": ids.encode(ids.ASSET, str(uuid.uuid4()))}])
    replaced = scenario.models.training_images.replace(single.id, model_id=model.id, data=data_url(bees[13]), name=bees[13].name,
                                                       extra_body={"description": "a bee on a flower"}).training_image
    assert replaced.id != single.id and (replaced.name, replaced.description) == (bees[13].name, "a bee on a flower")
    now = scenario.models.retrieve(model.id).model
    assert now.training_image_pairs[0].source_id == replaced.id and now.training_images_number == 12
    assert image_id(single.id) not in cv_image_ids(cv, model.id) and image_id(replaced.id) in cv_image_ids(cv, model.id)
    described = scenario.models.training_images.replace(replaced.id, model_id=model.id,
                                                        extra_body={"description": "two bees"}).training_image
    assert (described.id, described.description) == (replaced.id, "two bees")

    # Deleting through either view deletes in both.
    assert scenario.models.training_images.delete(from_asset.id, model_id=model.id) == {}
    assert image_id(from_asset.id) not in cv_image_ids(cv, model.id)
    cv.delete_images(project_id(model.id), image_ids=[image_id(replaced.id)])
    remaining = {image.id for image in scenario.models.retrieve(model.id).model.training_images}
    assert replaced.id not in remaining and len(remaining) == 10
    scenario.models.delete(model.id)


def _tagged_model(scenario: Scenario, cv: CustomVisionTrainingClient, folders: dict[str, list[Path]]) -> str:
    """A model whose images arrive the Scenario way and are tagged through the Custom Vision SDK."""
    model = scenario.models.create(name=f"train-{uuid.uuid4().hex[:8]}").model
    entries = []
    for tag_name, paths in folders.items():
        tag = cv.create_tag(project_id(model.id), tag_name)
        for path in paths:
            added = scenario.models.training_images.add(model.id, data=data_url(path), name=path.name).training_image
            entries.append(ImageTagCreateEntry(image_id=image_id(added.id), tag_id=tag.id))
    cv.create_image_tags(project_id(model.id), tags=entries)
    return model.id


def test_train_to_success_and_cancel_a_second_training(scenario: Scenario, cv: CustomVisionTrainingClient) -> None:
    untagged = scenario.models.create(name=f"untagged-{uuid.uuid4().hex[:8]}").model
    scenario.models.training_images.add(untagged.id, data=data_url(photos("cls_hymenoptera", "val", "ants", count=1)[0]), name="ant.jpg")
    with pytest.raises(BadRequestError) as refused:
        scenario.models.train.trigger(untagged.id)
    assert "two tags" in refused.value.body["reason"]  # type: ignore[index]  # Custom Vision's reason
    scenario.models.delete(untagged.id)

    samples = ("customvision-samples", "ImageClassification", "Images")
    first = _tagged_model(scenario, cv, {"Hemlock": photos(*samples, "Hemlock", count=8),
                                         "Japanese Cherry": photos(*samples, "Japanese_Cherry", count=8)})
    second = _tagged_model(scenario, cv, {"ants": photos("cls_hymenoptera", "train", "ants", count=5),
                                          "bees": photos("cls_hymenoptera", "train", "bees", count=5)})
    dry = scenario.models.train.with_raw_response.trigger(first, dry_run="true")
    assert dry.status_code == 269 and scenario.models.retrieve(first).model.status == "new"

    started = scenario.models.train.trigger(first)
    assert JOB_ID.match(started.job.job_id) and started.model.status == "training"
    assert started.job.job_type == "model-training" and started.job.status in ("queued", "in-progress")
    # The worker runs one job at a time: the second training waits behind the first, and is canceled there.
    queued = scenario.models.train.trigger(second)
    canceled = scenario.models.train.action(second, action="cancel").model
    assert canceled.status == "training-canceled"
    assert scenario.jobs.retrieve(queued.job.job_id).job.status == "canceled"
    iteration = cv.get_iterations(project_id(second))[0]
    assert iteration.status == "Failed"
    with pytest.raises(BadRequestError):
        scenario.models.train.action(second, action="cancel")

    deadline = time.monotonic() + 600
    while (job := scenario.jobs.retrieve(started.job.job_id).job).status not in ("success", "failure", "canceled"):
        assert time.monotonic() < deadline, "training did not end in time"
        assert 0.0 <= job.progress <= 1.0
        time.sleep(1)
    assert job.status == "success", job.metadata
    assert [entry.status for entry in job.status_history] == ["queued", "in-progress", "success"]
    trained = scenario.models.retrieve(first).model
    assert trained.status == "trained" and trained.job_id == started.job.job_id
    assert cv.get_iterations(project_id(first))[0].status == "Completed"

    # Once the model is trained, new images are captioned with its own tags.
    hemlock = photos(*samples, "Hemlock", count=10)[9]
    added = scenario.models.training_images.add(first, data=data_url(hemlock), name=hemlock.name).training_image
    assert added.automatic_captioning == "a photo of a Hemlock"
    for model_id in (first, second):
        scenario.models.delete(model_id)
