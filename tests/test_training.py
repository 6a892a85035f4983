"""Training, iterations, honest metrics and the Prediction API, end to end against a live server.

Four projects are trained once per module (``lab``), queued back to back so that the worker never waits:

* ``fruit``: Multilabel, apple / banana / orange (15 photos each, ``cv_ai102_cls_fruit/training-images``) and a
  Negative tag (7 tree photos from the quickstart set); ``more-training-images`` is held out and only predicted.
* ``doomed``: two tags of small generated images whose second tag is deleted while the job waits behind ``fruit``,
  so its iteration ends Failed (needed to check that a failed iteration cannot be published).
* ``pair``: two tags of small generated images (red-ish / blue-ish), cheap to retrain; iterations and the
  Prediction API's edge cases run on it.
* ``coin``: 30 fruit photos whose two tags were assigned by a seeded coin toss: nothing can be learnt, so an honest
  (out-of-sample) evaluation must report poor precision and recall.

Validation refusals use tiny throw-away projects and never train.
"""

from __future__ import annotations

import base64
import http.server
import io
import itertools
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.cognitiveservices.vision.customvision.prediction import (
    CustomVisionPredictionClient,
)
from azure.cognitiveservices.vision.customvision.training import (
    CustomVisionTrainingClient,
)
from azure.cognitiveservices.vision.customvision.training.models import (
    CustomVisionErrorException,
    ImageFileCreateBatch,
    ImageFileCreateEntry,
    PredictionQueryToken,
)
from msrest.authentication import ApiKeyCredentials
from PIL import Image

from tests.conftest import LiveServer, shared_data

pytestmark = [pytest.mark.slow, pytest.mark.heavy]

FRUITS = ("apple", "banana", "orange")
TRAINING_TIMEOUT = 300.0


# ------------------------------------------------------------------------------------------------ helpers

_unique = itertools.count(1)


def png(base: tuple[int, int, int], size: tuple[int, int] = (32, 32)) -> bytes:
    """A small PNG near ``base``; every call differs slightly (the server refuses duplicate images)."""
    n = next(_unique)
    colour = tuple(max(0, min(255, channel + (n * step) % 23 - 11)) for channel, step in zip(base, (7, 11, 13)))
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


RED, BLUE = (230, 30, 30), (30, 30, 230)


def trainer_for(server: LiveServer) -> CustomVisionTrainingClient:
    return CustomVisionTrainingClient(server.endpoint, ApiKeyCredentials(in_headers={"Training-key": server.default.training_key}))


def predictor_for(server: LiveServer, key: str) -> CustomVisionPredictionClient:
    return CustomVisionPredictionClient(server.endpoint, ApiKeyCredentials(in_headers={"Prediction-key": key}))


def sdk_error(call: Callable[[], Any]) -> tuple[str, int]:
    """(code, HTTP status) of a call the SDK must see refused."""
    with pytest.raises(CustomVisionErrorException) as caught:
        call()
    return caught.value.error.code, caught.value.response.status_code


def refused(response: httpx.Response) -> tuple[int, str]:
    assert response.status_code >= 400, f"{response.request.method} {response.request.url} -> {response.status_code} {response.text[:300]}"
    return response.status_code, response.json()["code"]


