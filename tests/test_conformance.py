"""Conformance to the official specs: schemathesis runs every operation of Training v3.0, v3.1, v3.2 and v3.3 and
Prediction v3.0 and v3.1 against the live server.

Schemathesis generates requests, valid and invalid, security parameters included (a missing or a random key);
``conformance_objects`` points three cases in four at real objects (a trained and published classifier and
detector, throw-away projects for the destructive operations) and most of them at the resource's own key. Every
answer must pass the four checks in ``CHECKS``: no 5xx, a documented status, a documented content type, and the
schema the spec documents for that status (``default`` is CustomVisionError). The two places where a check is
applied otherwise than schemathesis applies it are listed, with the reason, in ``SWITCHED_OFF`` and
docs/conformance.md.

A second test sends fixed edge cases the generator cannot produce (see ``EDGE_CASES``) through the same checks.

Examples per operation: ``EXAMPLES`` (the newest version of each API gets more: older ones share its handlers
and differ in their schemas); set OCV_SCHEMATHESIS_EXAMPLES for a deeper search of every version. CI's
PostgreSQL pass runs the newest versions and the edge cases only (``_marked``). The specs live beside the
repository (../shared/specs); without them the module is skipped.
"""

from __future__ import annotations

import base64
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.conformance_objects import (
    Keys,
    Models,
    Pointer,
    Server,
    World,
    borrow_detector,
    point_key,
    point_prediction_case,
    train_models,
)

SPECS = Path(__file__).resolve().parents[1].parent / "shared" / "specs" / "customvision"
TRAINING_VERSIONS = ("v3.0", "v3.1", "v3.2", "v3.3")
PREDICTION_VERSIONS = ("v3.0", "v3.1")


def spec_path(api: str, version: str) -> Path:
    return SPECS / api / "stable" / version / f"{api}.json"


_absent = [path for path in [*(spec_path("Training", v) for v in TRAINING_VERSIONS),
                             *(spec_path("Prediction", v) for v in PREDICTION_VERSIONS)] if not path.exists()]
if _absent:
    pytest.skip(f"the specs {[str(p) for p in _absent]} are absent (expected beside the repository, as in CI)",
                allow_module_level=True)

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.slow

_DEEP = os.environ.get("OCV_SCHEMATHESIS_EXAMPLES")
EXAMPLES = {
    ("Training", "v3.3"): 20, ("Prediction", "v3.1"): 20,
    ("Training", "v3.0"): 5, ("Training", "v3.1"): 5, ("Training", "v3.2"): 5, ("Prediction", "v3.0"): 5,
}

CONFIG = {
    # The security parameters are generated too (a random key, or none in negative cases); point_key puts the
    # resource's own key in most cases.
    "generation": {"mode": "all", "deterministic": True, "database": "none", "with-security-parameters": True},
    # Only the fuzzing phase: the coverage phase sends hundreds of boundary cases per operation (too slow for
    # the time budget), and the examples phase cannot be combined with `@schema.given`.
    "phases": {"examples": {"enabled": False}, "coverage": {"enabled": False}, "stateful": {"enabled": False}},
}


def load_spec(api: str, version: str) -> dict[str, Any]:
    """The spec as published (never modified on disk); its host is Azure's ``{Endpoint}`` template, so the tests
    pass the live server's base URL on each call instead."""
    spec = json.loads(spec_path(api, version).read_text(encoding="utf-8-sig"))
    spec.pop("x-ms-parameterized-host", None)
    return spec


def _schema(api: str, version: str) -> Any:
    return schemathesis.openapi.from_dict(load_spec(api, version), config=schemathesis.Config.from_dict(CONFIG))


# ------------------------------------------------------------------------------------------------ checks

# (check, where) -> why it is not applied there as schemathesis applies it; docs/conformance.md shows each with an
# example.
SWITCHED_OFF = {
    ("content_type_conformance", "answers without content"):
        "Swagger 2.0 has one `produces` list per operation, for every status: a 204 No Content (DeleteProject, "
        "DeleteImages, ...) or a 202 Accepted carries no content, so it has no media type to send.",
    ("content_type_conformance", "error answers of GetArtifact"):
        "GetArtifact's `produces` is application/octet-stream (the file) for every status, but its `default` "
        "answer is a CustomVisionError, a JSON object: it is held to application/json instead.",
}


