"""Property-based contract test: the v3.3 Training spec, run by schemathesis against the live server.

Schemathesis generates requests (valid and invalid) for a subset of the spec's operations; every response must
not be a 5xx and must match the schema the spec documents for its status (``default`` is CustomVisionError).

Random GUIDs would mostly meet ``NotFoundProject``, so each generated case is, most of the time, pointed at real
objects (a classification project and an object-detection project with tags, images and a region) created for
each operation; operations that delete or change a project or a tag get a fresh throw-away one instead.

Iteration operations need a trained model: once per module (``trained``) two tiny projects (two tags of five
flat-coloured images each, which trains in about two seconds) are trained: ``model``, published and never
changed, for the read-only operations, QuickTest and stored predictions; ``scratch`` for TrainProject,
PublishIteration, UnpublishIteration and DeleteIteration, whose iterations come and go. iterationId, tagIds,
prediction ids and predictionId are pointed at real ones most of the time.

A second test sends fixed edge cases the generator cannot produce (see ``EDGE_CASES``) through the same checks.
A third runs the Prediction v3.1 spec's classification operations with the Prediction-Key against ``model``.
Run time is about 60 s on two cores with the default 20 examples per operation (plus the first export of the
backbone when no earlier test trained); set OCV_SCHEMATHESIS_EXAMPLES for a deeper search. The specs live beside
the repository (../shared/specs); without the Training spec the module is skipped.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

SPECS = Path(__file__).resolve().parents[1].parent / "shared" / "specs" / "customvision"
SPEC_PATH = SPECS / "Training" / "stable" / "v3.3" / "Training.json"
PREDICTION_SPEC_PATH = SPECS / "Prediction" / "stable" / "v3.1" / "Prediction.json"
if not SPEC_PATH.exists():
    pytest.skip(f"the Training v3.3 spec {SPEC_PATH} is absent (expected beside the repository, as in CI)",
                allow_module_level=True)

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from spec_subset import OPERATIONS, PREDICTION_OPERATIONS, load_subset

pytestmark = pytest.mark.slow

# Examples per operation: 20 keeps the whole module near 35 s on two cores; raise it locally for a deeper search.
MAX_EXAMPLES = int(os.environ.get("OCV_SCHEMATHESIS_EXAMPLES", "20"))
OBJECT_DETECTION_DOMAIN = "da2e3a8a-40a5-4171-82f4-58522f70fbc1"
GENERAL_DOMAIN = "ee85a74c-405e-4adc-bb47-ffa8ca0c9f31"

SCHEMATHESIS_CONFIG = {
    # Security parameters are left out of generation: every call sends the default resource's key.
    "generation": {"mode": "all", "deterministic": True, "database": "none", "with-security-parameters": False},
    # Only the fuzzing phase: the coverage phase sends hundreds of boundary cases per operation (too slow for
    # the time budget), and the examples phase cannot be combined with `@schema.given`.
    "phases": {"examples": {"enabled": False}, "coverage": {"enabled": False}, "stateful": {"enabled": False}},
}

schema = schemathesis.openapi.from_dict(
    load_subset(SPEC_PATH), config=schemathesis.Config.from_dict(SCHEMATHESIS_CONFIG),
).include(operation_id=list(OPERATIONS))

CHECKS = [not_a_server_error, response_schema_conformance]


_unique = itertools.count(1)


def _png(colour: tuple[int, int, int] | None = None, size: tuple[int, int] = (48, 32)) -> bytes:
    """A small PNG; without ``colour`` one that no earlier call produced (the server refuses duplicates)."""
    from PIL import Image

    if colour is None:
        n = next(_unique)
        colour = (n % 256, n // 256 % 256, 77)
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _near(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """A colour close to ``colour`` that no earlier call produced."""
    n = next(_unique)
    return (colour[0] + n % 30, colour[1] + n // 30 % 30, colour[2])


@dataclass
class Project:
    id: str
    tag_ids: list[str] = field(default_factory=list)
    image_ids: list[str] = field(default_factory=list)
    region_ids: list[str] = field(default_factory=list)


class World:
    """Real objects on the live server, removed again afterwards."""

    def __init__(self, client: httpx.Client, trained: Trained | None = None) -> None:
        self.client = client
        self.created_projects: list[str] = []
        self.projects: list[Project] = []
        self.trained = trained

    def _ok(self, response: httpx.Response) -> Any:
        request = response.request
        outcome = f"{response.status_code} {response.text}"
        assert response.status_code == 200, f"setup: {request.method} {request.url} -> {outcome}"
        return response.json()

    def new_project(self, *, domain_id: str = GENERAL_DOMAIN) -> Project:
        name = f"st-{uuid.uuid4().hex[:12]}"
        body = self._ok(self.client.post("/projects", params={"name": name, "domainId": domain_id}))
        self.created_projects.append(body["id"])
        return Project(body["id"])

    def new_tag(self, project: Project, tag_type: str = "Regular") -> str:
        name = f"tag-{uuid.uuid4().hex[:8]}"
        params = {"name": name, "type": tag_type}
        tag_id = self._ok(self.client.post(f"/projects/{project.id}/tags", params=params))["id"]
        project.tag_ids.append(tag_id)
        return tag_id

    def new_images(self, project: Project, count: int, tag_ids: list[str] | None = None,
                   near: tuple[int, int, int] | None = None) -> list[str]:
        files = [("imageData", (f"i{n}.png", _png(_near(near) if near else None), "image/png")) for n in range(count)]
        params = {"tagIds": ",".join(tag_ids)} if tag_ids else None
        summary = self._ok(self.client.post(f"/projects/{project.id}/images", files=files, params=params))
        ids = [entry["image"]["id"] for entry in summary["images"] if entry.get("image")]
        project.image_ids.extend(ids)
        return ids

    def populate(self) -> None:
        classification = self.new_project()
        tag = self.new_tag(classification)
        self.new_tag(classification)
        self.new_tag(classification, "Negative")
        self.new_images(classification, 1, [tag])
        self.new_images(classification, 1)
        detection = self.new_project(domain_id=OBJECT_DETECTION_DOMAIN)
        box = self.new_tag(detection)
        self.new_tag(detection)
        self.new_images(detection, 2)
        created = self._ok(self.client.post(
            f"/projects/{detection.id}/images/regions",
            json={"regions": [{"imageId": detection.image_ids[0], "tagId": box,
                               "left": 0.1, "top": 0.2, "width": 0.5, "height": 0.4}]},
        ))
        detection.region_ids.extend(entry["regionId"] for entry in created["created"])
        self.projects = [classification, detection]

    def remove_scratch(self) -> None:
        """Delete the projects made after ``populate`` (throw-away copies, CreateProject's), so that an operation
        with many examples stays below the limit of 100 projects per resource."""
        keep = {project.id for project in self.projects}
        for project_id in self.created_projects:
            if project_id not in keep:
                self.client.delete(f"/projects/{project_id}")
        self.created_projects = [project_id for project_id in self.created_projects if project_id in keep]

    def remove_all(self) -> None:
        for project_id in self.created_projects:
            self.client.delete(f"/projects/{project_id}")
        self.created_projects = []


@dataclass
class Trained:
    """Trained projects shared by a module's iteration cases (see the module's docstring)."""

    client: httpx.Client
    model: Project  # published as ``publish_name``; its iterations never change
    scratch: Project  # TrainProject, PublishIteration, UnpublishIteration and DeleteIteration work on this one
    model_iterations: list[str]
    publish_name: str
    prediction_resource_ids: list[str]
    prediction_ids: list[str] = field(default_factory=list)  # stored predictions of ``model``, for Delete/Create

    def scratch_iterations(self) -> list[str]:
        response = self.client.get(f"/projects/{self.scratch.id}/iterations")
        return [iteration["id"] for iteration in response.json()] if response.status_code == 200 else []

    def store_prediction(self) -> None:
        response = self.client.post(f"/projects/{self.model.id}/quicktest/image",
                                    files={"imageData": ("q.png", _png(), "image/png")})
        assert response.status_code == 200, f"setup: QuickTestImage -> {response.status_code} {response.text}"
        self.prediction_ids.append(response.json()["id"])


def _wait_trained(client: httpx.Client, project_id: str, iteration_id: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while True:
        iteration = client.get(f"/projects/{project_id}/iterations/{iteration_id}").json()
        if iteration.get("status") != "Training":
            assert iteration.get("status") == "Completed", f"setup: training {project_id} -> {iteration}"
            return
        assert time.monotonic() < deadline, "setup: training took too long"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def trained(live_server: Any) -> Iterator[Trained]:
    headers = {"Training-Key": live_server.default.training_key}
    with httpx.Client(base_url=live_server.training_url(""), headers=headers, timeout=60) as client:
        setup = World(client)
        projects = []
        for _ in range(2):
            project = setup.new_project()
            red, blue = setup.new_tag(project), setup.new_tag(project)
            project.image_ids += [*setup.new_images(project, 5, [red], (220, 30, 30)),
                                  *setup.new_images(project, 5, [blue], (30, 30, 220))]
            projects.append(project)
        queued = [setup._ok(client.post(f"/projects/{project.id}/train"))["id"] for project in projects]
        for project, iteration_id in zip(projects, queued):
            _wait_trained(client, project.id, iteration_id)
        model, scratch = projects
        resource_ids = [live_server.default.prediction_resource_id, live_server.other.prediction_resource_id]
        assert setup._ok(client.post(f"/projects/{model.id}/iterations/{queued[0]}/publish",
                                     params={"publishName": "st-model", "predictionId": resource_ids[0]})) is True
        # The scratch project: one published iteration, one that DeleteIteration may remove.
        assert setup._ok(client.post(f"/projects/{scratch.id}/iterations/{queued[1]}/publish",
                                     params={"publishName": "st-scratch", "predictionId": resource_ids[0]})) is True
        setup._ok(client.post(f"/projects/{scratch.id}/train", params={"forceTrain": "true"}))
        objects = Trained(client, model, scratch, [queued[0]], "st-model", resource_ids)
        for _ in range(3):
            objects.store_prediction()
        yield objects
        for project in projects:
            for iteration in client.get(f"/projects/{project.id}/iterations").json():
                if iteration.get("publishName"):
                    client.delete(f"/projects/{project.id}/iterations/{iteration['id']}/publish")
        setup.remove_all()


@pytest.fixture
def world(live_server: Any, trained: Trained) -> Iterator[World]:
    headers = {"Training-Key": live_server.default.training_key}
    with httpx.Client(base_url=live_server.training_url(""), headers=headers, timeout=60) as client:
        objects = World(client, trained)
        objects.populate()
        yield objects
        objects.remove_all()


# ------------------------------------------------------------------------------------- pointing at real objects

# About three draws in four replace a generated value by a real one (n=0, Hypothesis's simplest draw, means "real").
_REAL = st.integers(0, 3).map(lambda n: n < 3)
_PROJECT_MUTATIONS = {"DeleteProject", "UpdateProject", "DeleteImages"}
_TAG_MUTATIONS = {"DeleteTag", "UpdateTag"}
# Not on the test server's URL allow-list (empty) or not URLs at all: each must come back as ErrorSource.
_REFUSED_URLS = ["http://127.0.0.1:9/a.png", "https://example.invalid/b.jpg", "not a url"]


def _sample(data: st.DataObject, values: list[str], generated: Any) -> Any:
    """A real id most of the time, else what schemathesis generated."""
    if values and data.draw(_REAL):
        return data.draw(st.sampled_from(values))
    return generated


def _some(data: st.DataObject, values: list[str], generated: Any, *, csv: bool = False) -> Any:
    """A real subset (or the generated value) for a list-valued parameter; ``csv``: joined, as the spec's
    ``collectionFormat: csv`` query arrays (schemathesis has already serialised the generated ones)."""
    if values and data.draw(_REAL):
        chosen = data.draw(st.lists(st.sampled_from(values), min_size=1, max_size=len(values), unique=True))
        return ",".join(chosen) if csv else chosen
    return generated


def _retarget_entries(data: st.DataObject, entries: Any, project: Project, keys: dict[str, list[str]]) -> None:
    if not isinstance(entries, list):
        return
    for entry in entries:
        if isinstance(entry, dict):
            for key, values in keys.items():
                if key in entry:
                    entry[key] = _sample(data, values, entry[key])


# Operations on iterations: the read-only ones (and stored predictions) use the trained ``model`` project; the ones
# that start, publish or remove iterations use ``scratch``.
_MODEL_OPERATIONS = {
    "GetIterations", "GetIteration", "UpdateIteration", "GetIterationPerformance", "GetImagePerformances",
    "GetImagePerformanceCount", "QuickTestImage", "QuickTestImageUrl", "QueryPredictions", "DeletePrediction",
    "CreateImagesFromPredictions",
}
_SCRATCH_OPERATIONS = {"TrainProject", "PublishIteration", "UnpublishIteration", "DeleteIteration"}
_publish_names = itertools.count(1)


def point_at_trained(case: Any, data: st.DataObject, world: World, operation_id: str) -> None:
    trained = world.trained
    assert trained is not None
    path = case.path_parameters if isinstance(case.path_parameters, dict) else {}
    if "projectId" not in path or not data.draw(_REAL):
        return
    if operation_id in _SCRATCH_OPERATIONS:
        project, iterations = trained.scratch, trained.scratch_iterations()
    else:
        # Now and then the untrained classification project: no iteration, no performance, no model.
        untrained = data.draw(st.integers(0, 5)) == 5
        project = world.projects[0] if untrained else trained.model
        iterations = [] if untrained else trained.model_iterations
    path["projectId"] = project.id
    if "iterationId" in path:
        path["iterationId"] = _sample(data, iterations, path["iterationId"])

    query = case.query if isinstance(case.query, dict) else {}
    if "iterationId" in query and data.draw(_REAL):
        if iterations and data.draw(st.booleans()):
            query["iterationId"] = data.draw(st.sampled_from(iterations))
        else:
            del query["iterationId"]  # the latest trained iteration
    if "tagIds" in query:
        query["tagIds"] = _some(data, project.tag_ids, query["tagIds"], csv=True)
    if "predictionId" in query and data.draw(_REAL):
        query["predictionId"] = data.draw(st.sampled_from(trained.prediction_resource_ids))
    if "publishName" in query and data.draw(_REAL):
        query["publishName"] = f"st-pub-{next(_publish_names)}"
    if operation_id in ("DeletePrediction", "CreateImagesFromPredictions") and len(trained.prediction_ids) < 2:
        trained.store_prediction()
    if "ids" in query:
        query["ids"] = _some(data, trained.prediction_ids, query["ids"], csv=True)
        if operation_id == "DeletePrediction" and isinstance(query["ids"], str):
            trained.prediction_ids = [p for p in trained.prediction_ids if p not in query["ids"].split(",")]

    body = case.body
    if operation_id == "QuickTestImage" and isinstance(body, dict) and "imageData" in body and data.draw(_REAL):
        body["imageData"] = _png(data.draw(st.sampled_from([(220, 30, 30), (30, 30, 220), (90, 200, 90)])))
    if not isinstance(body, dict):
        return
    if operation_id == "QuickTestImageUrl" and "url" in body and data.draw(_REAL):
        body["url"] = data.draw(st.sampled_from(_REFUSED_URLS))
    elif operation_id == "TrainProject" and isinstance(body.get("selectedTags"), list):
        body["selectedTags"] = _some(data, project.tag_ids, body["selectedTags"])
    elif operation_id == "QueryPredictions":
        if "iterationId" in body:
            body["iterationId"] = _sample(data, iterations, body["iterationId"])
        _retarget_entries(data, body.get("tags"), project, {"id": project.tag_ids})
    elif operation_id == "CreateImagesFromPredictions":
        if not body.get("images") and data.draw(_REAL):
            body["images"] = [{"id": ""}]
        if isinstance(body.get("tagIds"), list):
            body["tagIds"] = _some(data, project.tag_ids, body["tagIds"])
        images = body.get("images")
        for image in images if isinstance(images, list) else []:
            if isinstance(image, dict):
                if "id" in image:
                    image["id"] = _sample(data, trained.prediction_ids, image["id"])
                if isinstance(image.get("tagIds"), list):
                    image["tagIds"] = _some(data, project.tag_ids, image["tagIds"])


def point_at_real_objects(case: Any, data: st.DataObject, world: World) -> None:
    operation_id = case.operation.definition.raw.get("operationId")
    if operation_id in _MODEL_OPERATIONS | _SCRATCH_OPERATIONS:
        point_at_trained(case, data, world, operation_id)
        return
    path = case.path_parameters if isinstance(case.path_parameters, dict) else {}
    if "domainId" in path and data.draw(_REAL):
        path["domainId"] = data.draw(st.sampled_from([GENERAL_DOMAIN, OBJECT_DETECTION_DOMAIN]))
    if "projectId" not in path or not data.draw(_REAL):
        return
    project = data.draw(st.sampled_from(world.projects))
    if operation_id in _PROJECT_MUTATIONS:
        # A throw-away copy, so that later cases of this operation still find the shared objects.
        detection = project is world.projects[1]
        project = world.new_project(domain_id=OBJECT_DETECTION_DOMAIN if detection else GENERAL_DOMAIN)
        world.new_tag(project)
        world.new_images(project, 2, project.tag_ids)
    path["projectId"] = project.id
    if "tagId" in path:
        if operation_id in _TAG_MUTATIONS:
            path["tagId"] = world.new_tag(project)
        else:
            path["tagId"] = _sample(data, project.tag_ids, path["tagId"])

    query = case.query if isinstance(case.query, dict) else {}
    if "iterationId" in query and data.draw(_REAL):
        del query["iterationId"]  # the projects here are never trained: any iteration id meets NotFoundIteration
    real_ids = {"tagIds": project.tag_ids, "imageIds": project.image_ids, "regionIds": project.region_ids}
    for name, values in real_ids.items():
        if name in query:
            query[name] = _some(data, values, query[name], csv=True)

    body = case.body
    if operation_id == "CreateImagesFromData" and isinstance(body, dict) and "imageData" in body and data.draw(_REAL):
        body["imageData"] = _png((data.draw(st.integers(0, 255)), 10, 200))
    if not isinstance(body, dict):
        return
    if operation_id in ("CreateImagesFromFiles", "CreateImagesFromUrls"):
        if not body.get("images") and data.draw(_REAL):
            # An empty batch is only ever refused; give it an entry the server can work on.
            body["images"] = [{"contents": ""} if operation_id == "CreateImagesFromFiles" else {"url": ""}]
        if isinstance(body.get("tagIds"), list):
            body["tagIds"] = _some(data, project.tag_ids, body["tagIds"])
        images = body.get("images")
        for image in images if isinstance(images, list) else []:
            if not isinstance(image, dict):
                continue
            if isinstance(image.get("tagIds"), list):
                image["tagIds"] = _some(data, project.tag_ids, image["tagIds"])
            _retarget_entries(data, image.get("regions"), project, {"tagId": project.tag_ids})
            if operation_id == "CreateImagesFromFiles" and "contents" in image and data.draw(_REAL):
                image["contents"] = base64.b64encode(_png((0, data.draw(st.integers(0, 255)), 0))).decode()
            if operation_id == "CreateImagesFromUrls" and "url" in image and data.draw(_REAL):
                image["url"] = data.draw(st.sampled_from(_REFUSED_URLS))
    elif operation_id == "CreateImageTags":
        _retarget_entries(data, body.get("tags"), project, {"imageId": project.image_ids, "tagId": project.tag_ids})
    elif operation_id == "CreateImageRegions":
        _retarget_entries(data, body.get("regions"), project, {"imageId": project.image_ids, "tagId": project.tag_ids})


# ------------------------------------------------------------------------------------- the tests

SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def _operation_id(case: Any) -> str:
    return str(case.operation.definition.raw.get("operationId"))


def _call(case: Any, live_server: Any, world: World) -> None:
    """``case.call_and_validate``, split so that a created project is known (and removed) even when checks fail."""
    transport = {"base_url": live_server.training_url(""),
                 "headers": {"Training-Key": live_server.default.training_key}, "timeout": 60}
    try:
        response = case.call(**transport)
        if response.status_code == 200 and _operation_id(case) == "CreateProject":
            world.created_projects.append(json.loads(response.content)["id"])
        case.validate_response(response, checks=CHECKS, headers=transport["headers"], transport_kwargs=transport)
    finally:
        world.remove_scratch()


@schema.given(data=st.data())
@schema.parametrize()
@SETTINGS
def test_training_v33_conforms_to_spec(case: Any, data: st.DataObject, live_server: Any, world: World) -> None:
    point_at_real_objects(case, data, world)
    _call(case, live_server, world)


# Inputs the generator never produces (integers beyond int64, lone UTF-16 surrogates in JSON, which Hypothesis's
# UTF-8 text cannot hold) or produces too rarely to count on (NUL characters, which PostgreSQL cannot store).
# Each is sent as a schemathesis case and held to the same checks: never a 5xx, always the documented schema.
# Each lambda takes the first tag and the first image of the world's classification project.
EDGE_CASES = {
    "GetImages-skip-beyond-int64": ("GetImages", lambda t, i: {"query": {"skip": str(2**63)}}),
    "GetTaggedImages-skip-beyond-int64": ("GetTaggedImages", lambda t, i: {"query": {"skip": str(10**23)}}),
    "GetUntaggedImages-skip-beyond-int64": ("GetUntaggedImages", lambda t, i: {"query": {"skip": str(2**63)}}),
    "UpdateProject-lone-surrogate": (
        "UpdateProject", lambda t, i: {"body": {"name": "\ud800", "description": "x", "settings": {}}}),
    "UpdateTag-lone-surrogate": (
        "UpdateTag", lambda t, i: {"tagId": t, "body": {"name": "\ud800", "description": "x", "type": "Regular"}}),
    "UpdateImageMetadata-lone-surrogate": (
        "UpdateImageMetadata", lambda t, i: {"query": {"imageIds": i}, "body": {"colour": "\udfff"}}),
    "CreateImagesFromUrls-lone-surrogate": (
        "CreateImagesFromUrls", lambda t, i: {"body": {"images": [{"url": "https://example.invalid/\ud800.png"}]}}),
    "CreateProject-nul": ("CreateProject", lambda t, i: {"query": {"name": "nul\x00name"}}),
    "CreateTag-nul": ("CreateTag", lambda t, i: {"query": {"name": "nul\x00tag"}}),
    "UpdateTag-nul": (
        "UpdateTag", lambda t, i: {"tagId": t, "body": {"name": "nul\x00", "description": "x", "type": "Regular"}}),
    "UpdateImageMetadata-nul": (
        "UpdateImageMetadata", lambda t, i: {"query": {"imageIds": i}, "body": {"colour\x00": "red\x00"}}),
    # Valid RFC 3339 date-times whose conversion to UTC leaves Python's datetime range (year 1 to 9999).
    "QueryPredictions-startTime-before-year-1-in-utc": (
        "QueryPredictions", lambda t, i: {"body": {"startTime": "0001-01-01T00:00:00+01:00", "maxCount": 5}}),
    "QueryPredictions-endTime-after-year-9999-in-utc": (
        "QueryPredictions", lambda t, i: {"body": {"endTime": "9999-12-31T23:59:59-00:01", "maxCount": 5}}),
    "QueryPredictions-application-lone-surrogate": (
        "QueryPredictions", lambda t, i: {"body": {"application": "\ud800", "maxCount": 5}}),
    "QueryPredictions-application-nul": (
        "QueryPredictions", lambda t, i: {"body": {"application": "app\x00", "maxCount": 5}}),
    # A continuation token the service never gave: base64 of {"offset": 1e400} (infinity once parsed).
    "QueryPredictions-continuation-infinite-offset": (
        "QueryPredictions", lambda t, i: {"body": {"continuation": base64.urlsafe_b64encode(b'{"offset": 1e400}').decode()}}),
    "QueryPredictions-continuation-huge-offset": (
        "QueryPredictions", lambda t, i: {"body": {"continuation": base64.urlsafe_b64encode(b'{"offset": 1e30}').decode()}}),
    "UpdateIteration-lone-surrogate": ("UpdateIteration", lambda t, i: {"body": {"name": "\udfff"}}),
    "UpdateIteration-nul": ("UpdateIteration", lambda t, i: {"body": {"name": "nul\x00"}}),
    "GetImagePerformances-skip-beyond-int64": ("GetImagePerformances", lambda t, i: {"query": {"skip": str(2**63)}}),
    "TrainProject-email-nul": ("TrainProject", lambda t, i: {"query": {"notificationEmailAddress": "a\x00@b.example"}}),
    "PublishIteration-name-nul": ("PublishIteration", lambda t, i: {"query": {"publishName": "nul\x00", "predictionId": "x"}}),
}


@pytest.mark.parametrize("name", list(EDGE_CASES))
def test_training_v33_edge_cases_conform_to_spec(name: str, live_server: Any, world: World) -> None:
    operation_id, make = EDGE_CASES[name]
    operation = schema.find_operation_by_id(operation_id)
    # Operations on iterations run on the trained (or, for TrainProject and PublishIteration, the scratch) project.
    trained = world.trained
    assert trained is not None
    if operation_id in _SCRATCH_OPERATIONS:
        project, iteration_id = trained.scratch, trained.scratch_iterations()[0]
    elif operation_id in _MODEL_OPERATIONS:
        project, iteration_id = trained.model, trained.model_iterations[0]
    else:
        project, iteration_id = world.projects[0], ""
    parts = make(project.tag_ids[0], project.image_ids[0])
    path_parameters = {"projectId": project.id} if "{projectId}" in operation.path else {}
    if "{iterationId}" in operation.path:
        path_parameters["iterationId"] = iteration_id
    if "tagId" in parts:
        path_parameters["tagId"] = parts["tagId"]
    kwargs: dict[str, Any] = {"path_parameters": path_parameters, "query": parts.get("query")}
    if "body" in parts:
        kwargs.update(body=parts["body"], media_type="application/json")
    _call(operation.Case(**kwargs), live_server, world)


# ------------------------------------------------------------------------------------- the Prediction API (v3.1)

if PREDICTION_SPEC_PATH.exists():
    prediction_schema = schemathesis.openapi.from_dict(
        load_subset(PREDICTION_SPEC_PATH, PREDICTION_OPERATIONS), config=schemathesis.Config.from_dict(SCHEMATHESIS_CONFIG),
    ).include(operation_id=list(PREDICTION_OPERATIONS))

    def point_at_published_model(case: Any, data: st.DataObject, trained: Trained) -> None:
        path = case.path_parameters if isinstance(case.path_parameters, dict) else {}
        if "projectId" in path and data.draw(_REAL):
            path["projectId"] = trained.model.id
            if "publishedName" in path and data.draw(_REAL):
                path["publishedName"] = trained.publish_name
        body = case.body
        if isinstance(body, dict) and "imageData" in body and data.draw(_REAL):
            body["imageData"] = _png(data.draw(st.sampled_from([(220, 30, 30), (30, 30, 220), (90, 200, 90)])))
        if isinstance(body, dict) and "url" in body and data.draw(_REAL):
            body["url"] = data.draw(st.sampled_from(_REFUSED_URLS))

    @prediction_schema.given(data=st.data())
    @prediction_schema.parametrize()
    @SETTINGS
    def test_prediction_v31_conforms_to_spec(case: Any, data: st.DataObject, live_server: Any, trained: Trained) -> None:
        point_at_published_model(case, data, trained)
        transport = {"base_url": f"{live_server.endpoint}/customvision/v3.1/prediction",
                     "headers": {"Prediction-Key": live_server.default.prediction_key}, "timeout": 60}
        response = case.call(**transport)
        case.validate_response(response, checks=CHECKS, headers=transport["headers"], transport_kwargs=transport)