class Api:
    """Raw HTTP against the Training API of the default resource."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.training_url(""), headers={"Training-Key": server.default.training_key}, timeout=120)

    def ok(self, response: httpx.Response) -> Any:
        request = response.request
        assert response.status_code == 200, f"{request.method} {request.url} -> {response.status_code} {response.text[:300]}"
        return response.json()

    def project(self, classification_type: str = "Multiclass") -> str:
        params = {"name": f"train-{uuid.uuid4().hex[:10]}", "classificationType": classification_type}
        return str(self.ok(self.http.post("/projects", params=params))["id"])

    def tag(self, project_id: str, name: str, tag_type: str = "Regular") -> str:
        return str(self.ok(self.http.post(f"/projects/{project_id}/tags", params={"name": name, "type": tag_type}))["id"])

    def images(self, project_id: str, tag_ids: list[str], count: int, base: tuple[int, int, int]) -> list[str]:
        files = [("imageData", (f"{n}.png", png(base), "image/png")) for n in range(count)]
        params = {"tagIds": ",".join(tag_ids)} if tag_ids else None
        summary = self.ok(self.http.post(f"/projects/{project_id}/images", files=files, params=params))
        assert summary["isBatchSuccessful"], summary
        return [entry["image"]["id"] for entry in summary["images"]]

    def two_tag_project(self, per_tag: int = 5) -> tuple[str, str, str]:
        project_id = self.project()
        red, blue = self.tag(project_id, "red"), self.tag(project_id, "blue")
        self.images(project_id, [red], per_tag, RED)
        self.images(project_id, [blue], per_tag, BLUE)
        return project_id, red, blue

    def train(self, project_id: str, **params: Any) -> str:
        iteration = self.ok(self.http.post(f"/projects/{project_id}/train", params=params))
        assert iteration["status"] == "Training", iteration
        return str(iteration["id"])

    def iteration(self, project_id: str, iteration_id: str) -> dict[str, Any]:
        return dict(self.ok(self.http.get(f"/projects/{project_id}/iterations/{iteration_id}")))

    def wait(self, project_id: str, iteration_id: str, timeout: float = TRAINING_TIMEOUT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        iteration = self.iteration(project_id, iteration_id)
        while iteration["status"] == "Training":
            assert time.monotonic() < deadline, f"iteration {iteration_id} still training after {timeout} s"
            time.sleep(0.25)
            iteration = self.iteration(project_id, iteration_id)
        return iteration

    def publish(self, project_id: str, iteration_id: str, name: str, prediction_id: str, **params: Any) -> httpx.Response:
        query = {"publishName": name, "predictionId": prediction_id, **params}
        return self.http.post(f"/projects/{project_id}/iterations/{iteration_id}/publish", params=query)

    def performance(self, project_id: str, iteration_id: str, **params: Any) -> dict[str, Any]:
        return dict(self.ok(self.http.get(f"/projects/{project_id}/iterations/{iteration_id}/performance", params=params)))


def classify_url(server: LiveServer, project_id: str, published_name: str, suffix: str = "image", version: str = "v3.1") -> str:
    return f"{server.endpoint}/customvision/{version}/prediction/{project_id}/classify/iterations/{published_name}/{suffix}"


# ------------------------------------------------------------------------------------------------ the trained projects


@dataclass
class Fruit:
    project_id: str
    iteration_id: str
    tags: dict[str, str]  # name -> id, the Negative tag included
    image_tags: dict[str, str]  # image id -> the tag name it carries
    held_out: dict[str, list[Path]]
    trees: Path


@dataclass
class Lab:
    api: Api
    trainer: CustomVisionTrainingClient
    fruit: Fruit
    doomed: tuple[str, str]  # project, failed iteration
    pair: tuple[str, str, str, str]  # project, iteration, red tag, blue tag
    coin: tuple[str, str]  # project, iteration
    seconds: dict[str, float] = field(default_factory=dict)


def _upload_fruit(trainer: CustomVisionTrainingClient, fruit_dir: Path, trees: Path) -> tuple[str, dict[str, str], dict[str, str]]:
    """A Multilabel project with the fruit photos and 7 Negative ones; returns (project, tag ids, image id -> tag name)."""
    project = trainer.create_project(f"fruit-{uuid.uuid4().hex[:8]}", classification_type="Multilabel")
    tags = {name: trainer.create_tag(project.id, name).id for name in FRUITS}
    tags["Negative"] = trainer.create_tag(project.id, "Negative", type="Negative").id
    paths, names = [], []
    for name in FRUITS:
        for path in sorted((fruit_dir / "training-images" / name).glob("*.jpg")):
            paths.append(path)
            names.append(name)
    # None of the fruits: 4 hemlocks and 3 cherry trees (hemlock_9, japanese_cherry_9 and Test/ stay held out).
    for path in sorted((trees / "Hemlock").glob("*.jpg"))[:4] + sorted((trees / "Japanese_Cherry").glob("*.jpg"))[:3]:
        paths.append(path)
        names.append("Negative")
    entries = [ImageFileCreateEntry(name=path.name, contents=path.read_bytes(), tag_ids=[tags[name]]) for path, name in zip(paths, names)]
    summary = trainer.create_images_from_files(project.id, ImageFileCreateBatch(images=entries))
    assert summary.is_batch_successful, [(r.source_url, r.status) for r in summary.images if r.status != "OK"]
    carried = {result.image.id: [tag.tag_name for tag in result.image.tags] for result in summary.images}
    assert sorted(name for names_ in carried.values() for name in names_) == sorted(names)
    return project.id, tags, {image_id: names_[0] for image_id, names_ in carried.items()}


@pytest.fixture(scope="module")
def lab(live_server: LiveServer) -> Iterator[Lab]:
    fruit_dir = shared_data("cv_ai102_cls_fruit")
    trees = shared_data("customvision-samples", "ImageClassification", "Images")
    api = Api(live_server)
    trainer = trainer_for(live_server)
    seconds: dict[str, float] = {}
    started = time.monotonic()

    fruit_project, fruit_tags, fruit_images = _upload_fruit(trainer, fruit_dir, trees)
    fruit_iteration = trainer.train_project(fruit_project)
    assert fruit_iteration.status == "Training"

    # Queued behind ``fruit`` (the worker runs one job at a time, oldest first): deleting a tag before the job
    # starts leaves a single tag, which the job cannot train, so the iteration ends Failed.
    doomed, _, doomed_blue = api.two_tag_project()
    doomed_iteration = api.train(doomed)
    assert api.http.delete(f"/projects/{doomed}/tags/{doomed_blue}").status_code == 204

    pair, red, blue = api.two_tag_project()
    pair_iteration = api.train(pair)

    coin = api.project()
    heads, tails = api.tag(coin, "heads"), api.tag(coin, "tails")
    rng = random.Random(0)
    photos = rng.sample(sorted((fruit_dir / "training-images").glob("*/*.jpg")), 30)
    sides = [heads] * 15 + [tails] * 15
    rng.shuffle(sides)
    batch = {"images": [{"name": path.name, "contents": base64.b64encode(path.read_bytes()).decode(), "tagIds": [side]}
                        for path, side in zip(photos, sides)]}
    assert api.ok(api.http.post(f"/projects/{coin}/images/files", json=batch))["isBatchSuccessful"]
    coin_iteration = api.train(coin)
    seconds["uploads"] = time.monotonic() - started

    # Poll through the SDK, as a Custom Vision user would.
    deadline = time.monotonic() + TRAINING_TIMEOUT
    iteration = trainer.get_iteration(fruit_project, fruit_iteration.id)
    while iteration.status == "Training":
        assert time.monotonic() < deadline, "the fruit project did not finish training"
        time.sleep(0.25)
        iteration = trainer.get_iteration(fruit_project, fruit_iteration.id)
    assert iteration.status == "Completed", iteration
    assert iteration.classification_type == "Multilabel"
    seconds["fruit"] = time.monotonic() - started
    assert api.wait(doomed, doomed_iteration)["status"] == "Failed"
    assert api.wait(pair, pair_iteration)["status"] == "Completed"
    assert api.wait(coin, coin_iteration)["status"] == "Completed"
    seconds["all"] = time.monotonic() - started

    fruit = Fruit(
        project_id=fruit_project, iteration_id=fruit_iteration.id, tags=fruit_tags,
        image_tags=fruit_images,
        held_out={name: sorted((fruit_dir / "more-training-images" / name).glob("*.jpg")) for name in FRUITS},
        trees=trees,
    )
    yield Lab(api, trainer, fruit, (doomed, doomed_iteration), (pair, pair_iteration, red, blue), (coin, coin_iteration), seconds)
    for project_id in (fruit_project, doomed, pair, coin):
        for it in api.http.get(f"/projects/{project_id}/iterations").json():
            if it.get("publishName"):
                api.http.delete(f"/projects/{project_id}/iterations/{it['id']}/publish")
        api.http.delete(f"/projects/{project_id}")
    api.http.close()


@pytest.fixture(scope="module")
def fruit_model(lab: Lab, live_server: LiveServer) -> tuple[Fruit, CustomVisionPredictionClient]:
    lab.trainer.publish_iteration(lab.fruit.project_id, lab.fruit.iteration_id, "fruit", live_server.default.prediction_resource_id)
    return lab.fruit, predictor_for(live_server, live_server.default.prediction_key)


# ------------------------------------------------------------------------------------------------ Multilabel


def test_multilabel_fruit_held_out_images_rank_their_own_tag_first(fruit_model) -> None:  # type: ignore[no-untyped-def]
    fruit, predictor = fruit_model
    for name, paths in fruit.held_out.items():
        assert len(paths) == 2
        for path in paths:
            result = predictor.classify_image(fruit.project_id, "fruit", path.read_bytes())
            ranked = [(p.tag_name, p.probability) for p in result.predictions]
            assert ranked[0][0] == name, f"{path.name}: {ranked}"
            assert ranked[0][1] > 0.5, f"{path.name}: {ranked}"
            assert {p.tag_name for p in result.predictions} == {*FRUITS, "Negative"}
            probabilities = [p.probability for p in result.predictions]
            assert probabilities == sorted(probabilities, reverse=True)
            assert all(0.0 <= p <= 1.0 for p in probabilities)
            assert result.iteration == fruit.iteration_id and result.project == fruit.project_id


def _side_by_side(left: Path, right: Path) -> bytes:
    canvas = Image.new("RGB", (1024, 384))
    for offset, path in ((0, left), (512, right)):
        with Image.open(path) as picture:
            canvas.paste(picture.convert("RGB").resize((512, 384)), (offset, 0))
    buffer = io.BytesIO()
    canvas.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_multilabel_probabilities_are_independent(fruit_model) -> None:  # type: ignore[no-untyped-def]
    """An apple beside a banana: both tags lead, and the probabilities are not a softmax (their sum is not 1)."""
    fruit, predictor = fruit_model
    for first, second in (("apple", "banana"), ("apple", "orange")):
        picture = _side_by_side(fruit.held_out[first][0], fruit.held_out[second][0])
        result = predictor.classify_image_with_no_store(fruit.project_id, "fruit", picture)
        ranked = [(p.tag_name, round(p.probability, 4)) for p in result.predictions]
        assert {ranked[0][0], ranked[1][0]} == {first, second}, ranked
        assert abs(sum(p.probability for p in result.predictions) - 1.0) > 0.05, ranked


def test_multilabel_negative_tag(fruit_model) -> None:  # type: ignore[no-untyped-def]
    fruit, predictor = fruit_model
    held_out = [fruit.trees / "Test" / "test_image.jpg", fruit.trees / "Hemlock" / "hemlock_9.jpg",
                fruit.trees / "Japanese_Cherry" / "japanese_cherry_9.jpg"]
    for path in held_out:
        result = predictor.classify_image_with_no_store(fruit.project_id, "fruit", path.read_bytes())
        ranked = [(p.tag_name, p.tag_type, round(p.probability, 4)) for p in result.predictions]
        negative = [p for p in result.predictions if p.tag_name == "Negative"]
        assert len(negative) == 1 and negative[0].tag_type == "Negative", ranked
        assert all(p.tag_type == "Regular" for p in result.predictions if p.tag_name != "Negative"), ranked
        assert ranked[0][0] == "Negative", f"{path.name}: {ranked}"


# ------------------------------------------------------------------------------------------------ TrainProject refusals


def _no_iterations(api: Api, project_id: str) -> None:
    assert api.ok(api.http.get(f"/projects/{project_id}/iterations")) == [], "a refused TrainProject left an iteration"


def test_too_few_images_for_a_tag(live_server: LiveServer) -> None:
    api = Api(live_server)
    project_id = api.project()
    red, blue = api.tag(project_id, "red"), api.tag(project_id, "blue")
    api.images(project_id, [red], 5, RED)
    api.images(project_id, [blue], 4, BLUE)
    assert sdk_error(lambda: trainer_for(live_server).train_project(project_id)) == ("BadRequestTrainingValidationFailed", 400)
    _no_iterations(api, project_id)


def test_multiclass_with_a_single_tag(live_server: LiveServer) -> None:
    api = Api(live_server)
    project_id = api.project()
    api.images(project_id, [api.tag(project_id, "only")], 6, RED)
    code = sdk_error(lambda: trainer_for(live_server).train_project(project_id))
    assert code == ("BadRequestMultiClassClassificationTrainingValidationFailed", 400)
    _no_iterations(api, project_id)


def test_multiclass_image_with_two_tags(live_server: LiveServer) -> None:
    api = Api(live_server)
    project_id, red, blue = api.two_tag_project()
    api.images(project_id, [red, blue], 1, (130, 30, 130))
    code = sdk_error(lambda: trainer_for(live_server).train_project(project_id))
    assert code == ("BadRequestMultiClassClassificationTrainingValidationFailed", 400)
    _no_iterations(api, project_id)


def test_bad_parameters_start_nothing(live_server: LiveServer) -> None:
    api = Api(live_server)
    trainer = trainer_for(live_server)
    project_id, _, _ = api.two_tag_project()
    assert sdk_error(lambda: trainer.train_project(project_id, notification_email_address="not-an-address")) == (
        "BadRequestInvalidEmailAddress", 400)
    status, code = refused(api.http.post(f"/projects/{project_id}/train", params={"trainingType": "Expert"}))
    assert status == 400 and code.startswith("BadRequest"), code
    status, code = refused(api.http.post(f"/projects/{project_id}/train", json={"selectedTags": [str(uuid.uuid4())]}))
    assert status == 400 and code.startswith("BadRequest"), code
    status, code = refused(api.http.post(f"/projects/{project_id}/train", params={"reservedBudgetInHours": "-1"}))
    assert status == 400 and code.startswith("BadRequest"), code
    _no_iterations(api, project_id)


def test_already_in_progress_and_not_publishable_while_training(live_server: LiveServer) -> None:
    api = Api(live_server)
    trainer = trainer_for(live_server)
    project_id, _, _ = api.two_tag_project()
    iteration_id = api.train(project_id)
    assert sdk_error(lambda: trainer.train_project(project_id))[0] == "BadRequestTrainingAlreadyInProgress"
    assert sdk_error(lambda: trainer.train_project(project_id, force_train=True))[0] == "BadRequestTrainingAlreadyInProgress"
    response = api.publish(project_id, iteration_id, "early", live_server.default.prediction_resource_id)
    assert refused(response) == (400, "BadRequestIterationIsNotTrained")
    assert [it["id"] for it in api.ok(api.http.get(f"/projects/{project_id}/iterations"))] == [iteration_id]
    assert api.wait(project_id, iteration_id)["status"] == "Completed"


def test_selected_tags_train_only_those(live_server: LiveServer) -> None:
    """selectedTags: the other tags (and their images, here too few) are left out of the iteration."""
    api = Api(live_server)
    project_id, red, blue = api.two_tag_project()
    api.images(project_id, [api.tag(project_id, "scarce")], 2, (30, 230, 30))
    assert refused(api.http.post(f"/projects/{project_id}/train"))[1] == "BadRequestTrainingValidationFailed"
    iteration = api.ok(api.http.post(f"/projects/{project_id}/train", json={"selectedTags": [red, blue]}))
    assert api.wait(project_id, iteration["id"])["status"] == "Completed"
    performance = api.performance(project_id, iteration["id"])
    assert {tag["name"] for tag in performance["perTagPerformance"]} == {"red", "blue"}


def test_negative_tag_with_one_image_is_refused_or_trained(live_server: LiveServer) -> None:
    """Whatever TrainProject accepts must train: a project it lets through may not end in a Failed iteration."""
    api = Api(live_server)
    project_id = api.project()
    api.images(project_id, [api.tag(project_id, "red")], 6, RED)
    api.images(project_id, [api.tag(project_id, "none", "Negative")], 1, BLUE)
    response = api.http.post(f"/projects/{project_id}/train")
    if response.status_code == 200:
        iteration = api.wait(project_id, response.json()["id"])
        assert iteration["status"] == "Completed", "TrainProject accepted the project, then the iteration failed"
    else:
        status, code = refused(response)
        assert status == 400 and code.endswith("TrainingValidationFailed"), code


# ------------------------------------------------------------------------------------------------ iterations


@pytest.fixture(scope="module")
def second_pair_iteration(lab: Lab) -> tuple[tuple[int, str], str]:
    """Train the unchanged pair project again: refused as not needed, then forced."""
    api, (project_id, _, _, _) = lab.api, lab.pair
    not_needed = refused(api.http.post(f"/projects/{project_id}/train"))
    iteration_id = api.train(project_id, forceTrain="true")
    assert api.wait(project_id, iteration_id)["status"] == "Completed"
    return not_needed, iteration_id


def test_training_not_needed_then_forced(lab: Lab, second_pair_iteration) -> None:  # type: ignore[no-untyped-def]
    not_needed, second = second_pair_iteration
    assert not_needed == (400, "BadRequestTrainingNotNeeded")
    project_id, first, _, _ = lab.pair
    listed = lab.trainer.get_iterations(project_id)
    assert [it.id for it in listed] == [first, second]
    assert [it.name for it in listed] == ["Iteration 1", "Iteration 2"]
    assert all(it.status == "Completed" and it.trained_at is not None for it in listed)


def test_rename_iteration(lab: Lab, second_pair_iteration) -> None:  # type: ignore[no-untyped-def]
    _, second = second_pair_iteration
    project_id, first, _, _ = lab.pair
    renamed = lab.trainer.update_iteration(project_id, first, name="alpha")
    assert renamed.name == "alpha" and renamed.id == first and renamed.status == "Completed"
    assert lab.trainer.get_iteration(project_id, first).name == "alpha"
    assert sdk_error(lambda: lab.trainer.update_iteration(project_id, second, name="alpha")) == ("BadRequestIterationNameNotUnique", 400)
    assert lab.trainer.get_iteration(project_id, second).name == "Iteration 2"


def test_publish_to_another_account_is_refused_then_unpublish_and_delete(lab: Lab, second_pair_iteration, live_server: LiveServer) -> None:  # type: ignore[no-untyped-def]
    _, second = second_pair_iteration
    project_id, first, _, _ = lab.pair
    other, default = live_server.other, live_server.default
    # Another account's prediction resource: its key must never reach this model, nor its images this project.
    assert refused(lab.api.publish(project_id, first, "elsewhere", other.prediction_resource_id)) == (400, "BadRequestInvalidPublishTarget")
    assert lab.trainer.get_iteration(project_id, first).publish_name is None
    response = httpx.post(classify_url(live_server, project_id, "elsewhere"), headers={"Prediction-Key": other.prediction_key},
                          content=png(RED))
    assert refused(response) == (404, "NotFoundIteration")

    assert lab.trainer.publish_iteration(project_id, first, "elsewhere", default.prediction_resource_id) is True
    published = lab.trainer.get_iteration(project_id, first)
    assert published.publish_name == "elsewhere" and published.original_publish_resource_id == default.prediction_resource_id
    ours = predictor_for(live_server, default.prediction_key).classify_image(project_id, "elsewhere", png(RED))
    assert ours.predictions[0].tag_name == "red" and ours.iteration == first
    # Only its own prediction key reaches it.
    response = httpx.post(classify_url(live_server, project_id, "elsewhere"), headers={"Prediction-Key": other.prediction_key},
                          content=png(RED))
    assert refused(response) == (404, "NotFoundIteration")
    stored = lab.trainer.query_predictions(project_id, PredictionQueryToken(max_count=256, iteration_id=first))
    assert [result.iteration for result in stored.results] == [first]  # ours alone; the refused call stored nothing

    # The name belongs to the first iteration.
    assert refused(lab.api.publish(project_id, second, "elsewhere", default.prediction_resource_id)) == (400, "BadRequestInvalidPublishName")

    assert sdk_error(lambda: lab.trainer.delete_iteration(project_id, first)) == ("BadRequestIterationIsPublished", 400)
    assert lab.api.http.delete(f"/projects/{project_id}/iterations/{first}/publish").status_code == 204
    assert lab.trainer.get_iteration(project_id, first).publish_name is None
    response = httpx.post(classify_url(live_server, project_id, "elsewhere"), headers={"Prediction-Key": default.prediction_key},
                          content=png(RED))
    assert refused(response) == (404, "NotFoundIteration")
    assert lab.api.http.delete(f"/projects/{project_id}/iterations/{first}").status_code == 204
    assert refused(lab.api.http.get(f"/projects/{project_id}/iterations/{first}")) == (404, "NotFoundIteration")
    assert [it.id for it in lab.trainer.get_iterations(project_id)] == [second]


def test_publish_overwrite_takes_the_name_over(lab: Lab, live_server: LiveServer) -> None:
    """PublishIteration's ``overwrite=true``: "overwrite the published model with the given name"."""
    project_id, first = lab.coin
    target = live_server.default.prediction_resource_id
    assert lab.trainer.publish_iteration(project_id, first, "coin", target) is True
    second = lab.api.train(project_id, forceTrain="true")
    assert lab.api.wait(project_id, second)["status"] == "Completed"
    assert refused(lab.api.publish(project_id, second, "coin", target)) == (400, "BadRequestInvalidPublishName")
    response = lab.api.publish(project_id, second, "coin", target, overwrite="true")
    assert response.status_code == 200, response.text
    assert lab.trainer.get_iteration(project_id, second).publish_name == "coin"
    assert lab.trainer.get_iteration(project_id, first).publish_name is None
    result = predictor_for(live_server, live_server.default.prediction_key).classify_image(project_id, "coin", png(RED))
    assert result.iteration == second