def _documents_json(case: Any) -> bool:
    produces = case.operation.definition.raw.get("produces", case.operation.schema.raw_schema.get("produces", []))
    return any("json" in media_type for media_type in produces)


@schemathesis.check
def content_type_conformance_of_content(ctx: Any, response: Any, case: Any) -> bool | None:
    """``content_type_conformance`` for answers that carry content; a CustomVisionError must be JSON where the
    operation's ``produces`` names only its success's media type (see SWITCHED_OFF)."""
    if not response.content:
        return None
    if response.status_code >= 400 and not _documents_json(case):
        content_type = "".join(response.headers.get("content-type", []))
        assert content_type.startswith("application/json"), f"a CustomVisionError answered as {content_type!r}"
        return None
    return content_type_conformance(ctx, response, case)


# Cases sent, per "version/api" (the figures of docs/conformance.md).
CASES_RUN: Counter[str] = Counter()
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance_of_content, response_schema_conformance]


# ------------------------------------------------------------------------------------------------ fixtures


def _training_client(live_server: Any) -> httpx.Client:
    headers = {"Training-Key": live_server.default.training_key}
    return httpx.Client(base_url=live_server.training_url(""), headers=headers, timeout=60)


@pytest.fixture(scope="module")
def models(request: pytest.FixtureRequest, live_server: Any) -> Iterator[Models]:
    resource_ids = [live_server.default.prediction_resource_id, live_server.other.prediction_resource_id]
    with _training_client(live_server) as client, ExitStack() as borrowed:
        server = Server(client)
        detector = None
        try:
            _, project, iteration, _, _ = request.getfixturevalue("fork_scissors_detector")
        except pytest.skip.Exception:
            pass  # no shared data: the detection cases meet the untrained detection project only
        else:
            detector = borrowed.enter_context(borrow_detector(server, project.id, iteration.id, resource_ids[0]))
        try:
            yield train_models(server, resource_ids, detector)
        finally:
            server.remove_projects()


@pytest.fixture
def world(live_server: Any, models: Models) -> Iterator[World]:
    with _training_client(live_server) as client:
        objects = World(Server(client), models)
        try:
            yield objects
        finally:
            objects.remove_all()


