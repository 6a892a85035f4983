"""Scenario's API under hostile and broken input: a 400 (or 401/404/413) in Scenario's error body, nothing stored."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from scenario_sdk import AuthenticationError, BadRequestError, NotFoundError, Scenario
from starlette.testclient import TestClient

from opencustomvision.app import build_services, create_app
from opencustomvision.cli import prepare_default_resource
from opencustomvision.config import Settings
from tests.conftest import LiveServer, shared_data
from tests.test_bad_input import noise_png, png_bomb, stored_files

pytestmark = pytest.mark.slow


def as_data_url(data: bytes, media: str = "image/jpeg") -> str:
    return f"data:{media};base64," + base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def scenario(live_server: LiveServer) -> Scenario:
    return live_server.scenario()


@pytest.fixture(scope="module")
def photo() -> bytes:
    return sorted(shared_data("cls_hymenoptera", "val", "bees").glob("*.jpg"))[0].read_bytes()


@pytest.fixture
def model(scenario: Scenario) -> Iterator[str]:
    created = scenario.models.create(name=f"bad-input-{uuid.uuid4().hex[:8]}").model.id
    yield created
    scenario.models.delete(created)


def refused(live_server: LiveServer, scenario: Scenario, model: str, call, error=BadRequestError) -> str:  # type: ignore[no-untyped-def]
    """Run a call that must be refused, checking it left no image, asset or file behind; returns the reason."""
    files, assets = stored_files(live_server), len(list(scenario.assets.list(page_size=100)))
    with pytest.raises(error) as caught:
        call()
    assert set(caught.value.body) == {"reason"}, caught.value.body
    assert scenario.models.retrieve(model).model.training_images_number == 0
    assert len(list(scenario.assets.list(page_size=100))) == assets and stored_files(live_server) == files
    return caught.value.body["reason"]


@pytest.mark.parametrize("data", [
    "not a data url",
    "data:image/png;base64",  # no comma
    "data:image/png,iVBORw0KGgo=",  # not base64-encoded
    "data:image/png;base64,@@@not-base64@@@",
    "data:image/png;base64,",
])
def test_malformed_data_urls(live_server: LiveServer, scenario: Scenario, model: str, data: str) -> None:
    refused(live_server, scenario, model, lambda: scenario.models.training_images.add(model, data=data, name="x.png"))


def test_data_url_with_a_non_image(live_server: LiveServer, scenario: Scenario, model: str) -> None:
    text = base64.b64encode(b"hello, not an image").decode()
    assert "not an image" in refused(live_server, scenario, model, lambda: scenario.models.training_images.add(
        model, data=f"data:text/plain;base64,{text}", name="x.txt"))
    refused(live_server, scenario, model, lambda: scenario.models.training_images.add(
        model, data=f"data:image/png;base64,{text}", name="x.png"))


def test_truncated_jpeg(live_server: LiveServer, scenario: Scenario, model: str, photo: bytes) -> None:
    truncated = as_data_url(photo[: len(photo) // 2])
    refused(live_server, scenario, model, lambda: scenario.models.training_images.add(model, data=truncated, name="cut.jpg"))
    refused(live_server, scenario, model, lambda: scenario.assets.upload(name="cut.jpg", image=truncated))


def test_decompression_bomb(live_server: LiveServer, scenario: Scenario, model: str) -> None:
    bomb = as_data_url(png_bomb(), "image/png")
    refused(live_server, scenario, model, lambda: scenario.models.training_images.add(model, data=bomb, name="bomb.png"))
    refused(live_server, scenario, model, lambda: scenario.assets.upload(name="bomb.png", image=bomb))


def test_image_over_6_mb(live_server: LiveServer, scenario: Scenario, model: str) -> None:
    big = as_data_url(noise_png(6.5), "image/png")
    refused(live_server, scenario, model, lambda: scenario.models.training_images.add(model, data=big, name="big.png"))
    refused(live_server, scenario, model, lambda: scenario.assets.upload(name="big.png", image=big))


def test_asset_ids_mixed_with_data(live_server: LiveServer, scenario: Scenario, model: str, photo: bytes) -> None:
    asset = scenario.assets.upload(name="bee.jpg", image=as_data_url(photo)).asset.id
    reason = refused(live_server, scenario, model, lambda: scenario.models.training_images.add(
        model, asset_ids=[asset], data=as_data_url(photo), name="bee.jpg"))
    assert "assetIds" in reason
    scenario.assets.delete_multiple(asset_ids=[asset])


def test_another_resources_asset(live_server: LiveServer, scenario: Scenario, model: str, photo: bytes) -> None:
    other = live_server.scenario(live_server.other)
    theirs = other.assets.upload(name="theirs.jpg", image=as_data_url(photo)).asset.id
    refused(live_server, scenario, model, lambda: scenario.models.training_images.add(model, asset_id=theirs), NotFoundError)
    refused(live_server, scenario, model, lambda: scenario.models.training_images.add(model, asset_ids=[theirs]), NotFoundError)
    with pytest.raises(NotFoundError):
        scenario.assets.retrieve(theirs)
    scenario.assets.delete_multiple(asset_ids=[theirs])  # not ours: deletes nothing
    assert other.assets.retrieve(theirs).asset.id == theirs
    other.assets.delete_multiple(asset_ids=[theirs])


def test_wrong_secret(live_server: LiveServer, scenario: Scenario, model: str, photo: bytes) -> None:
    intruder = live_server.scenario(secret="guessed")
    refused(live_server, scenario, model, lambda: intruder.models.training_images.add(model, data=as_data_url(photo), name="x.jpg"),
            AuthenticationError)
    refused(live_server, scenario, model, lambda: intruder.assets.upload(name="x.jpg", image=as_data_url(photo)), AuthenticationError)
    garbled = httpx.get(f"{live_server.scenario_url}/models", headers={"Authorization": "Basic !!!"})
    assert garbled.status_code == 401 and set(garbled.json()) == {"reason"}


def test_unknown_ids_and_routes_answer_in_scenarios_shape(live_server: LiveServer, scenario: Scenario) -> None:
    with pytest.raises(NotFoundError):
        scenario.models.retrieve("model_not-a-real-id")
    with pytest.raises(NotFoundError):
        scenario.jobs.retrieve("job_0000000000000000000000")
    missing = httpx.get(f"{live_server.scenario_url}/nothing-here", auth=(live_server.default.scenario_api_key,
                                                                           live_server.default.scenario_api_secret))
    assert missing.status_code == 404 and set(missing.json()) == {"reason"}


def test_oversized_body_is_a_scenario_413_and_custom_vision_keeps_its_own(tmp_path: Path) -> None:
    settings = replace(Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}"), max_request_bytes=4096)
    credentials = prepare_default_resource(settings)
    with TestClient(create_app(settings, build_services(settings))) as client:
        auth = (credentials.scenario_api_key, credentials.scenario_api_secret)
        too_big = client.post("/v1/assets", json={"name": "x.jpg", "image": "A" * 8000}, auth=auth)
        assert too_big.status_code == 413 and set(too_big.json()) == {"reason"}
        assert client.get("/v1/assets", auth=auth).json()["assets"] == []
        custom_vision = client.post("/customvision/v3.3/training/projects/x/images", content=b"x" * 5000,
                                    headers={"Training-Key": credentials.training_key})
        assert custom_vision.status_code == 413 and custom_vision.json()["code"] == "BadRequestImageSizeBytes"


def test_a_bug_answers_500_in_scenarios_shape_and_keeps_the_connection() -> None:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.routing import Route

    from opencustomvision.api.errors import UnexpectedErrorMiddleware
    from opencustomvision.api.scenario.errors import send_scenario_error

    def broken(request):  # type: ignore[no-untyped-def]  # stands for any bug in a route
        raise RuntimeError("a bug")

    # Installed as the Scenario room installs it (inside the application, around its routes).
    app = Starlette(routes=[Route("/v1/models", broken)], middleware=[Middleware(UnexpectedErrorMiddleware, send=send_scenario_error)])
    with TestClient(app, raise_server_exceptions=False) as client:
        for _ in range(2):
            answer = client.get("/v1/models")
            assert answer.status_code == 500 and answer.json() == {"reason": "The server failed to handle this request."}