def test_failed_iteration_cannot_be_published(lab: Lab, live_server: LiveServer) -> None:
    project_id, iteration_id = lab.doomed
    assert lab.trainer.get_iteration(project_id, iteration_id).status == "Failed"
    response = lab.api.publish(project_id, iteration_id, "never", live_server.default.prediction_resource_id)
    assert refused(response) == (400, "BadRequestIterationIsNotTrained")
    assert lab.trainer.get_iteration(project_id, iteration_id).publish_name is None


# ------------------------------------------------------------------------------------------------ honest metrics


def test_random_labels_score_poorly(lab: Lab) -> None:
    """Labels from a coin toss cannot be learnt: an out-of-sample evaluation must say so."""
    project_id, iteration_id = lab.coin
    performance = lab.trainer.get_iteration_performance(project_id, iteration_id, threshold=0.5)
    assert performance.precision < 0.85 and performance.recall < 0.85, performance
    assert performance.average_precision < 0.85, performance
    assert all(tag.average_precision < 0.85 for tag in performance.per_tag_performance), performance


def test_threshold_changes_precision_and_recall(lab: Lab) -> None:
    project_id, iteration_id = lab.coin
    low = lab.api.performance(project_id, iteration_id, threshold=0.1)
    high = lab.api.performance(project_id, iteration_id, threshold=0.9)
    assert (low["precision"], low["recall"]) != (high["precision"], high["recall"])
    assert low["recall"] >= high["recall"]
    # Average precision does not depend on the threshold.
    assert low["averagePrecision"] == pytest.approx(high["averagePrecision"])
    for report in (low, high):
        for name in ("precision", "recall", "averagePrecision", "precisionStdDeviation", "recallStdDeviation"):
            assert 0.0 <= report[name] <= 1.0, (name, report)


