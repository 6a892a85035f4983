"""Raw HTTP as the tutorials send it: v2.0 paths with a capital `Training`, empty bodies, XML."""

from __future__ import annotations

import base64
import http.server
import io
import threading
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image
from starlette.testclient import TestClient

from opencustomvision.app import build_services, create_app
from opencustomvision.cli import prepare_default_resource
from opencustomvision.config import Settings
from tests.conftest import LiveServer, shared_data

pytestmark = pytest.mark.slow


def curl_empty_body(key: str) -> dict[str, str]:
    """What `curl --data-ascii ""` sends besides the key."""
    return {"Training-Key": key, "Content-Type": "application/x-www-form-urlencoded", "Content-Length": "0"}


def test_v2_tutorial_flow(live_server: LiveServer, unique_name: str) -> None:
    key = live_server.default.training_key
    base = f"{live_server.endpoint}/customvision/v2.0/Training"
    images = shared_data("customvision-samples", "ImageClassification", "Images")
    with httpx.Client(timeout=30) as client:
        project = client.post(f"{base}/projects?name={unique_name}", headers=curl_empty_body(key))
        assert project.status_code == 200, project.text
        project_id = project.json()["id"]
        tag = client.post(f"{base}/projects/{project_id}/tags?name=Hemlock", headers=curl_empty_body(key)).json()
        for path in sorted((images / "Hemlock").glob("*.jpg"))[:3]:
            uploaded = client.post(
                f"{base}/projects/{project_id}/images?tagIds={tag['id']}",
                headers={"Training-Key": key, "Content-Type": "application/octet-stream"},
                content=path.read_bytes(),
            )
            assert uploaded.status_code == 200 and uploaded.json()["isBatchSuccessful"] is True
        tagged = client.get(f"{base}/Projects/{project_id}/Images/Tagged?tagIds={tag['id']}&take=50", headers={"training-key": key})
        assert len(tagged.json()) == 3
        assert client.get(f"{base}/projects/{project_id}/images/count", headers={"Training-Key": key}).json() == 3
        # Query parameter names are bound whatever their casing, as on Azure.
        assert len(client.get(f"{base}/projects/{project_id}/images?TAKE=2", headers={"Training-Key": key}).json()) == 2
        assert client.delete(f"{base}/projects/{project_id}", headers={"Training-Key": key}).status_code == 204


@pytest.mark.parametrize("version", ["v2.0", "v2.1", "v2.2", "v3.0", "v3.1", "v3.2", "v3.3", "v3.4-preview"])
def test_every_version_prefix_answers(live_server: LiveServer, version: str) -> None:
    response = httpx.get(live_server.training_url("/domains", version), headers={"Training-Key": live_server.default.training_key})
    assert response.status_code == 200 and len(response.json()) == 18


def test_unknown_version_and_path_answer_custom_vision_errors(live_server: LiveServer) -> None:
    headers = {"Training-Key": live_server.default.training_key}
    for url in (live_server.training_url("/domains", "v9.9"), live_server.training_url("/nothing-here")):
        response = httpx.get(url, headers=headers)
        assert response.status_code == 404 and response.json()["code"] == "NotFound"


def _jpeg(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(buffer, "JPEG")
    return buffer.getvalue()


def test_xml_round_trip(live_server: LiveServer, unique_name: str) -> None:
    with live_server.client() as client:
        project_id = client.post(live_server.training_url(f"/projects?name={unique_name}")).json()["id"]
        tag_id = client.post(live_server.training_url(f"/projects/{project_id}/tags?name=red")).json()["id"]
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            '<ImageFileCreateBatch xmlns="http://schemas.datacontract.org/2004/07/Microsoft.CognitiveServices.Vision.CustomVision">'
            f'<Images><ImageFileCreateEntry><Name>red.jpg</Name><Contents>{base64.b64encode(_jpeg((220, 0, 0))).decode()}</Contents>'
            "</ImageFileCreateEntry></Images>"
            f"<TagIds><guid>{tag_id}</guid></TagIds>"
            "</ImageFileCreateBatch>"
        )
        response = client.post(
            live_server.training_url(f"/projects/{project_id}/images/files"),
            content=body.encode(),
            headers={"Content-Type": "application/xml", "Accept": "application/xml"},
        )
        assert response.status_code == 200 and response.headers["content-type"].startswith("application/xml")
        root = ElementTree.fromstring(response.content)
        assert root.tag == "ImageCreateSummary"
        assert root.findtext("isBatchSuccessful") == "true"
        result = root.find("images/ImageCreateResult")
        assert result is not None and result.findtext("status") == "OK"
        assert result.findtext("image/tags/ImageTag/tagName") == "red"

        listed = client.get(live_server.training_url(f"/projects/{project_id}/tags"), headers={"Accept": "text/xml"})
        assert listed.headers["content-type"].startswith("text/xml")
        assert ElementTree.fromstring(listed.content).findtext("Tag/imageCount") == "1"
        empty = client.get(live_server.training_url(f"/projects/{project_id}/images/untagged"), headers={"Accept": "application/xml"})
        assert ElementTree.fromstring(empty.content).tag == "ArrayOfImage"
        error = client.get(live_server.training_url("/projects/00000000-0000-0000-0000-000000000000"), headers={"Accept": "application/xml"})
        assert error.status_code == 404 and ElementTree.fromstring(error.content).findtext("code") == "NotFoundProject"


class _ImageHandler(http.server.BaseHTTPRequestHandler):
    body = _jpeg((0, 0, 200))

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path == "/redirect-to-metadata":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def image_host() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ImageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_allowlisted_url_is_fetched_and_redirects_are_rechecked(tmp_path, image_host: str) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}", url_allowlist=frozenset({image_host}))
    key = prepare_default_resource(settings).training_key
    with TestClient(create_app(settings, build_services(settings)), headers={"Training-Key": key}) as client:
        project_id = client.post("/customvision/v3.3/training/projects?name=urls").json()["id"]
        urls = [f"http://{image_host}/blue.jpg", f"http://{image_host}/redirect-to-metadata"]
        response = client.post(f"/customvision/v3.3/training/projects/{project_id}/images/urls",
                               json={"images": [{"url": url} for url in urls]})
        assert response.status_code == 207
        assert [result["status"] for result in response.json()["images"]] == ["OK", "ErrorSource"]
        assert response.json()["images"][0]["sourceUrl"] == urls[0]
