"""Portal benchmark in Debian's headless Chromium: the first grid page of a 2,000-image project, and 200 photos
uploaded through the page beside the official SDK's batch upload of the same files, in the same run.

    .venv/bin/python bench/portal.py [--runs 5] [--images 2000] [--uploads 200]

Starts ``ocv serve`` on a free loopback port with a temporary data folder, fills a classification project with
2,000 images of ../shared/data/cls_flowers5_128px through the SDK, then, in a fresh browser context each run
(cold cache, the training key already in session storage), opens the project's images page and times until the
first grid page is rendered: every thumbnail of the page decoded (goal <= 1 s). It also times the same step
inside the running page (projects list -> project), with the scripts already loaded.

Upload: 200 photos of ../shared/data/cls_hymenoptera (train/, JPEG) through the page's upload dialog (file
picker, two batches of 32 in flight) until every file has its result, against create_images_from_files of the
same files in batches of 64, one at a time, as the SDK quickstart does; each run into new projects.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import ocv_server

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FLOWERS = SHARED / "cls_flowers5_128px"
PHOTOS = SHARED / "cls_hymenoptera" / "train"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
GRID_RENDERED = """() => {
  const images = [...document.querySelectorAll('ul.grid[aria-label="Images"] img')];
  return images.length > 0 && images.every((image) => image.complete && image.naturalWidth > 0);
}"""


def sdk_client(endpoint: str, key: str):  # type: ignore[no-untyped-def]
    from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
    from msrest.authentication import ApiKeyCredentials

    return CustomVisionTrainingClient(endpoint, ApiKeyCredentials(in_headers={"Training-key": key}))


def sdk_upload(client, project_id: str, files: list[Path], tag_ids: list[str] | None = None) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    """Seconds to upload ``files`` in batches of 64, one call at a time; how many came back OK."""
    from azure.cognitiveservices.vision.customvision.training.models import ImageFileCreateBatch, ImageFileCreateEntry

    ok = 0
    started = time.perf_counter()
    for first in range(0, len(files), 64):
        entries = [ImageFileCreateEntry(name=path.name, contents=path.read_bytes(), tag_ids=tag_ids) for path in files[first:first + 64]]
        summary = client.create_images_from_files(project_id, ImageFileCreateBatch(images=entries))
        ok += sum(1 for image in summary.images if image.status == "OK")
    return time.perf_counter() - started, ok


def fill_project(client, count: int) -> str:  # type: ignore[no-untyped-def]
    """A project of exactly ``count`` distinct images, the five flower folders interleaved, each tagged by its folder."""
    from azure.cognitiveservices.vision.customvision.training.models import ImageFileCreateBatch, ImageFileCreateEntry

    folders = sorted(path for path in FLOWERS.iterdir() if path.is_dir())
    project = client.create_project(f"bench-portal-grid-{uuid.uuid4().hex[:8]}")
    tags = {folder.name: client.create_tag(project.id, folder.name).id for folder in folders}
    by_folder = [sorted(folder.glob("*.jpg")) for folder in folders]
    queue = [path for group in zip(*by_folder) for path in group]
    stored = 0
    while stored < count and queue:
        batch, queue = queue[:min(64, count - stored)], queue[min(64, count - stored):]
        entries = [ImageFileCreateEntry(name=path.name, contents=path.read_bytes(), tag_ids=[tags[path.parent.name]]) for path in batch]
        summary = client.create_images_from_files(project.id, ImageFileCreateBatch(images=entries))
        stored += sum(1 for image in summary.images if image.status == "OK")
    if stored < count:
        sys.exit(f"bench: only {stored} distinct images in {FLOWERS}")
    return project.id


def signed_in_context(browser, endpoint: str, key: str):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.add_init_script(f"sessionStorage.setItem('ocv.trainingKey', {key!r})")
    return context


def time_first_grid(browser, endpoint: str, key: str, project_id: str) -> tuple[float, float, str]:  # type: ignore[no-untyped-def]
    """Cold: a fresh context opens the project's images page. Warm: projects list -> project in the same page."""
    context = signed_in_context(browser, endpoint, key)
    page = context.new_page()
    started = time.perf_counter()
    page.goto(f"{endpoint}/#/projects/{project_id}/images")
    page.wait_for_function(GRID_RENDERED, polling="raf", timeout=60_000)
    cold = time.perf_counter() - started
    page.goto(f"{endpoint}/#/")
    page.locator(f'a[href="#/projects/{project_id}/images"]').first.wait_for()
    started = time.perf_counter()
    page.locator(f'a[href="#/projects/{project_id}/images"]').first.click()
    page.wait_for_function(GRID_RENDERED, polling="raf", timeout=60_000)
    warm = time.perf_counter() - started
    shown = page.locator('ul.grid[aria-label="Images"] img').count()
    pager = page.locator(".pager span").inner_text()
    context.close()
    return cold, warm, f"{shown} thumbnails, {pager}"


