"""Answers that differ by API version: each version answers only what its own spec documents."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest
from starlette.requests import HTTPConnection

from opencustomvision.api.versions import documented_code
from tests.conftest import LiveServer

SPECS = Path(__file__).resolve().parents[1].parent / "shared" / "specs" / "customvision"
VERSIONS = {"Training": ("v3.0", "v3.1", "v3.2", "v3.3"), "Prediction": ("v3.0", "v3.1")}


def _error_codes(api: str, version: str) -> list[str]:
    path = SPECS / api / "stable" / version / f"{api}.json"
    if not path.exists():
        pytest.skip(f"the spec {path} is absent (expected beside the repository, as in CI)")
    spec = json.loads(path.read_text(encoding="utf-8-sig"))
    return spec["definitions"]["CustomVisionError"]["properties"]["code"]["enum"]


def _connection(api: str, version: str) -> HTTPConnection:
    """A request as routing.py leaves it: the version in the state, the path without it."""
    return HTTPConnection({"type": "http", "scheme": "http", "server": ("127.0.0.1", 80), "headers": [],
                           "path": f"/{api.lower()}/projects", "query_string": b"", "state": {"api_version": version}})


@pytest.mark.parametrize(("api", "version"), [(api, v) for api, versions in VERSIONS.items() for v in versions])
def test_every_error_code_is_one_the_callers_version_lists(api: str, version: str) -> None:
    listed = set(_error_codes(api, version))
    newest = _error_codes("Training", "v3.3")
    connection = _connection(api, version)
    for code in newest:
        shown = documented_code(connection, code)
        assert shown in listed, f"{api} {version} shows {code} as {shown}, which its spec does not list"
        if code in listed:
            assert shown == code, f"{api} {version} lists {code} but shows it as {shown}"


def test_a_code_newer_than_the_callers_version_becomes_its_familys(live_server: LiveServer) -> None:
    key = {"Training-Key": live_server.default.training_key}
    project = httpx.post(live_server.training_url("/projects"), params={"name": f"versions-{uuid.uuid4().hex[:8]}"},
                         headers=key).json()
    try:
        tags = live_server.training_url(f"/projects/{project['id']}/tags")
        assert httpx.post(tags, params={"name": "product", "type": "GeneralProduct"}, headers=key).status_code == 200
        second = {"name": "another", "type": "GeneralProduct"}
        newest = httpx.post(tags, params=second, headers=key)
        older = httpx.post(live_server.training_url(f"/projects/{project['id']}/tags", "v3.2"), params=second, headers=key)
        assert (newest.status_code, newest.json()["code"]) == (400, "BadRequestMultipleGeneralProductTag")
        assert (older.status_code, older.json()) == (400, {"code": "BadRequest", "message": newest.json()["message"]})
    finally:
        httpx.delete(live_server.training_url(f"/projects/{project['id']}"), headers=key)


def test_a_batch_done_in_part_answers_207_from_v3_3_and_200_before(live_server: LiveServer) -> None:
    key = {"Training-Key": live_server.default.training_key}
    project = httpx.post(live_server.training_url("/projects"), params={"name": f"versions-{uuid.uuid4().hex[:8]}"},
                         headers=key).json()
    try:
        batch = {"images": [{"url": "http://127.0.0.1:9/not-allowed.png"}]}
        for version, status in (("v3.0", 200), ("v3.1", 200), ("v3.2", 200), ("v3.3", 207), ("v3.4-preview", 207)):
            answer = httpx.post(live_server.training_url(f"/projects/{project['id']}/images/urls", version), json=batch, headers=key)
            assert answer.status_code == status, version
            assert answer.json()["isBatchSuccessful"] is False and answer.json()["images"][0]["status"] == "ErrorSource"
    finally:
        httpx.delete(live_server.training_url(f"/projects/{project['id']}"), headers=key)