def _settings(api: str, version: str) -> Callable[[Any], Any]:
    return settings(
        max_examples=int(_DEEP) if _DEEP else EXAMPLES[api, version],
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


def _operation_id(case: Any) -> str:
    return str(case.operation.definition.raw.get("operationId"))


def _remember(response: Any, case: Any, models: Models, world: World | None) -> None:
    """What the call made that must go again: a project, a stored prediction."""
    if response.status_code != 200 or "json" not in "".join(response.headers.get("content-type", [])):
        return
    answer = response.json()
    if world is not None and _operation_id(case) in ("CreateProject", "ImportProject"):
        world.server.created_projects.append(answer["id"])
    if isinstance(answer, dict) and {"id", "project", "predictions"} <= answer.keys():
        models.stored(answer["project"], answer["id"])


def call_and_check(case: Any, base_url: str, models: Models, world: World | None = None) -> None:
    """``case.call_and_validate``, split so that what the call made is known (and removed) even when a check
    fails."""
    transport = {"base_url": base_url, "timeout": 60}
    CASES_RUN[base_url.rstrip("/").split("/customvision/")[-1]] += 1
    try:
        response = case.call(**transport)
        _remember(response, case, models, world)
        case.validate_response(response, checks=CHECKS, transport_kwargs=transport)
    finally:
        if world is not None:
            world.remove_scratch()


# ------------------------------------------------------------------------------------------------ the tests

NEWEST = {"Training": TRAINING_VERSIONS[-1], "Prediction": PREDICTION_VERSIONS[-1]}


def _marked(test: Callable[..., None], api: str, version: str) -> Callable[..., None]:
    """Older versions reach the newest version's handlers (routing.py): what their cases add is their schemas and
    the per-version answers of api/versions.py, none of which depends on the database engine, so CI runs them in
    its SQLite pass only. The newest versions and the edge cases run on both engines."""
    return test if version == NEWEST[api] else pytest.mark.db_independent(test)


@pytest.fixture(scope="module", autouse=True)
def cases_report(request: pytest.FixtureRequest) -> Iterator[None]:
    """Prints how many cases each API version ran (docs/conformance.md quotes these figures)."""
    yield
    with request.config.pluginmanager.get_plugin("capturemanager").global_and_fixture_disabled():
        print(f"\nconformance cases run: {sum(CASES_RUN.values())} {dict(sorted(CASES_RUN.items()))}")


def training_conformance(version: str) -> Callable[..., None]:
    schema = _schema("Training", version)

    @schema.given(data=st.data())
    @schema.parametrize()
    @_settings("Training", version)
    def test(case: Any, data: st.DataObject, live_server: Any, world: World) -> None:
        Pointer(case, data, world).point()
        point_key(case, data, Keys("Training-Key", live_server.default.training_key, live_server.other.training_key))
        call_and_check(case, live_server.training_url("", version), world.models, world)

    return _marked(test, "Training", version)


def prediction_conformance(version: str) -> Callable[..., None]:
    schema = _schema("Prediction", version)

    @schema.given(data=st.data())
    @schema.parametrize()
    @_settings("Prediction", version)
    def test(case: Any, data: st.DataObject, live_server: Any, models: Models) -> None:
        point_prediction_case(case, data, models)
        point_key(case, data, Keys("Prediction-Key", live_server.default.prediction_key, live_server.other.prediction_key))
        call_and_check(case, f"{live_server.endpoint}/customvision/{version}/prediction", models)

    return _marked(test, "Prediction", version)


test_training_v3_0_conforms_to_spec = training_conformance("v3.0")
test_training_v3_1_conforms_to_spec = training_conformance("v3.1")
test_training_v3_2_conforms_to_spec = training_conformance("v3.2")
test_training_v3_3_conforms_to_spec = training_conformance("v3.3")
test_prediction_v3_0_conforms_to_spec = prediction_conformance("v3.0")
test_prediction_v3_1_conforms_to_spec = prediction_conformance("v3.1")


# Inputs the generator never produces (integers beyond int64, lone UTF-16 surrogates in JSON, which Hypothesis's
# UTF-8 text cannot hold) or produces too rarely to count on (NUL characters, which PostgreSQL cannot store).
# Each is sent as a schemathesis case of Training v3.3 and held to the same checks.
# Each lambda takes the first tag and the first image of the project the operation runs on.
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


@pytest.fixture(scope="module")
def training_v3_3() -> Any:
    return _schema("Training", "v3.3")


@pytest.mark.parametrize("name", list(EDGE_CASES))
def test_training_v3_3_edge_cases_conform_to_spec(name: str, training_v3_3: Any, live_server: Any, world: World) -> None:
    operation_id, make = EDGE_CASES[name]
    operation = training_v3_3.find_operation_by_id(operation_id)
    models = world.models
    if operation_id in ("TrainProject", "PublishIteration"):
        project, iteration_id = models.scratch, models.scratch_iterations()[0]
    elif "{iterationId}" in operation.path or operation_id == "QueryPredictions":
        project, iteration_id = models.classifier, models.classifier.iteration_ids[0]
    else:
        project, iteration_id = world.projects[0], ""
    parts = make(project.tag_ids[0], project.image_ids[0])
    path_parameters = {"projectId": project.id} if "{projectId}" in operation.path else {}
    if "{iterationId}" in operation.path:
        path_parameters["iterationId"] = iteration_id
    if "tagId" in parts:
        path_parameters["tagId"] = parts["tagId"]
    kwargs: dict[str, Any] = {"path_parameters": path_parameters, "query": parts.get("query"),
                              "headers": {"Training-Key": live_server.default.training_key}}
    if "body" in parts:
        kwargs.update(body=parts["body"], media_type="application/json")
    call_and_check(operation.Case(**kwargs), live_server.training_url(""), models, world)
