"""The portal's classification flow in headless Chromium: sign in, create, upload with tags, train, read and move
the performance numbers, quick-test, keep the test as a training image, accept a smart-labeler tag, publish; then
the published URL answers a Prediction-Key client."""

from __future__ import annotations

import re
import zipfile

import httpx
import pytest
from PIL import Image

from tests.conftest import LiveServer, shared_data
from tests.portal_browser import TRAINING_TIMEOUT_MS, api, close_dialog, create_project, sign_in, upload

pytestmark = [pytest.mark.slow, pytest.mark.db_independent]


def shown_percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def test_classification_flow(page, live_server: LiveServer, unique_name: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    base = shared_data("customvision-samples", "ImageClassification", "Images")
    sign_in(page, live_server)
    project_id = create_project(page, unique_name)

    upload(page, sorted((base / "Hemlock").glob("*.jpg")), new_tags="Hemlock")
    assert "10 uploaded" in page.locator(".upload-tally").inner_text()
    close_dialog(page)
    upload(page, sorted((base / "Japanese_Cherry").glob("*.jpg")), new_tags="Japanese Cherry")
    close_dialog(page)
    sidebar = page.get_by_role("complementary", name="Filter")
    for tag in ("Hemlock", "Japanese Cherry"):
        # The sidebar counts each tag's images as the API does.
        assert re.search(rf"{tag}\s*10", sidebar.get_by_text(tag, exact=False).first.inner_text())
    with api(live_server) as client:
        assert client.get(f"/projects/{project_id}/images/tagged/count").json() == 20

    page.get_by_role("button", name="Train").click()
    page.get_by_role("dialog", name="Choose a training type").get_by_role("button", name="Train").click()
    page.wait_for_url(re.compile(r"/performance/[0-9a-f-]+$"))
    iteration_id = page.url.rsplit("/", 1)[1]
    page.locator(".iteration .status.Completed").wait_for(timeout=TRAINING_TIMEOUT_MS)

    precision = page.locator('[data-metric="precision"]')
    with api(live_server) as client:
        at_half = client.get(f"/projects/{project_id}/iterations/{iteration_id}/performance", params={"threshold": 0.5}).json()
        at_zero = client.get(f"/projects/{project_id}/iterations/{iteration_id}/performance", params={"threshold": 0}).json()
    assert precision.inner_text() == shown_percent(at_half["precision"])
    assert page.locator('[data-metric="recall"]').inner_text() == shown_percent(at_half["recall"])
    assert page.locator('[data-metric="ap"]').inner_text() == shown_percent(at_half["averagePrecision"])
    assert at_zero["precision"] != at_half["precision"]
    slider = page.get_by_role("slider", name="Probability threshold")
    slider.focus()
    page.keyboard.press("Home")  # the slider's own keyboard control: threshold 0
    page.locator("#threshold-value", has_text="0.0%").wait_for()
    page.locator('[data-metric="precision"]', has_text=shown_percent(at_zero["precision"])).wait_for()
    assert page.locator('[data-metric="recall"]').inner_text() == shown_percent(at_zero["recall"])

    # The charts the Custom Vision portal lacks: a precision-recall curve and a confusion matrix (Hemlock row,
    # Japanese Cherry row), both SVG.
    page.locator('svg[aria-label="Precision-recall curve"], [aria-label="Precision-recall curve"] svg').first.wait_for()
    matrix = page.locator('[aria-label="Confusion matrix"]').first
    matrix.wait_for()
    assert "Hemlock" in matrix.text_content() and "Japanese Cherry" in matrix.text_content()
    page.get_by_role("region", name="Images the model got wrong").wait_for()

    page.get_by_role("link", name="Quick test").click()
    page.get_by_label("Image file to test").set_input_files(str(base / "Test" / "test_image.jpg"))
    first_row = page.get_by_role("table", name="Predictions").locator("tbody tr").first
    first_row.wait_for()
    assert first_row.locator("th").inner_text() == "Hemlock"

    # The quick test was kept: it is a stored prediction, and becomes a training image tagged with its top tag.
    page.get_by_role("link", name="Predictions").click()
    stored = page.get_by_role("list", name="Stored predictions").locator("li")
    stored.first.wait_for()
    assert stored.count() == 1 and stored.first.inner_text().startswith("Hemlock")
    stored.first.get_by_label("Select prediction").check()
    page.get_by_role("button", name="Add to training images").click()
    page.get_by_role("status").filter(has_text="Added to training images: 1 uploaded").wait_for()
    hemlock_id = next(tag["id"] for tag in at_half["perTagPerformance"] if tag["name"] == "Hemlock")
    with api(live_server) as client:
        assert client.get(f"/projects/{project_id}/images/tagged/count", params={"tagIds": hemlock_id}).json() == 11

    # The smart labeler: the photo turned upright again (other bytes, so no duplicate) added untagged gets Hemlock
    # suggested; accepting it tags the image.
    turned = tmp_path / "turned.jpg"
    Image.open(base / "Test" / "test_image.jpg").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(turned, quality=90)
    page.get_by_role("link", name="Training images").click()
    page.get_by_label("Untagged").check()
    upload(page, [turned])
    close_dialog(page)
    page.get_by_role("button", name="Open image 1", exact=True).click()
    page.get_by_role("button", name=re.compile(r"^Suggest tags")).click()
    suggestion = page.get_by_role("list", name="Suggested tags").locator("li").first
    suggestion.wait_for()
    assert suggestion.inner_text().startswith("Hemlock")
    suggestion.get_by_role("button", name="Accept").click()
    page.get_by_role("list", name="Tags of this image").get_by_text("Hemlock").wait_for()
    with api(live_server) as client:
        assert client.get(f"/projects/{project_id}/images/untagged/count").json() == 0
        assert client.get(f"/projects/{project_id}/images/tagged/count", params={"tagIds": hemlock_id}).json() == 12
    close_dialog(page)

    page.get_by_role("link", name="Performance").click()
    page.get_by_role("button", name="Publish").click()
    dialog = page.get_by_role("dialog", name="Publish model")
    dialog.get_by_label("Model name").fill("portalModel")
    dialog.get_by_label("Prediction resource ID").fill(live_server.default.prediction_resource_id)
    dialog.get_by_role("button", name="Publish").click()
    shown_url = page.locator('.prediction-url[data-input="image"]')
    shown_url.wait_for()
    url = shown_url.inner_text()
    assert url == f"{live_server.endpoint}/customvision/v3.0/Prediction/{project_id}/classify/iterations/portalModel/image"
    assert "curl -X POST" in page.get_by_role("region", name="Publish").inner_text()

    # The URL the page shows is the one a client calls.
    answer = httpx.post(url, content=(base / "Test" / "test_image.jpg").read_bytes(),
                        headers={"Prediction-Key": live_server.default.prediction_key, "Content-Type": "application/octet-stream"})
    assert answer.status_code == 200 and answer.json()["predictions"][0]["tagName"] == "Hemlock"
    # Export to ONNX on the page: the row turns Done and its link downloads the package the API made.
    form = page.get_by_role("form", name="Export model")
    form.get_by_label("Platform").select_option("ONNX")
    form.get_by_role("button", name="Export").click()
    exports = page.get_by_role("table", name="Exports")
    exports.locator("td.status.Done").wait_for(timeout=TRAINING_TIMEOUT_MS)
    with page.expect_download() as download:
        exports.get_by_role("link", name="Download").click()
    package = zipfile.ZipFile(download.value.path())
    assert any(name.endswith(".onnx") for name in package.namelist()), package.namelist()
    with api(live_server) as client:
        listed = client.get(f"/projects/{project_id}/iterations/{iteration_id}/export").json()
    assert [(e["platform"], e["status"]) for e in listed] == [("ONNX", "Done")]