def time_page_upload(browser, endpoint: str, key: str, project_id: str, files: list[Path]) -> tuple[float, str]:  # type: ignore[no-untyped-def]
    context = signed_in_context(browser, endpoint, key)
    page = context.new_page()
    page.goto(f"{endpoint}/#/projects/{project_id}/images")
    page.get_by_role("button", name="Add images").click()
    dialog = page.get_by_role("dialog", name="Add images")
    dialog.get_by_label("Choose image files").set_input_files([str(path) for path in files])
    button = dialog.get_by_role("button", name=f"Upload {len(files)} files")
    started = time.perf_counter()
    button.click()
    dialog.locator(".upload-tally", has_text="Done.").wait_for(timeout=600_000)
    seconds = time.perf_counter() - started
    tally = dialog.locator(".upload-tally").inner_text()
    context.close()
    return seconds, tally


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="grid timings (each in a fresh browser context); medians reported")
    parser.add_argument("--upload-runs", type=int, default=3, help="page and SDK uploads, each into a new project")
    parser.add_argument("--images", type=int, default=2000, help="images in the grid project")
    parser.add_argument("--uploads", type=int, default=200, help="photos uploaded through the page and the SDK")
    args = parser.parse_args()
    for needed in (FLOWERS, PHOTOS):
        if not needed.is_dir():
            sys.exit(f"bench: data set {needed} is absent (expected beside the repository)")
    if not Path(CHROMIUM).exists():
        sys.exit(f"bench: {CHROMIUM} is absent: apt-get install chromium chromium-driver")
    from playwright.sync_api import sync_playwright

    photos = sorted(PHOTOS.glob("*/*.jpg"))[:args.uploads]
    if len(photos) < args.uploads:
        sys.exit(f"bench: only {len(photos)} JPEG photos in {PHOTOS}")
    for path in photos:
        path.read_bytes()  # the page cache, so neither upload pays for the disk
    print(f"machine:   {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    key = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="ocv-bench-portal-") as tmp, \
            ocv_server(Path(tmp) / "data", Path(tmp) / "server.log", training_key=key) as server, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        print(f"browser:   headless Chromium {browser.version}; server ocv serve (SQLite), pid {server.pid}")
        client = sdk_client(server.endpoint, key)
        started = time.perf_counter()
        grid_project = fill_project(client, args.images)
        stored = client.get_image_count(grid_project)
        print(f"grid:      project of {stored} images (cls_flowers5_128px) filled by the SDK in {time.perf_counter() - started:.1f}s")

        timings = [time_first_grid(browser, server.endpoint, key, grid_project) for _ in range(args.runs)]
        cold = [c for c, _, _ in timings]
        warm = [w for _, w, _ in timings]
        print(f"grid page: {timings[0][2]}")
        print(f"grid cold: {' '.join(f'{s:.3f}' for s in cold)} s -> median {statistics.median(cold):.3f}s (goal <= 1 s)")
        print(f"grid warm: {' '.join(f'{s:.3f}' for s in warm)} s -> median {statistics.median(warm):.3f}s (in the running page)")

        page_runs, sdk_runs = [], []
        for number in range(1, args.upload_runs + 1):
            page_project = client.create_project(f"bench-portal-page-{uuid.uuid4().hex[:8]}")
            page_seconds, tally = time_page_upload(browser, server.endpoint, key, page_project.id, photos)
            sdk_project = client.create_project(f"bench-portal-sdk-{uuid.uuid4().hex[:8]}")
            sdk_seconds, sdk_ok = sdk_upload(client, sdk_project.id, photos)
            page_stored = client.get_image_count(page_project.id)
            page_runs.append(page_seconds)
            sdk_runs.append(sdk_seconds)
            print(f"upload {number}:  page {page_seconds:5.2f}s = {len(photos) / page_seconds:5.1f} images/s ({page_stored} stored; {tally}) | "
                  f"SDK {sdk_seconds:5.2f}s = {len(photos) / sdk_seconds:5.1f} images/s ({sdk_ok} OK)")
            if page_stored != len(photos) or sdk_ok != len(photos):
                sys.exit("bench: not every photo was stored")
        page_rate = len(photos) / statistics.median(page_runs)
        sdk_rate = len(photos) / statistics.median(sdk_runs)
        print(f"upload:    {len(photos)} photos ({sum(p.stat().st_size for p in photos) / 2**20:.1f} MiB): page {page_rate:.1f} images/s, "
              f"SDK batch upload {sdk_rate:.1f} images/s (medians of {len(page_runs)}); ratio page / SDK {page_rate / sdk_rate:.2f}")
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
