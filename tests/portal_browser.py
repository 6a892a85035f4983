"""Debian's headless Chromium driven by Playwright, for the portal tests.

Each test gets a fresh browser context (its own storage) at 1280x800; its last screen is saved to
``portal-screenshots/<test>.png`` (git-ignored), and an uncaught script error or a Content-Security-Policy
refusal on the page fails the test.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[1] / "portal-screenshots"
# Root in CI needs --no-sandbox; the rest keeps Chromium from reaching for the network on its own.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TRAINING_TIMEOUT_MS = 900_000


@pytest.fixture(scope="session")
def chromium():  # type: ignore[no-untyped-def]
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: apt-get install chromium chromium-driver (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # Playwright gives the browser a fresh temporary --user-data-dir of its own.
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(30_000)
    tab = context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    tab.on("console", lambda message: problems.append(f"console: {message.text}")
           if "Content Security Policy" in message.text else None)
    yield tab
    SCREENSHOTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(SCREENSHOTS / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', request.node.name)}.png"), full_page=True)
    context.close()
    assert not problems, problems


def snapshot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    """A screen worth looking at before the last one, beside the tests' own screenshots."""
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def sign_in(page, live_server: LiveServer, key: str | None = None) -> None:  # type: ignore[no-untyped-def]
    page.goto(live_server.endpoint + "/")
    page.get_by_label("Training key").fill(key if key is not None else live_server.default.training_key)
    page.get_by_role("button", name="Sign in").click()


def create_project(page, name: str, *, detection: bool = False) -> str:  # type: ignore[no-untyped-def]
    """Creates a project through the page; answers its id, read from the address the page goes to."""
    page.get_by_role("button", name="New project").click()
    dialog = page.get_by_role("dialog", name="New project")
    dialog.get_by_label("Name").fill(name)
    if detection:
        dialog.get_by_label("Object detection").check()
    dialog.get_by_role("button", name="Create project").click()
    page.wait_for_url(re.compile(r"#/projects/[0-9a-f-]+/images$"))
    return page.url.split("#/projects/")[1].split("/")[0]


def upload(page, files: list[Path], *, new_tags: str = "") -> None:  # type: ignore[no-untyped-def]
    """Adds files through the upload dialog and waits until every file has its result."""
    page.get_by_role("button", name="Add images").click()
    dialog = page.get_by_role("dialog", name="Add images")
    dialog.get_by_label("Choose image files").set_input_files([str(path) for path in files])
    if new_tags:
        dialog.get_by_label("New tags (comma-separated)").fill(new_tags)
    dialog.get_by_role("button", name=re.compile(r"^Upload \d+ files?$")).click()
    dialog.locator(".upload-tally", has_text="Done.").wait_for(timeout=120_000)


def close_dialog(page) -> None:  # type: ignore[no-untyped-def]
    page.get_by_role("dialog").last.get_by_role("button", name="Close").first.click()


def wait_until(condition: Callable[[], object], timeout: float = 20, message: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(0.2)


def api(live_server: LiveServer) -> httpx.Client:
    """The Training API beside the page, to check what the page did."""
    return httpx.Client(base_url=live_server.training_url(""), headers={"Training-Key": live_server.default.training_key}, timeout=60)
