"""Request bodies: over the cap refused before they fill memory or disk; slow or stalled ones cut off, holding nothing."""

from __future__ import annotations

import socket
import time
import uuid
from dataclasses import replace

import httpx
from starlette.testclient import TestClient

from opencustomvision.app import build_services, create_app
from opencustomvision.cli import prepare_default_resource
from opencustomvision.config import Settings
from tests.conftest import _database_url, serving


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


def _stalled_upload(endpoint: str, url: str, key: str) -> socket.socket:
    """A client that promises a 5 MB body, sends a few bytes of it and then nothing."""
    host, port = endpoint.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)))
    connection.sendall(
        f"POST {url} HTTP/1.1\r\nHost: {host}\r\nTraining-Key: {key}\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {5 * 1024 * 1024}\r\n\r\n".encode() + b"\xff\xd8\xff"
    )
    return connection


def _answer_then_close(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    connection.settimeout(15)
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received


def test_stalled_uploads_hold_nothing_and_are_cut_off(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = replace(Settings(data_dir=tmp_path, database_url=_database_url(tmp_path)), body_idle_timeout_seconds=4.0)
    key = prepare_default_resource(settings).training_key
    with serving(settings) as endpoint, httpx.Client(base_url=endpoint, headers={"Training-Key": key}, timeout=30) as client:
        project_id = client.post("/customvision/v3.3/training/projects", params={"name": f"stalled-{uuid.uuid4().hex[:6]}"}).json()["id"]
        url = f"/customvision/v3.3/training/projects/{project_id}/images"
        stalled = [_stalled_upload(endpoint, url, key) for _ in range(200)]
        try:
            slowest = 0.0
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:  # while all 200 wait for their bodies
                started = time.monotonic()
                assert client.get("/customvision/v3.3/training/domains").status_code == 200
                assert client.get(f"{url}/count").json() == 0
                slowest = max(slowest, time.monotonic() - started)
            assert slowest < 1.0, f"a normal request took {slowest:.2f} s beside 200 stalled uploads"
            answers = {_answer_then_close(connection).split(b"\r\n", 1)[0] for connection in stalled}
            assert answers == {b"HTTP/1.1 408 Request Timeout"}
        finally:
            for connection in stalled:
                connection.close()
        started = time.monotonic()  # no recovery time: the next request answers at once
        assert client.get("/customvision/v3.3/training/domains").status_code == 200
        assert time.monotonic() - started < 1.0
        assert client.get(f"{url}/count").json() == 0


def test_a_body_that_never_arrives_is_cut_off(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A request declaring 600 MB (under the cap) and sending 5 bytes does not hold its connection forever."""
    settings = replace(Settings(data_dir=tmp_path, database_url=_database_url(tmp_path)), body_idle_timeout_seconds=2.0)
    key = prepare_default_resource(settings).training_key
    with serving(settings) as endpoint:
        host, port = endpoint.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as connection:
            connection.sendall(
                f"POST /customvision/v3.3/training/projects?name=x HTTP/1.1\r\nHost: {host}\r\nTraining-Key: {key}\r\n"
                f"Content-Type: application/json\r\nContent-Length: 600000000\r\n\r\n{{\"a\"".encode()
            )
            started = time.monotonic()
            answer = _answer_then_close(connection)
            assert answer.startswith(b"HTTP/1.1 408 Request Timeout") and time.monotonic() - started < 6
            assert b'"code": "BadRequest"' in answer
