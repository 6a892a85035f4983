"""Hostile and broken input: each gets the spec's status or code, and nothing of it is stored."""

from __future__ import annotations

import base64
import json
import io
import os
import struct
import zlib
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.conftest import LiveServer

pytestmark = pytest.mark.slow


def jpeg(size: tuple[int, int] = (64, 48), colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG")
    return buffer.getvalue()


def png_bomb(width: int = 60000, height: int = 60000) -> bytes:
    """A few kilobytes whose header promises 3.6 gigapixels."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    rows = zlib.compress(b"\x00" * (1 + width // 8) * 64, 9)
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def noise_png(megabytes: float) -> bytes:
    side = int((megabytes * 1024 * 1024 / 3) ** 0.5) + 1
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buffer, "PNG", compress_level=0)
    return buffer.getvalue()


def stored_files(server: LiveServer) -> set[Path]:
    return {path for path in server.settings.blob_dir.rglob("*") if path.is_file()}


@pytest.fixture
def project(live_server: LiveServer, unique_name: str):  # type: ignore[no-untyped-def]
    with live_server.client() as client:
        created = client.post(live_server.training_url(f"/projects?name={unique_name}")).json()
        tag = client.post(live_server.training_url(f"/projects/{created['id']}/tags?name=thing")).json()
        yield client, created["id"], tag["id"]


def files_batch(*contents: bytes, tag_ids: list[str] | None = None) -> dict:  # type: ignore[type-arg]
    return {
        "images": [{"name": f"image-{index}.jpg", "contents": base64.b64encode(data).decode()} for index, data in enumerate(contents)],
        "tagIds": tag_ids or [],
    }


def image_count(server: LiveServer, client: httpx.Client, project_id: str) -> int:
    return int(client.get(server.training_url(f"/projects/{project_id}/images/count")).json())


@pytest.mark.parametrize(
    ("name", "payload", "status"),
    [
        ("truncated jpeg", jpeg((400, 300))[:900], "ErrorImageFormat"),
        ("text named .jpg", b"this is not an image, only text pretending to be one\n" * 20, "ErrorImageFormat"),
        ("decompression bomb", png_bomb(), "ErrorImageSize"),
    ],
)
def test_broken_image_is_reported_and_not_stored(live_server: LiveServer, project, name: str, payload: bytes, status: str) -> None:  # type: ignore[no-untyped-def]
    client, project_id, tag_id = project
    before = stored_files(live_server)
    response = client.post(live_server.training_url(f"/projects/{project_id}/images/files"),
                           json=files_batch(payload, jpeg(), tag_ids=[tag_id]))
    assert response.status_code == 207, name
    summary = response.json()
    assert summary["isBatchSuccessful"] is False
    assert [result["status"] for result in summary["images"]] == [status, "OK"]
    assert "image" not in summary["images"][0]
    # The good image of the batch is stored whole (three blobs); the bad one left nothing behind.
    assert len(stored_files(live_server) - before) == 3
    assert image_count(live_server, client, project_id) == 1


def test_seven_megabyte_image_over_octet_stream(live_server: LiveServer, project) -> None:  # type: ignore[no-untyped-def]
    client, project_id, _ = project
    before = stored_files(live_server)
    payload = noise_png(7)
    assert len(payload) > 7 * 1024 * 1024
    response = client.post(live_server.training_url(f"/projects/{project_id}/images"), content=payload,
                           headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 207
    assert response.json()["images"][0]["status"] == "ErrorImageSize"
    assert stored_files(live_server) == before and image_count(live_server, client, project_id) == 0


def test_seven_megabyte_image_over_multipart(live_server: LiveServer, project) -> None:  # type: ignore[no-untyped-def]
    client, project_id, _ = project
    response = client.post(live_server.training_url(f"/projects/{project_id}/images"),
                           files=[("imageData", ("big.png", noise_png(7), "image/png")), ("imageData", ("ok.jpg", jpeg(), "image/jpeg"))])
    assert response.status_code == 207
    assert [result["status"] for result in response.json()["images"]] == ["ErrorImageSize", "OK"]


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:1/image.jpg",
    "http://169.254.169.254/latest/meta-data/",
    "http://localhost/image.jpg",
    "http://[::1]/image.jpg",
    "http://2130706433/image.jpg",
    "file:///etc/passwd",
])
def test_url_to_a_private_address_is_refused(live_server: LiveServer, project, url: str) -> None:  # type: ignore[no-untyped-def]
    client, project_id, tag_id = project
    before = stored_files(live_server)
    response = client.post(live_server.training_url(f"/projects/{project_id}/images/urls"),
                           json={"images": [{"url": url}], "tagIds": [tag_id]})
    assert response.status_code == 207
    assert response.json()["images"] == [{"sourceUrl": url, "status": "ErrorSource"}]
    assert stored_files(live_server) == before and image_count(live_server, client, project_id) == 0


def test_65_images_in_one_batch(live_server: LiveServer, project) -> None:  # type: ignore[no-untyped-def]
    client, project_id, _ = project
    images = [jpeg(colour=(index, 0, 0)) for index in range(65)]
    response = client.post(live_server.training_url(f"/projects/{project_id}/images/files"), json=files_batch(*images))
    assert response.status_code == 400 and response.json()["code"] == "BadRequestImageBatch"
    multipart = client.post(live_server.training_url(f"/projects/{project_id}/images"),
                            files=[("imageData", (f"{index}.jpg", data, "image/jpeg")) for index, data in enumerate(images)])
    assert multipart.status_code == 400 and multipart.json()["code"] == "BadRequestImageBatch"
    assert image_count(live_server, client, project_id) == 0


def test_21_tags_in_one_batch(live_server: LiveServer, project) -> None:  # type: ignore[no-untyped-def]
    client, project_id, _ = project
    tag_ids = [client.post(live_server.training_url(f"/projects/{project_id}/tags?name=t{index}")).json()["id"] for index in range(21)]
    response = client.post(live_server.training_url(f"/projects/{project_id}/images/files"), json=files_batch(jpeg(), tag_ids=tag_ids))
    assert response.status_code == 400 and response.json()["code"] == "BadRequestExceededBatchSize"
    query = client.post(live_server.training_url(f"/projects/{project_id}/images?tagIds={','.join(tag_ids)}"),
                        content=jpeg(), headers={"Content-Type": "application/octet-stream"})
    assert query.status_code == 400 and query.json()["code"] == "BadRequestExceededBatchSize"
    assert image_count(live_server, client, project_id) == 0


def test_negative_and_regular_tag_on_one_image(live_server: LiveServer, project) -> None:  # type: ignore[no-untyped-def]
    client, project_id, tag_id = project
    negative = client.post(live_server.training_url(f"/projects/{project_id}/tags?name=none&type=Negative")).json()["id"]
    response = client.post(live_server.training_url(f"/projects/{project_id}/images/files"),
                           json=files_batch(jpeg(), tag_ids=[tag_id, negative]))
    assert response.json()["images"][0]["status"] == "ErrorNegativeAndRegularTagOnSameImage"
    assert image_count(live_server, client, project_id) == 0


@pytest.mark.parametrize(("body", "content_type", "status", "code"), [
    (b"{not json", "application/json", 400, "BadRequest"),
    (b"<ImageUrlCreateBatch><images>", "application/xml", 400, "BadRequest"),
    (b"images=1", "text/plain", 415, "UnsupportedMediaType"),
    (b"", "application/json", 400, "BadRequestRequiredParamIsNull"),
    (b'{"images": [{"url": 5}], "tagIds": ["not-a-guid"]}', "application/json", 400, "BadRequest"),
])
def test_unreadable_bodies(live_server: LiveServer, project, body: bytes, content_type: str, status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    client, project_id, _ = project
    response = client.post(live_server.training_url(f"/projects/{project_id}/images/urls"), content=body,
                           headers={"Content-Type": content_type})
    assert (response.status_code, response.json()["code"]) == (status, code)


def test_bad_ids_and_paging(live_server: LiveServer, project) -> None:  # type: ignore[no-untyped-def]
    client, project_id, _ = project
    assert client.get(live_server.training_url("/projects/not-a-guid")).status_code == 400
    missing = client.get(live_server.training_url("/projects/00000000-0000-0000-0000-000000000000"))
    assert (missing.status_code, missing.json()["code"]) == (404, "NotFoundProject")
    assert client.get(live_server.training_url(f"/projects/{project_id}/images?take=257")).status_code == 400
    assert client.get(live_server.training_url(f"/projects/{project_id}/images?tagIds=nope")).json()["code"] == "BadRequestInvalidIds"
    bad_filter = client.get(live_server.training_url(f"/projects/{project_id}/images?$filter=camera%20eq"))
    assert bad_filter.status_code == 400
    unknown = client.get(live_server.training_url(f"/projects/{project_id}/images?iterationId=00000000-0000-0000-0000-000000000000"))
    assert unknown.json()["code"] == "NotFoundIteration"


def test_metadata_limits(live_server: LiveServer, project) -> None:  # type: ignore[no-untyped-def]
    client, project_id, _ = project
    image_id = client.post(live_server.training_url(f"/projects/{project_id}/images/files"),
                           json=files_batch(jpeg())).json()["images"][0]["image"]["id"]
    url = live_server.training_url(f"/projects/{project_id}/images/metadata?imageIds={image_id}")
    assert client.post(url, json={"k" * 257: "v"}).json()["code"] == "BadRequestImageMetadataKey"
    assert client.post(url, json={"k": "v" * 513}).json()["code"] == "BadRequestImageMetadataValue"
    assert client.post(url, json={f"k{index}": "v" for index in range(51)}).status_code == 400
    assert client.post(url, json={f"k{index}": "v" for index in range(50)}).status_code == 200
    over = client.post(url, json={"one-more": "v"})
    assert over.status_code == 207 and over.json()["images"][0]["status"] == "ErrorLimitExceed"


@pytest.mark.parametrize("text", ["nul\x00byte", "lone\udc80surrogate"])
def test_text_no_database_can_keep_is_refused(live_server: LiveServer, project, text: str) -> None:  # type: ignore[no-untyped-def]
    client, project_id, tag_id = project
    tag = client.patch(live_server.training_url(f"/projects/{project_id}/tags/{tag_id}"),
                       content=json.dumps({"name": text, "description": "", "type": "Regular"}), headers={"Content-Type": "application/json"})
    assert (tag.status_code, tag.json()["code"]) == (400, "BadRequestTagName")
    # %ED%B2%80 is a lone surrogate written as UTF-8 bytes, which no client library will encode for us.
    encoded = "nul%00byte" if "\x00" in text else "lone%ED%B2%80surrogate"
    listed = client.get(live_server.training_url(f"/projects/{project_id}/images?$filter=k%20eq%20'{encoded}'"))
    assert listed.status_code == 400 if "\x00" in text else listed.status_code in (200, 400)
    skip = client.get(live_server.training_url(f"/projects/{project_id}/images?skip=9223372036854775808"))
    assert skip.status_code == 400
