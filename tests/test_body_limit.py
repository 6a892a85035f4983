"""Request bodies over the configured cap are refused before they fill memory or disk."""

from __future__ import annotations

from dataclasses import replace

from starlette.testclient import TestClient

from opencustomvision.app import build_services, create_app
from opencustomvision.cli import prepare_default_resource
from opencustomvision.config import Settings


def test_oversized_bodies_are_refused_with_413(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = replace(Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}"), max_request_bytes=4096)
    key = prepare_default_resource(settings).training_key
    with TestClient(create_app(settings, build_services(settings)), headers={"Training-Key": key}) as client:
        project_id = client.post("/customvision/v3.3/training/projects?name=limits").json()["id"]
        url = f"/customvision/v3.3/training/projects/{project_id}/images"
        declared = client.post(url, content=b"x" * 5000, headers={"Content-Type": "application/octet-stream"})
        assert declared.status_code == 413 and declared.json()["code"] == "BadRequestImageSizeBytes"

        def chunks():  # type: ignore[no-untyped-def]
            for _ in range(5):
                yield b"x" * 1000

        streamed = client.post(f"{url}/files", content=chunks(), headers={"Content-Type": "application/json"})
        assert streamed.status_code == 413
        assert client.get(f"{url}/count").json() == 0