def test_clean_fruit_scores_well(lab: Lab) -> None:
    fruit = lab.fruit
    performance = lab.trainer.get_iteration_performance(fruit.project_id, fruit.iteration_id)
    per_tag = {tag.name: tag for tag in performance.per_tag_performance}
    assert set(per_tag) == {*FRUITS, "Negative"}
    for name, tag in per_tag.items():
        assert tag.id == fruit.tags[name]
        assert tag.average_precision > 0.8, (name, tag)
    assert performance.precision > 0.8 and performance.recall > 0.8, performance


def test_image_performances(lab: Lab) -> None:
    fruit = lab.fruit
    trainer = lab.trainer
    assert trainer.get_image_performance_count(fruit.project_id, fruit.iteration_id) == 52
    images = trainer.get_image_performances(fruit.project_id, fruit.iteration_id, take=100)
    assert len(images) == 52 and {image.id for image in images} == set(fruit.image_tags)
    right = 0
    for image in images:
        assert len(image.predictions) == 4, image
        probabilities = [p.probability for p in image.predictions]
        assert probabilities == sorted(probabilities, reverse=True)
        assert [tag.tag_name for tag in image.tags] == [fruit.image_tags[image.id]]
        right += image.predictions[0].tag_name == fruit.image_tags[image.id]
    assert right >= 0.9 * len(images), f"{right} of {len(images)} images ranked their own tag first"

    apple = fruit.tags["apple"]
    assert trainer.get_image_performance_count(fruit.project_id, fruit.iteration_id, tag_ids=[apple]) == 15
    apples = trainer.get_image_performances(fruit.project_id, fruit.iteration_id, tag_ids=[apple], take=50)
    assert len(apples) == 15 and all(fruit.image_tags[image.id] == "apple" for image in apples)
    page = trainer.get_image_performances(fruit.project_id, fruit.iteration_id, take=10, skip=50)
    assert len(page) == 2


