"""Refusals the portal shows as the API words them: a wrong key, a file that is no image, training too early."""

from __future__ import annotations

import pytest

from tests.conftest import LiveServer, shared_data
from tests.portal_browser import api, close_dialog, create_project, sign_in, upload

pytestmark = [pytest.mark.slow, pytest.mark.db_independent]


def test_sign_out_forgets_the_key_and_a_wrong_key_is_refused(page, live_server: LiveServer) -> None:  # type: ignore[no-untyped-def]
    sign_in(page, live_server)
    page.get_by_role("button", name="New project").wait_for()
    assert page.evaluate("sessionStorage.getItem('ocv.trainingKey')") == live_server.default.training_key
    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("Training key").wait_for()
    assert page.evaluate("sessionStorage.getItem('ocv.trainingKey')") is None

    # A key that stops working mid-session (rotated, another server) signs the tab out, saying why.
    page.evaluate("sessionStorage.setItem('ocv.trainingKey', 'a-key-this-server-does-not-know')")
    page.reload()
    page.get_by_role("alert").filter(has_text="You were signed out").wait_for()
    assert page.evaluate("sessionStorage.getItem('ocv.trainingKey')") is None

    page.get_by_label("Training key").fill("not-a-key")
    page.get_by_role("button", name="Sign in").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "NotFoundApimSubscription" in alert.inner_text() and "not valid" in alert.inner_text()
    assert page.evaluate("sessionStorage.getItem('ocv.trainingKey')") is None
    assert page.get_by_role("button", name="New project").count() == 0


def test_non_image_upload_and_early_training_are_refused_on_the_page(page, live_server: LiveServer, unique_name: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    base = shared_data("customvision-samples", "ImageClassification", "Images")
    notes = tmp_path / "notes.jpg"
    notes.write_text("shopping list, not a photo")
    sign_in(page, live_server)
    project_id = create_project(page, unique_name)

    upload(page, [base / "Hemlock" / "hemlock_1.jpg", notes], new_tags="Hemlock")
    results = page.get_by_role("list", name="Upload results")
    assert "1 uploaded, 0 duplicates, 1 refused" in page.locator(".upload-tally").inner_text()
    refused = results.locator("li.refused")
    assert refused.locator(".file-name").inner_text() == "notes.jpg"
    assert "not an image" in refused.locator(".file-status").inner_text()
    close_dialog(page)
    with api(live_server) as client:
        assert client.get(f"/projects/{project_id}/images/count").json() == 1

    page.get_by_role("button", name="Train").click()
    dialog = page.get_by_role("dialog", name="Choose a training type")
    dialog.get_by_role("button", name="Train").click()
    alert = dialog.get_by_role("alert")
    alert.wait_for()
    with api(live_server) as client:
        refusal = client.post(f"/projects/{project_id}/train").json()
        assert client.get(f"/projects/{project_id}/iterations").json() == []
    assert alert.inner_text() == f"{refusal['code']}: {refusal['message']}"
