"""The portal's object-detection flow in headless Chromium: boxes drawn with the mouse become the API's regions
(to 1 %), the tag of a region changes from its list, the keyboard moves to the next image and deletes the
selected region; with every region in place the project trains and the quick test draws a box on the fork."""

from __future__ import annotations

import hashlib
import json
import re

import httpx
import pytest

from tests.conftest import LiveServer, shared_data
from tests.portal_browser import TRAINING_TIMEOUT_MS, api, close_dialog, create_project, sign_in, snapshot, upload, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.db_independent]
SIDES = ("left", "top", "width", "height")


def draw(page, box: dict[str, float]) -> None:  # type: ignore[no-untyped-def]
    """Drags from the box's top-left corner to its bottom-right corner over the labeler's image."""
    shown = page.locator(".labeler-image").bounding_box()
    start = (shown["x"] + box["left"] * shown["width"], shown["y"] + box["top"] * shown["height"])
    end = (start[0] + box["width"] * shown["width"], start[1] + box["height"] * shown["height"])
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=12)
    page.mouse.up()


def regions_of(client: httpx.Client, project_id: str, image_id: str) -> list[dict]:  # type: ignore[type-arg]
    return client.get(f"/projects/{project_id}/images/id", params={"imageIds": image_id}).json()[0]["regions"] or []


def test_detection_flow(page, live_server: LiveServer, unique_name: str) -> None:  # type: ignore[no-untyped-def]
    base = shared_data("customvision-samples", "ObjectDetection")
    truth = json.loads((base / "regions.json").read_text())
    files = {name: sorted((base / "Images" / name).glob("*.jpg")) for name in ("fork", "scissors")}
    box_by_sha = {hashlib.sha256(path.read_bytes()).hexdigest(): (name, dict(zip(SIDES, truth[name][path.stem])))
                  for name, paths in files.items() for path in paths}

    sign_in(page, live_server)
    project_id = create_project(page, unique_name, detection=True)
    for name in ("fork", "scissors"):
        page.get_by_label("New tag name").fill(name)
        page.get_by_role("form", name="Add tag").get_by_role("button", name="Add").click()
        page.get_by_role("complementary", name="Filter").get_by_text(name).wait_for()
    upload(page, files["fork"] + files["scissors"])
    close_dialog(page)

    client = api(live_server)
    detection_domains = {domain["id"] for domain in client.get("/domains").json() if domain["type"] == "ObjectDetection"}
    assert client.get(f"/projects/{project_id}").json()["settings"]["domainId"] in detection_domains
    tag_ids = {tag["name"]: tag["id"] for tag in client.get(f"/projects/{project_id}/tags").json()}
    listed = client.get(f"/projects/{project_id}/images", params={"take": 60}).json()  # newest first, as the grid
    assert len(listed) == 40
    truth_of = {image["id"]: box_by_sha[hashlib.sha256(httpx.get(image["originalImageUri"]).content).hexdigest()] for image in listed}

    # The first image of the grid: draw its box with the mouse.
    page.get_by_role("button", name="Open image 1", exact=True).click()
    first = listed[0]["id"]
    page.locator(f'.labeler[data-image-id="{first}"][data-ready="true"]').wait_for()
    name, box = truth_of[first]
    page.get_by_label("Current tag").select_option(tag_ids[name])
    draw(page, box)
    drawn = wait_until(lambda: regions_of(client, project_id, first), message="the drawn region")
    assert len(drawn) == 1 and drawn[0]["tagId"] == tag_ids[name]
    for side in SIDES:
        assert drawn[0][side] == pytest.approx(box[side], abs=0.01), (side, drawn[0], box)
    snapshot(page, "test_detection_flow-drawn")

    # Its tag changes from the region list; the box stays where it was drawn.
    other = "scissors" if name == "fork" else "fork"
    page.get_by_label("Region tag").select_option(tag_ids[other])
    wait_until(lambda: [r["tagId"] for r in regions_of(client, project_id, first)] == [tag_ids[other]], message="the changed tag")
    assert regions_of(client, project_id, first)[0]["left"] == pytest.approx(drawn[0]["left"], abs=1e-6)
    page.get_by_label("Region tag").select_option(tag_ids[name])
    wait_until(lambda: [r["tagId"] for r in regions_of(client, project_id, first)] == [tag_ids[name]], message="the tag back")

    # The keyboard: next image, then a region drawn there and deleted with the Delete key.
    page.get_by_role("button", name="Next (→)").focus()
    page.keyboard.press("ArrowRight")
    page.get_by_role("dialog", name="Image 2 of 40").wait_for()
    second = listed[1]["id"]
    page.locator(f'.labeler[data-image-id="{second}"][data-ready="true"]').wait_for()
    draw(page, {"left": 0.1, "top": 0.1, "width": 0.3, "height": 0.3})
    wait_until(lambda: len(regions_of(client, project_id, second)) == 1, message="the second image's region")
    page.locator("body").press("Delete")  # at once: the page may still be waiting for the API's answer
    wait_until(lambda: regions_of(client, project_id, second) == [], message="the deleted region")
    close_dialog(page)

    # The rest of the regions, as a user adds them (through the public API here, to keep the test short).
    rest = [{"imageId": image_id, "tagId": tag_ids[tag], **box} for image_id, (tag, box) in truth_of.items() if image_id != first]
    assert client.post(f"/projects/{project_id}/images/regions", json={"regions": rest}).status_code == 200

    page.get_by_role("button", name="Train").click()
    page.get_by_role("dialog", name="Choose a training type").get_by_role("button", name="Train").click()
    page.wait_for_url(re.compile(r"/performance/[0-9a-f-]+$"))
    page.locator(".iteration .status.Completed").wait_for(timeout=TRAINING_TIMEOUT_MS)
    page.get_by_role("slider", name="Overlap threshold").wait_for()
    assert page.locator('[data-metric="ap"]').inner_text().endswith("%")
    page.get_by_role("region", name="Images the model got wrong").wait_for()
    page.locator('svg[aria-label="Precision-recall curve"], [aria-label="Precision-recall curve"] svg').first.wait_for()
    snapshot(page, "test_detection_flow-performance")

    page.get_by_role("link", name="Quick test").click()
    page.get_by_label("Image file to test").set_input_files(str(base / "Images" / "test" / "test_image.jpg"))
    first_row = page.get_by_role("table", name="Predictions").locator("tbody tr").first
    first_row.wait_for()
    assert first_row.locator("th").inner_text() == "fork"
    label = page.locator(".box-label.prediction").first
    label.wait_for()
    assert label.inner_text().startswith("fork ")
    client.close()