# ------------------------------------------------------------------------------------------------ the Prediction API


@pytest.fixture(scope="module")
def pair_model(lab: Lab, live_server: LiveServer) -> tuple[str, str]:
    project_id, _, _, _ = lab.pair
    # The first iteration is unpublished and deleted by the iteration tests; publish the last completed one.
    completed = [it for it in lab.trainer.get_iterations(project_id) if it.status == "Completed"]
    response = lab.api.publish(project_id, completed[-1].id, "pair-model", live_server.default.prediction_resource_id)
    assert response.status_code == 200 and response.json() is True, response.text
    return project_id, "pair-model"


def test_prediction_keys_and_names(pair_model, live_server: LiveServer) -> None:  # type: ignore[no-untyped-def]
    project_id, name = pair_model
    key = {"Prediction-Key": live_server.default.prediction_key}
    assert httpx.post(classify_url(live_server, project_id, name), headers=key, content=png(RED)).status_code == 200
    for headers in ({"Prediction-Key": "0" * 32}, {}, {"Training-Key": live_server.default.training_key}):
        assert httpx.post(classify_url(live_server, project_id, name), headers=headers, content=png(RED)).status_code == 401
    assert refused(httpx.post(classify_url(live_server, project_id, "no-such-name"), headers=key, content=png(RED))) == (
        404, "NotFoundIteration")
    assert refused(httpx.post(classify_url(live_server, str(uuid.uuid4()), name), headers=key, content=png(RED))) == (
        404, "NotFoundIteration")


