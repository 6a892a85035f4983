"""Migration benchmark: ``ocv migrate`` of 2,000 images between two local servers, beside the raw upload rate.

    .venv/bin/python bench/migrate.py [--images 2000] [--data DIR]

Starts two ``ocv serve`` processes (a source and a target, each with its own temporary data folder and
SQLite database). The baseline is the raw rate of the same files through the official SDK's
``create_images_from_files`` (batches of 64 with their tags, one call at a time, as a client following
the quickstart would), measured twice in the same run, into the source: once before the migration (that
upload is what gets migrated) and once after (a second project, so a change of load on the machine
shows). The migration copies the first project to the target with the same engine ``ocv migrate`` runs
(listing, downloading each original from ``originalImageUri``, uploading with tags), timed from start
to end. Prints images/s of each (the migration's per image it stored: the set holds 6 files twice, which
the source keeps once) and the ratio migration / mean baseline (goal >= 0.8).
Data: the first ``--images`` files (by class, then name) of ../shared/data/cls_flowers5_128px, a folder per class.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import ocv_server

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cls_flowers5_128px"


def collect(data: Path, count: int) -> list[tuple[Path, str]]:
    files = [(path, folder.name) for folder in sorted(p for p in data.iterdir() if p.is_dir())
             for path in sorted(folder.glob("*.jpg"))]
    if len(files) < count:
        sys.exit(f"bench: {data} holds {len(files)} images; {count} asked")
    # Round-robin over the classes, so that any count has them all.
    by_class: dict[str, list[Path]] = {}
    for path, tag in files:
        by_class.setdefault(tag, []).append(path)
    chosen: list[tuple[Path, str]] = []
    while len(chosen) < count:
        for tag, paths in by_class.items():
            if paths and len(chosen) < count:
                chosen.append((paths.pop(0), tag))
    return chosen


def upload(trainer, files: list[tuple[Path, str]]) -> tuple[str, float, Counter[str]]:  # type: ignore[no-untyped-def]
    """A new project with a tag per class, then every file in batches of 64 through create_images_from_files."""
    from azure.cognitiveservices.vision.customvision.training.models import ImageFileCreateBatch, ImageFileCreateEntry

    project = trainer.create_project(f"bench-migrate-{uuid.uuid4().hex[:8]}")
    tag_ids = {tag: trainer.create_tag(project.id, tag).id for tag in sorted({tag for _, tag in files})}
    statuses: Counter[str] = Counter()
    started = time.perf_counter()
    for first in range(0, len(files), 64):
        entries = [ImageFileCreateEntry(name=path.name, contents=path.read_bytes(), tag_ids=[tag_ids[tag]])
                   for path, tag in files[first:first + 64]]
        summary = trainer.create_images_from_files(project.id, ImageFileCreateBatch(images=entries))
        statuses.update(image.status for image in summary.images)
    return project.id, time.perf_counter() - started, statuses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--images", type=int, default=2000)
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"bench: data set {args.data} is absent (expected ../shared/data/cls_flowers5_128px beside the repository)")

    from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
    from msrest.authentication import ApiKeyCredentials

    from opencustomvision.transfer.client import CustomVisionClient
    from opencustomvision.transfer.migration import Migration, MigrationOptions
    from opencustomvision.transfer.state import MigrationState

    files = collect(args.data, args.images)
    size = sum(path.stat().st_size for path, _ in files)
    for path, _ in files:  # warm the page cache: neither measurement pays for the disk
        path.read_bytes()
    print(f"data set:  {args.data}: {len(files)} files, {size / 2**20:.1f} MiB, "
          f"{len(set(tag for _, tag in files))} classes; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")

    source_key, target_key = secrets.token_hex(16), secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="ocv-bench-migrate-") as tmp:
        root = Path(tmp)
        with ocv_server(root / "source", root / "source.log", training_key=source_key) as source, \
                ocv_server(root / "target", root / "target.log", training_key=target_key) as target:
            trainer = CustomVisionTrainingClient(source.endpoint, ApiKeyCredentials(in_headers={"Training-key": source_key}))
            project_id, before, statuses = upload(trainer, files)
            print(f"baseline:  create_images_from_files into the source: {before:6.2f}s = {len(files) / before:6.1f} images/s "
                  f"({dict(statuses)})")

            with CustomVisionClient(source.endpoint, source_key) as from_client, \
                    CustomVisionClient(target.endpoint, target_key) as to_client, \
                    MigrationState(root / "migration.sqlite3") as state:
                started = time.perf_counter()
                report = Migration(from_client, to_client, state).run(MigrationOptions(project_ids=[project_id]))
                migration = time.perf_counter() - started
            totals = report.totals()["images"]
            stored = statuses["OK"]  # the set holds a few files twice: the source keeps one image of each
            print(f"migration: source -> target, listing + originals + upload:  {migration:6.2f}s = "
                  f"{stored / migration:6.1f} images/s ({totals}, {report.retries} retries)")

            _, after, _ = upload(trainer, files)
            print(f"baseline:  again, after the migration (second project):    {after:6.2f}s = {len(files) / after:6.1f} images/s")

    baseline = len(files) / ((before + after) / 2)
    rate = stored / migration
    print(f"ratio:     migration / mean baseline = {rate:.1f} / {baseline:.1f} = {rate / baseline:.2f}  (goal >= 0.8)")
    return 0 if report.ok and totals["copied"] == stored else 1


if __name__ == "__main__":
    sys.exit(main())
