"""Advanced training is an operator's opt-in: by default it answers the spec's code and starts nothing."""

from __future__ import annotations

from starlette.testclient import TestClient

from opencustomvision.app import build_services, create_app
from opencustomvision.cli import prepare_default_resource
from opencustomvision.config import Settings


def test_advanced_training_is_refused_unless_the_operator_turns_it_on(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("OCV_ADVANCED_TRAINING_MAX_MINUTES", raising=False)
    settings = Settings.from_env(tmp_path)
    assert settings.advanced_training_max_seconds == 0
    key = prepare_default_resource(settings).training_key
    with TestClient(create_app(settings, build_services(settings)), headers={"Training-Key": key}) as client:
        project_id = client.post("/customvision/v3.3/training/projects?name=advanced").json()["id"]
        answer = client.post(f"/customvision/v3.3/training/projects/{project_id}/train?trainingType=Advanced")
        assert answer.status_code == 501 and answer.json()["code"] == "BadRequestNotSupported"
        assert "OCV_ADVANCED_TRAINING_MAX_MINUTES" in answer.json()["message"]
        assert client.get(f"/customvision/v3.3/training/projects/{project_id}/iterations").json() == []

    monkeypatch.setenv("OCV_ADVANCED_TRAINING_MAX_MINUTES", "30")
    assert Settings.from_env(tmp_path).advanced_training_max_seconds == 1800