def _noise_png(side: int) -> bytes:
    import numpy as np

    pixels = np.random.default_rng(7).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def test_prediction_refuses_large_and_non_images(pair_model, live_server: LiveServer) -> None:  # type: ignore[no-untyped-def]
    project_id, name = pair_model
    key = {"Prediction-Key": live_server.default.prediction_key}
    large = _noise_png(1300)
    assert 4 * 1024 * 1024 < len(large) < 6 * 1024 * 1024  # over the prediction limit, under the training one
    for suffix in ("image", "image/nostore"):
        url = classify_url(live_server, project_id, name, suffix)
        assert refused(httpx.post(url, headers=key, content=large, timeout=60)) == (400, "BadRequestImageSizeBytes")
        assert refused(httpx.post(url, headers=key, files={"imageData": ("big.png", large, "image/png")}, timeout=60)) == (
            400, "BadRequestImageSizeBytes")
        text = b"this is a text file, not a picture\n" * 10
        assert refused(httpx.post(url, headers=key, content=text)) == (400, "BadRequestImageFormat")
        assert refused(httpx.post(url, headers=key, files={"imageData": ("notes.txt", text, "text/plain")})) == (
            400, "BadRequestImageFormat")


def test_tag_type_only_from_v31(pair_model, live_server: LiveServer) -> None:  # type: ignore[no-untyped-def]
    project_id, name = pair_model
    key = {"Prediction-Key": live_server.default.prediction_key}
    old = httpx.post(classify_url(live_server, project_id, name, "image/nostore", "v3.0"), headers=key, content=png(BLUE))
    new = httpx.post(classify_url(live_server, project_id, name, "image/nostore", "v3.1"), headers=key, content=png(BLUE))
    assert old.status_code == 200 and new.status_code == 200, (old.text, new.text)
    assert old.json()["predictions"] and all("tagType" not in p for p in old.json()["predictions"])
    assert all(p["tagType"] == "Regular" for p in new.json()["predictions"])
    assert [p["tagName"] for p in old.json()["predictions"]] == [p["tagName"] for p in new.json()["predictions"]]
    assert new.json()["predictions"][0]["tagName"] == "blue"


