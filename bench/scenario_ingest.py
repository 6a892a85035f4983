"""Scenario ingest benchmark: the same files through Scenario's SDK (batches of 10 assets) and Custom Vision's.

    .venv/bin/python bench/scenario_ingest.py [--runs 3] [--data DIR] [--database-url URL]

Starts ``ocv serve`` on a free loopback port with a temporary data folder and, in each run, ingests every file
of cls_hymenoptera (train/ and val/) twice, into a new project each time, the two ways taking turns first:

- Scenario: ``assets.upload`` (base64) for ten files, then ``models.training_images.add(asset_ids=...)`` for those
  ten, as a Scenario client that batches would. Its answers carry each image's automatic caption, so they include
  captioning (one backbone pass per image, whose embedding training reuses).
- Custom Vision: ``create_images_from_files`` in batches of 64 (the baseline, bench/ingest.py's client). Captions
  of these images are made in the background at the lowest CPU priority; the time until every one has its caption
  (read through Scenario's ``models.retrieve``) is printed too, so both sides can be compared doing the same work.

Prints images/s of each (median of the runs) and the ratio Scenario / Custom Vision (goal: at least 0.8).
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import ocv_server
from ingest import DEFAULT_DATA, collect, upload

SCENARIO_BATCH = 10
GOAL = 0.8


@dataclass
class Run:
    scenario_seconds: float
    custom_vision_seconds: float
    custom_vision_captioned_seconds: float
    scenario_images: int
    custom_vision_images: int


def scenario_ingest(client, files: list[Path]) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    """Seconds to ingest ``files`` as training images of a new model, ten assets at a time; images it holds."""
    model = client.models.create(name=f"bench-scenario-{uuid.uuid4().hex[:8]}").model
    started = time.perf_counter()
    for first in range(0, len(files), SCENARIO_BATCH):
        chunk = files[first:first + SCENARIO_BATCH]
        asset_ids = [client.assets.upload(name=path.name, image=base64.b64encode(path.read_bytes()).decode()).asset.id
                     for path in chunk]
        client.models.training_images.add(model.id, asset_ids=asset_ids)
    seconds = time.perf_counter() - started
    return seconds, int(client.models.retrieve(model.id).model.training_images_number)


def custom_vision_ingest(trainer, scenario, files: list[tuple[Path, str]], data: Path) -> tuple[float, float, int]:  # type: ignore[no-untyped-def]
    """Seconds for the batch upload; seconds until every image also has its caption; images stored."""
    result = upload(trainer, files, data, 64)
    uploaded = time.perf_counter()
    project = trainer.get_projects()[-1]  # the newest: the one upload() made
    model_id = next(model.id for model in scenario.models.list() if model.name == project.name)
    captions = [image.automatic_captioning for image in scenario.models.retrieve(model_id).model.training_images]
    captioned = result.seconds + (time.perf_counter() - uploaded)
    if len(captions) != result.stored or not all(captions):
        sys.exit(f"bench: {result.stored} images stored but {len(captions)} captions read")
    return result.seconds, captioned, result.stored


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"data set folder (default {DEFAULT_DATA})")
    parser.add_argument("--runs", type=int, default=3, help="runs, each ingesting the set both ways; medians are reported")
    parser.add_argument("--database-url", default=None, help="OCV_DATABASE_URL for the server (default SQLite)")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"bench: data set {args.data} is absent (expected ../shared/data/cls_hymenoptera beside the repository)")

    from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
    from msrest.authentication import ApiKeyCredentials
    from scenario_sdk import Scenario

    tagged = collect(args.data)
    files = [path for path, _ in tagged]
    for path in files:  # warm the page cache so that neither side pays for the disk
        path.read_bytes()
    print(f"data set:  {args.data}: {len(files)} files, {sum(p.stat().st_size for p in files) / 2**20:.1f} MiB, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")

    key, scenario_keys = secrets.token_hex(16), ("api_" + secrets.token_hex(8), secrets.token_hex(16))
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="ocv-bench-") as tmp, \
            ocv_server(Path(tmp) / "data", Path(tmp) / "server.log", training_key=key, database_url=args.database_url,
                       settings={"OCV_SCENARIO_API_KEY": scenario_keys[0], "OCV_SCENARIO_API_SECRET": scenario_keys[1]}) as server:
        trainer = CustomVisionTrainingClient(server.endpoint, ApiKeyCredentials(in_headers={"Training-key": key}))
        scenario = Scenario(api_key=scenario_keys[0], api_secret=scenario_keys[1], base_url=f"{server.endpoint}/v1",
                            max_retries=0, timeout=600)
        warm_up = time.perf_counter()  # the first caption exports the backbone to ONNX: not part of any run
        scenario_ingest(scenario, files[:1])
        print(f"server:    pid {server.pid}; warm-up (backbone export and load) {time.perf_counter() - warm_up:.1f}s")
        for number in range(1, args.runs + 1):
            if number % 2:
                scenario_seconds, scenario_images = scenario_ingest(scenario, files)
                cv_seconds, cv_captioned, cv_images = custom_vision_ingest(trainer, scenario, tagged, args.data)
            else:
                cv_seconds, cv_captioned, cv_images = custom_vision_ingest(trainer, scenario, tagged, args.data)
                scenario_seconds, scenario_images = scenario_ingest(scenario, files)
            run = Run(scenario_seconds, cv_seconds, cv_captioned, scenario_images, cv_images)
            runs.append(run)
            print(f"run {number}:     Scenario {len(files) / scenario_seconds:6.1f} images/s | Custom Vision "
                  f"{len(files) / cv_seconds:6.1f} images/s ({len(files) / cv_captioned:5.1f} with captions) | "
                  f"ratio {cv_seconds / scenario_seconds:.2f}")
        peak_kib, _ = server.peak_rss_kib()

    scenario_seconds = statistics.median(run.scenario_seconds for run in runs)
    cv_seconds = statistics.median(run.custom_vision_seconds for run in runs)
    cv_captioned = statistics.median(run.custom_vision_captioned_seconds for run in runs)
    ratio = cv_seconds / scenario_seconds
    print(f"stored:    Scenario {runs[0].scenario_images} training images, Custom Vision {runs[0].custom_vision_images} images "
          "(duplicate bytes within the set are one image)")
    print(f"Scenario:  {scenario_seconds:.2f}s (median of {len(runs)}) -> {len(files) / scenario_seconds:.1f} images/s, "
          f"{SCENARIO_BATCH} assets then one training-images call, captions in the answers")
    print(f"Custom Vision: {cv_seconds:.2f}s -> {len(files) / cv_seconds:.1f} images/s (create_images_from_files, 64 a batch); "
          f"with every caption made: {cv_captioned:.2f}s -> {len(files) / cv_captioned:.1f} images/s")
    print(f"ratio:     Scenario / Custom Vision = {ratio:.2f} (goal >= {GOAL}); "
          f"against Custom Vision with captions: {cv_captioned / scenario_seconds:.2f}")
    print(f"memory:    server peak RSS {peak_kib / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
