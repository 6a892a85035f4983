"""Real objects on the live server for the conformance suite (tests/test_conformance.py), and the rules that point
a generated case at them.

Random GUIDs would mostly meet ``NotFoundProject``, so three draws in four replace a generated id by a real one:

- ``Models`` (once per module): a trained and published classifier (``classifier``), a trained and published
  detector (``detector``), each with stored predictions; ``scratch``, a trained classifier whose iterations
  TrainProject, PublishIteration, UnpublishIteration and DeleteIteration make and remove.
- ``World`` (once per operation): an untrained classification project and an untrained detection project with
  tags, images and a region, for the operations that change images and tags; throw-away copies for the ones that
  delete or rewrite a project, fresh tags for the ones that delete or rewrite a tag.

The keys are pointed too: most cases carry the resource's own key, some another account's (its objects are
absent), and some keep what schemathesis generated for the security parameters (a random key, or none).
"""

from __future__ import annotations

import base64
import io
import itertools
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from hypothesis import strategies as st

OBJECT_DETECTION_DOMAIN = "da2e3a8a-40a5-4171-82f4-58522f70fbc1"
GENERAL_DOMAIN = "ee85a74c-405e-4adc-bb47-ffa8ca0c9f31"
RED, BLUE, GREEN = (220, 30, 30), (30, 30, 220), (90, 200, 90)
# Not on the test server's URL allow-list (empty) or not URLs at all: each must be refused, never fetched.
REFUSED_URLS = ["http://127.0.0.1:9/a.png", "https://example.invalid/b.jpg", "not a url"]

_unique = itertools.count(1)