class _CountingHandler(http.server.BaseHTTPRequestHandler):
    hits = 0
    body = b""

    def do_GET(self) -> None:
        type(self).hits += 1
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


def test_urls_to_loopback_are_not_fetched(pair_model, lab: Lab, live_server: LiveServer) -> None:  # type: ignore[no-untyped-def]
    project_id, name = pair_model
    handler = type("Handler", (_CountingHandler,), {"hits": 0, "body": png(RED)})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        urls = [f"http://127.0.0.1:{port}/red.png", f"http://localhost:{port}/red.png", f"http://[::1]:{port}/red.png"]
        key = {"Prediction-Key": live_server.default.prediction_key}
        for url in urls:
            for suffix in ("url", "url/nostore"):
                response = httpx.post(classify_url(live_server, project_id, name, suffix), headers=key, json={"url": url})
                assert refused(response) == (400, "BadRequestImageUrl"), url
            response = lab.api.http.post(f"/projects/{project_id}/quicktest/url", json={"url": url})
            assert refused(response) == (400, "BadRequestImageUrl"), url
        assert handler.hits == 0, "the server fetched a loopback URL"
    finally:
        server.shutdown()
        server.server_close()


# ------------------------------------------------------------------------------------------------ object detection validation

OBJECT_DETECTION_GENERAL = "da2e3a8a-40a5-4171-82f4-58522f70fbc1"