def png(colour: tuple[int, int, int] | None = None, size: tuple[int, int] = (48, 32)) -> bytes:
    """A small PNG; without ``colour`` one that no earlier call produced (the server refuses duplicates)."""
    from PIL import Image

    if colour is None:
        n = next(_unique)
        colour = (n % 256, n // 256 % 256, 77)
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def near(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """A colour close to ``colour`` that no earlier call produced."""
    n = next(_unique)
    return (colour[0] + n % 30, colour[1] + n // 30 % 30, colour[2])


@dataclass
class Project:
    id: str
    detection: bool = False
    tag_ids: list[str] = field(default_factory=list)
    image_ids: list[str] = field(default_factory=list)
    region_ids: list[str] = field(default_factory=list)
    iteration_ids: list[str] = field(default_factory=list)
    prediction_ids: list[str] = field(default_factory=list)
    publish_name: str | None = None


class Server:
    """A Training API client that fails loudly when setting up goes wrong."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.created_projects: list[str] = []

    def ok(self, response: httpx.Response) -> Any:
        request = response.request
        assert response.status_code == 200, f"setup: {request.method} {request.url} -> {response.status_code} {response.text}"
        return response.json()

    def new_project(self, *, detection: bool = False) -> Project:
        params = {"name": f"st-{uuid.uuid4().hex[:12]}", "domainId": OBJECT_DETECTION_DOMAIN if detection else GENERAL_DOMAIN}
        body = self.ok(self.client.post("/projects", params=params))
        self.created_projects.append(body["id"])
        return Project(body["id"], detection=detection)

    def new_tag(self, project: Project, tag_type: str = "Regular") -> str:
        params = {"name": f"tag-{uuid.uuid4().hex[:8]}", "type": tag_type}
        tag_id = self.ok(self.client.post(f"/projects/{project.id}/tags", params=params))["id"]
        project.tag_ids.append(tag_id)
        return tag_id

    def new_images(self, project: Project, count: int, tag_ids: list[str] | None = None,
                   colour: tuple[int, int, int] | None = None) -> list[str]:
        files = [("imageData", (f"i{n}.png", png(near(colour) if colour else None), "image/png")) for n in range(count)]
        params = {"tagIds": ",".join(tag_ids)} if tag_ids else None
        summary = self.ok(self.client.post(f"/projects/{project.id}/images", files=files, params=params))
        ids = [entry["image"]["id"] for entry in summary["images"] if entry.get("image")]
        project.image_ids.extend(ids)
        return ids

    def new_region(self, project: Project, image_id: str, tag_id: str) -> None:
        created = self.ok(self.client.post(f"/projects/{project.id}/images/regions", json={"regions": [
            {"imageId": image_id, "tagId": tag_id, "left": 0.1, "top": 0.2, "width": 0.5, "height": 0.4}]}))
        project.region_ids.extend(entry["regionId"] for entry in created["created"])

    def remove_projects(self, keep: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        for project_id in self.created_projects:
            if project_id not in keep:
                for iteration in self.client.get(f"/projects/{project_id}/iterations").json() or []:
                    if isinstance(iteration, dict) and iteration.get("publishName"):
                        self.client.delete(f"/projects/{project_id}/iterations/{iteration['id']}/publish")
                self.client.delete(f"/projects/{project_id}")
        self.created_projects = [project_id for project_id in self.created_projects if project_id in keep]


# ------------------------------------------------------------------------------------------------ trained models


def wait_trained(client: httpx.Client, project_id: str, iteration_id: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while True:
        iteration = client.get(f"/projects/{project_id}/iterations/{iteration_id}").json()
        if iteration.get("status") != "Training":
            assert iteration.get("status") == "Completed", f"setup: training {project_id} -> {iteration}"
            return
        assert time.monotonic() < deadline, "setup: training took too long"
        time.sleep(0.2)


@dataclass
class Models:
    """The trained projects a module's cases share (see the module's docstring)."""

    server: Server
    classifier: Project
    scratch: Project
    detector: Project | None  # borrowed from the session (None without the shared data): see borrow_detector
    prediction_resource_ids: list[str]
    domain_ids: list[str]

    @property
    def trained(self) -> list[Project]:
        return [self.classifier, self.detector] if self.detector is not None else [self.classifier]

    def scratch_iterations(self) -> list[str]:
        response = self.server.client.get(f"/projects/{self.scratch.id}/iterations")
        return [iteration["id"] for iteration in response.json()] if response.status_code == 200 else []

    def store_prediction(self, project: Project) -> None:
        response = self.server.client.post(f"/projects/{project.id}/quicktest/image",
                                           files={"imageData": ("q.png", png(), "image/png")})
        project.prediction_ids.append(self.server.ok(response)["id"])

    def stored(self, project_id: str, prediction_id: str) -> None:
        """A prediction a case stored; those on the borrowed detector are deleted again at the end."""
        for project in self.trained:
            if project.id == project_id and prediction_id not in project.prediction_ids:
                project.prediction_ids.append(prediction_id)


def train_models(server: Server, prediction_resource_ids: list[str], detector: Project | None) -> Models:
    """Two tiny classifiers (two tags of five flat-coloured images: about two seconds each), trained at the same
    time; ``classifier`` published, ``scratch`` published and training a second iteration."""
    classifiers = []
    for _ in range(2):
        project = server.new_project()
        red, blue = server.new_tag(project), server.new_tag(project)
        server.new_images(project, 5, [red], RED)
        server.new_images(project, 5, [blue], BLUE)
        server.new_images(project, 2)  # untagged: the smart labeler's suggestions
        classifiers.append(project)
    queued = [server.ok(server.client.post(f"/projects/{project.id}/train"))["id"] for project in classifiers]
    for project, iteration_id in zip(classifiers, queued):
        wait_trained(server.client, project.id, iteration_id)
        project.iteration_ids.append(iteration_id)
    classifier, scratch = classifiers
    for project, name in ((classifier, "st-classifier"), (scratch, "st-scratch")):
        publish(server, project, name, prediction_resource_ids[0])
    # The scratch project: one published iteration, and one (training, then trained) that DeleteIteration may remove.
    server.ok(server.client.post(f"/projects/{scratch.id}/train", params={"forceTrain": "true"}))
    domains = [domain["id"] for domain in server.ok(server.client.get("/domains"))]
    models = Models(server, classifier, scratch, detector, prediction_resource_ids, domains)
    for project in models.trained:
        for _ in range(3):
            models.store_prediction(project)
    return models


def publish(server: Server, project: Project, name: str, prediction_resource_id: str) -> None:
    published = server.client.post(f"/projects/{project.id}/iterations/{project.iteration_ids[0]}/publish",
                                   params={"publishName": name, "predictionId": prediction_resource_id, "overwrite": "true"})
    assert server.ok(published) is True
    project.publish_name = name


@contextmanager
def borrow_detector(server: Server, project_id: str, iteration_id: str, prediction_resource_id: str) -> Iterator[Project]:
    """The session's trained detector (shared with the detection and export tests), published for the module's
    cases and left as found: its publication restored, the predictions the cases stored deleted. Only operations
    that read it or store predictions are pointed at it (``Pointer``)."""
    images = server.ok(server.client.get(f"/projects/{project_id}/images", params={"take": 256}))
    detector = Project(project_id, detection=True,
                       tag_ids=[tag["id"] for tag in server.ok(server.client.get(f"/projects/{project_id}/tags"))],
                       image_ids=[image["id"] for image in images],
                       region_ids=[region["regionId"] for image in images for region in image.get("regions") or []],
                       iteration_ids=[iteration_id])
    before = server.ok(server.client.get(f"/projects/{project_id}/iterations/{iteration_id}"))
    publish(server, detector, "st-detector", prediction_resource_id)
    try:
        yield detector
    finally:
        if detector.prediction_ids:
            server.client.delete(f"/projects/{project_id}/predictions", params={"ids": ",".join(detector.prediction_ids)})
        if before.get("publishName"):
            server.client.post(f"/projects/{project_id}/iterations/{iteration_id}/publish", params={
                "publishName": before["publishName"], "predictionId": before["originalPublishResourceId"], "overwrite": "true"})
        else:
            server.client.delete(f"/projects/{project_id}/iterations/{iteration_id}/publish")


class World:
    """Untrained projects of one operation's cases, removed again afterwards."""

    def __init__(self, server: Server, models: Models) -> None:
        self.server = server
        self.models = models
        classification = server.new_project()
        tag = server.new_tag(classification)
        server.new_tag(classification)
        server.new_tag(classification, "Negative")
        server.new_images(classification, 1, [tag])
        server.new_images(classification, 1)
        detection = server.new_project(detection=True)
        box = server.new_tag(detection)
        server.new_tag(detection)
        server.new_images(detection, 2)
        server.new_region(detection, detection.image_ids[0], box)
        self.projects = [classification, detection]

    def throw_away_copy(self, of: Project) -> Project:
        project = self.server.new_project(detection=of.detection)
        self.server.new_tag(project)
        self.server.new_images(project, 2, project.tag_ids)
        return project

    def remove_scratch(self) -> None:
        """Delete the projects made after set-up (throw-away copies, CreateProject's and ImportProject's), so
        that an operation with many examples stays below the limit of 100 projects per resource."""
        self.server.remove_projects(keep={project.id for project in self.projects})

    def remove_all(self) -> None:
        self.server.remove_projects()


# ------------------------------------------------------------------------------------------------ pointing at them

# About three draws in four replace a generated value by a real one (n=0, Hypothesis's simplest draw, means "real").
REAL = st.integers(0, 3).map(lambda n: n < 3)
_INDEX = st.integers(0, 31)

# Operations that need a trained iteration: the classifier's or the detector's (now and then an untrained project).
TRAINED_OPERATIONS = {
    "GetIterations", "GetIteration", "UpdateIteration", "GetIterationPerformance", "GetImagePerformances",
    "GetImagePerformanceCount", "QuickTestImage", "QuickTestImageUrl", "QueryPredictions", "DeletePrediction",
    "CreateImagesFromPredictions", "SuggestTagsAndRegions", "QuerySuggestedImages", "QuerySuggestedImageCount",
    "GetExports", "ExportIteration",
}
# The borrowed detector (shared with other modules) is never renamed, exported or given images.
NOT_ON_THE_DETECTOR = {"UpdateIteration", "CreateImagesFromPredictions", "ExportIteration"}
# Operations that start, publish or remove iterations: the scratch classifier.
SCRATCH_OPERATIONS = {"TrainProject", "PublishIteration", "UnpublishIteration", "DeleteIteration"}
# Operations that only read a project: any project, trained or not.
READ_OPERATIONS = {
    "GetProject", "GetTags", "GetTag", "GetImages", "GetImageCount", "GetTaggedImages", "GetTaggedImageCount",
    "GetUntaggedImages", "GetUntaggedImageCount", "GetImagesByIds", "GetImageRegionProposals", "ExportProject",
    "GetArtifact",
}
# Operations that delete or rewrite a project or one of its tags: a throw-away copy, a fresh tag.
PROJECT_MUTATIONS = {"DeleteProject", "UpdateProject", "DeleteImages"}
TAG_MUTATIONS = {"DeleteTag", "UpdateTag"}
# Operations whose answer makes a project of the caller's that the world must remove.
PROJECT_CREATIONS = {"CreateProject", "ImportProject"}

_publish_names = itertools.count(1)
HEAVY_EXPORTS = {"CoreML", "TensorFlow"}
# An empty batch is only ever refused; give it an entry the server can work on.
_EMPTY_ENTRY = {"CreateImagesFromFiles": {"contents": ""}, "CreateImagesFromUrls": {"url": ""},
                "CreateImagesFromPredictions": {"id": ""}}


@dataclass
class Keys:
    header: str
    own: str
    other: str


def point_key(case: Any, data: st.DataObject, keys: Keys) -> None:
    """Six cases in eight carry the resource's own key, one another account's, one what schemathesis generated."""
    choice = data.draw(st.integers(0, 7))
    if choice < 6:
        case.headers[keys.header] = keys.own
    elif choice == 6:
        case.headers[keys.header] = keys.other


def _one_of(data: st.DataObject, values: list[str]) -> str | None:
    """One of ``values`` (None when empty), drawn the same way however many there are: the pools change while an
    operation runs (predictions deleted, iterations trained), and Hypothesis replays draws by their shape."""
    index = data.draw(_INDEX)
    return values[index % len(values)] if values else None


def _pick(data: st.DataObject, values: list[str], generated: Any) -> Any:
    """A real value most of the time, else what schemathesis generated."""
    if data.draw(REAL) and (chosen := _one_of(data, values)) is not None:
        return chosen
    return generated


def _subset(data: st.DataObject, values: list[str], generated: Any, *, csv: bool = False) -> Any:
    """A real subset (or the generated value) for a list-valued parameter; ``csv``: joined, as the spec's
    ``collectionFormat: csv`` query arrays (schemathesis has already serialised the generated ones)."""
    if data.draw(REAL):
        indices = data.draw(st.lists(_INDEX, min_size=1, max_size=4))
        if values:
            chosen = list(dict.fromkeys(values[i % len(values)] for i in indices))
            return ",".join(chosen) if csv else chosen
    return generated


class Pointer:
    """Points one generated case of the Training API at real objects."""

    def __init__(self, case: Any, data: st.DataObject, world: World) -> None:
        self.case = case
        self.data = data
        self.world = world
        self.models = world.models
        self.operation_id = str(case.operation.definition.raw.get("operationId"))

    def point(self) -> None:
        path = self.case.path_parameters if isinstance(self.case.path_parameters, dict) else {}
        if "domainId" in path:
            path["domainId"] = _pick(self.data, self.models.domain_ids, path["domainId"])
        project = self._project()
        if project is None:
            self._point_body(None)
            return
        path["projectId"] = project.id
        iterations = self._iterations(project)
        if "iterationId" in path:
            path["iterationId"] = _pick(self.data, iterations, path["iterationId"])
        if "tagId" in path:
            path["tagId"] = self.world.server.new_tag(project) if self.operation_id in TAG_MUTATIONS \
                else _pick(self.data, project.tag_ids, path["tagId"])
        if "imageId" in path:
            path["imageId"] = _pick(self.data, project.image_ids, path["imageId"])
        self._point_query(project, iterations)
        self._point_body(project)

    def _project(self) -> Project | None:
        path = self.case.path_parameters if isinstance(self.case.path_parameters, dict) else {}
        if "projectId" not in path or not self.data.draw(REAL):
            return None
        draw, world, models = self.data.draw, self.world, self.models
        if self.operation_id in SCRATCH_OPERATIONS:
            return models.scratch
        if self.operation_id in TRAINED_OPERATIONS:
            # Now and then an untrained project: no iteration, no performance, no model.
            trained = [models.classifier] if self.operation_id in NOT_ON_THE_DETECTOR else models.trained
            return draw(st.sampled_from([*trained, *trained, world.projects[0]]))
        if self.operation_id in READ_OPERATIONS:
            return draw(st.sampled_from([*world.projects, *models.trained]))
        project = draw(st.sampled_from(world.projects))
        if self.operation_id in PROJECT_MUTATIONS:
            # A throw-away copy, so that later cases of this operation still find the shared objects.
            project = world.throw_away_copy(project)
        return project

    def _iterations(self, project: Project) -> list[str]:
        return self.models.scratch_iterations() if project is self.models.scratch else project.iteration_ids

    def _point_query(self, project: Project, iterations: list[str]) -> None:
        query = self.case.query if isinstance(self.case.query, dict) else {}
        draw = self.data.draw
        if "iterationId" in query and draw(REAL):
            chosen = _one_of(self.data, iterations) if draw(st.booleans()) else None
            if chosen is not None:
                query["iterationId"] = chosen
            elif self.operation_id not in ("SuggestTagsAndRegions", "QuerySuggestedImages", "QuerySuggestedImageCount"):
                del query["iterationId"]  # the current workspace, or the latest trained iteration
        real_ids = {"tagIds": project.tag_ids, "imageIds": project.image_ids, "regionIds": project.region_ids,
                    "ids": project.prediction_ids}
        for name, values in real_ids.items():
            if name in query:
                query[name] = _subset(self.data, values, query[name], csv=True)
        if self.operation_id == "DeletePrediction" and isinstance(query.get("ids"), str):
            deleted = set(query["ids"].split(","))
            project.prediction_ids = [p for p in project.prediction_ids if p not in deleted]
        if "predictionId" in query and draw(REAL):
            query["predictionId"] = draw(st.sampled_from(self.models.prediction_resource_ids))
        if "publishName" in query and draw(REAL):
            query["publishName"] = f"st-pub-{next(_publish_names)}"
        if self.operation_id == "ExportIteration" and query.get("platform") in HEAVY_EXPORTS:
            # Each accepted export starts a real one; CoreML and TensorFlow conversions take a core for tens of
            # seconds each (tests/test_export_packages.py checks those packages), so the cases ask for the ONNX
            # model or the Dockerfile package.
            query["platform"] = draw(st.sampled_from(["ONNX", "DockerFile"]))
        if self.operation_id in ("DeletePrediction", "CreateImagesFromPredictions") and len(project.prediction_ids) < 2 \
                and project in self.models.trained:
            self.models.store_prediction(project)

    def _point_body(self, project: Project | None) -> None:
        draw = self.data.draw
        point_image_body(self.case, self.data)
        body = self.case.body
        if not isinstance(body, dict):
            return
        settings = body.get("settings")
        if isinstance(settings, dict) and "domainId" in settings:
            settings["domainId"] = _pick(self.data, self.models.domain_ids, settings["domainId"])
        if project is None:
            return
        for name in ("tagIds", "selectedTags"):
            if isinstance(body.get(name), list):
                body[name] = _subset(self.data, project.tag_ids, body[name])
        if "iterationId" in body:
            body["iterationId"] = _pick(self.data, self._iterations(project), body["iterationId"])
        if self.operation_id in _EMPTY_ENTRY and not body.get("images") and draw(REAL):
            body["images"] = [dict(_EMPTY_ENTRY[self.operation_id])]
        entry_ids: dict[str, dict[str, list[str]]] = {
            "images": {"tagIds": project.tag_ids, "id": project.prediction_ids},
            "tags": {"imageId": project.image_ids, "tagId": project.tag_ids, "id": project.tag_ids},
            "regions": {"imageId": project.image_ids, "tagId": project.tag_ids},
        }
        for name, keys in entry_ids.items():
            for entry in body.get(name) if isinstance(body.get(name), list) else []:
                if isinstance(entry, dict):
                    self._point_entry(entry, keys, project)

    def _point_entry(self, entry: dict[str, Any], keys: dict[str, list[str]], project: Project) -> None:
        for key, values in keys.items():
            if isinstance(entry.get(key), list):
                entry[key] = _subset(self.data, values, entry[key])
            elif key in entry:
                entry[key] = _pick(self.data, values, entry[key])
        for region in entry.get("regions") if isinstance(entry.get("regions"), list) else []:
            if isinstance(region, dict) and "tagId" in region:
                region["tagId"] = _pick(self.data, project.tag_ids, region["tagId"])
        if "contents" in entry and self.data.draw(REAL):
            entry["contents"] = base64.b64encode(drawn_image(self.data)).decode()
        if "url" in entry and self.data.draw(REAL):
            entry["url"] = self.data.draw(st.sampled_from(REFUSED_URLS))


def drawn_image(data: st.DataObject) -> bytes:
    """A photo near one of the trained colours (or a third one), never sent before."""
    return png(near(data.draw(st.sampled_from([RED, BLUE, GREEN]))))


def point_image_body(case: Any, data: st.DataObject) -> None:
    """A real image for an image upload (multipart field or the raw body), a refused URL for a URL."""
    body = case.body
    if case.media_type == "application/octet-stream" and isinstance(body, (bytes, str)) and data.draw(REAL):
        case.body = drawn_image(data)
    elif isinstance(body, dict):
        if "imageData" in body and data.draw(REAL):
            body["imageData"] = drawn_image(data)
        if "url" in body and data.draw(REAL):
            body["url"] = data.draw(st.sampled_from(REFUSED_URLS))


def point_prediction_case(case: Any, data: st.DataObject, models: Models) -> None:
    """Points a Prediction API case at the published classifier (classify) or detector (detect)."""
    path = case.path_parameters if isinstance(case.path_parameters, dict) else {}
    operation_id = str(case.operation.definition.raw.get("operationId"))
    if "projectId" in path and data.draw(REAL):
        # Now and then the other kind of model: classify on a detector, detect on a classifier.
        fits = models.detector if operation_id.startswith("Detect") else models.classifier
        project = fits if data.draw(REAL) else data.draw(st.sampled_from(models.trained))
        path["projectId"] = project.id
        if "publishedName" in path and data.draw(REAL):
            path["publishedName"] = project.publish_name
    point_image_body(case, data)