def _detection_project(api: Api, boxed_per_tag: int) -> tuple[str, list[str]]:
    """Two tags, each boxed in ``boxed_per_tag`` images (one region per image)."""
    project_id = str(api.ok(api.http.post("/projects", params={"name": f"od-{uuid.uuid4().hex[:10]}", "domainId": OBJECT_DETECTION_GENERAL}))["id"])
    tags = [api.tag(project_id, "fork"), api.tag(project_id, "scissors")]
    for tag_id, colour in zip(tags, (RED, BLUE)):
        image_ids = api.images(project_id, [], boxed_per_tag, colour)
        regions = [{"imageId": image_id, "tagId": tag_id, "left": 0.2, "top": 0.2, "width": 0.5, "height": 0.5} for image_id in image_ids]
        api.ok(api.http.post(f"/projects/{project_id}/images/regions", json={"regions": regions}))
    return project_id, tags


def test_detection_training_needs_regions_fifteen_images_a_tag_and_no_negative_tag(live_server: LiveServer) -> None:
    api = Api(live_server)
    trainer = trainer_for(live_server)

    # Tagged images without a single region teach a detector nothing.
    project_id = str(api.ok(api.http.post("/projects", params={"name": f"od-{uuid.uuid4().hex[:10]}", "domainId": OBJECT_DETECTION_GENERAL}))["id"])
    tag_id = api.tag(project_id, "fork")
    api.images(project_id, [tag_id], 15, RED)
    assert sdk_error(lambda: trainer.train_project(project_id)) == ("BadRequestDetectionTrainingValidationFailed", 400)
    _no_iterations(api, project_id)

    # Fourteen boxed images of a tag are one too few.
    project_id, _ = _detection_project(api, 14)
    code, status = sdk_error(lambda: trainer.train_project(project_id))
    assert (code, status) == ("BadRequestDetectionTrainingValidationFailed", 400)
    _no_iterations(api, project_id)

    # Enough regions, but a Negative tag on an image: refused with its own code.
    project_id, _ = _detection_project(api, 15)
    negative = api.tag(project_id, "nothing", tag_type="Negative")
    api.images(project_id, [negative], 1, (128, 128, 128))
    assert sdk_error(lambda: trainer.train_project(project_id)) == ("BadRequestDetectionTrainingNotAllowNegativeTag", 400)
    assert sdk_error(lambda: trainer.train_project(project_id, training_type="Advanced"))[0] == "BadRequestDomainNotSupportedForAdvancedTraining"
    _no_iterations(api, project_id)
