"""Ingest benchmark: upload cls_hymenoptera through the official SDK to a server this script starts.

    .venv/bin/python bench/ingest.py [--batch 64] [--data DIR] [--database-url URL]

Starts ``ocv serve`` on a free loopback port with a temporary data folder (SQLite unless
--database-url is given), creates a classification project with the tags ``ants`` and ``bees``
(the folder names), and uploads every file of train/ and val/ with
``CustomVisionTrainingClient.create_images_from_files`` in batches of 64, one batch at a time,
as a client following the quickstart would. Prints the per-status counts, the time and images/s,
the server's peak RSS, and a same-run baseline: reading and decoding the same files with Pillow
in this process. The set holds train/ants/imageNotFound.gif, a web placeholder ("this image could not be
found") saved as a valid 300x300 GIF: it decodes, so the service stores it as Azure would; its status is
printed so a change in how such files are handled is visible.
"""

from __future__ import annotations

import argparse
import io
import os
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import ocv_server

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cls_hymenoptera"
SPLITS = ("train", "val")
TAGS = ("ants", "bees")
BAD_FILE = Path("train") / "ants" / "imageNotFound.gif"  # a placeholder picture, but a valid GIF


def collect(data: Path) -> list[tuple[Path, str]]:
    files: list[tuple[Path, str]] = []
    for split in SPLITS:
        for tag in TAGS:
            folder = data / split / tag
            if not folder.is_dir():
                sys.exit(f"bench: {folder} is missing; expected {data}/{{{','.join(SPLITS)}}}/{{{','.join(TAGS)}}}/")
            files += [(path, tag) for path in sorted(folder.iterdir()) if path.is_file()]
    return files


def pillow_baseline(files: list[tuple[Path, str]]) -> tuple[float, int]:
    """Seconds to read and fully decode every file with Pillow; how many failed to decode."""
    failed = 0
    started = time.perf_counter()
    for path, _ in files:
        try:
            with Image.open(io.BytesIO(path.read_bytes())) as image:
                image.load()
        except Exception:  # noqa: BLE001 - the bad file is expected to fail here too
            failed += 1
    return time.perf_counter() - started, failed


@dataclass
class Upload:
    seconds: float = 0.0
    statuses: Counter[str] = field(default_factory=Counter)
    by_file: dict[Path, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    stored: int = 0


def upload(client, files: list[tuple[Path, str]], data: Path, batch: int) -> Upload:  # type: ignore[no-untyped-def]
    """A new project with the two tags, then every file in batches, one create_images_from_files call at a time."""
    from azure.cognitiveservices.vision.customvision.training.models import (
        ImageFileCreateBatch,
        ImageFileCreateEntry,
    )

    domain = next(d for d in client.get_domains() if d.type == "Classification" and d.name == "General")
    project = client.create_project(f"bench-ingest-{uuid.uuid4().hex[:8]}", domain_id=domain.id)
    tag_ids = {tag: client.create_tag(project.id, tag).id for tag in TAGS}
    result = Upload()
    started = time.perf_counter()
    for first in range(0, len(files), batch):
        chunk = files[first:first + batch]
        entries = [ImageFileCreateEntry(name=path.name, contents=path.read_bytes(), tag_ids=[tag_ids[tag]])
                   for path, tag in chunk]
        try:
            summary = client.create_images_from_files(project.id, ImageFileCreateBatch(images=entries))
        except Exception as error:  # noqa: BLE001 - a failed batch is a result to report
            result.statuses["batch failed"] += len(chunk)
            result.errors.append(f"batch at {first}: {type(error).__name__}: {error}")
            continue
        for (path, _), created in zip(chunk, summary.images or []):
            result.statuses[created.status] += 1
            result.by_file[path.relative_to(data)] = created.status
            if created.status not in ("OK", "OKDuplicate"):
                result.errors.append(f"{path.relative_to(data)}: {created.status}")
        missing = len(chunk) - len(summary.images or [])
        if missing:
            result.statuses["no result"] += missing
            result.errors.append(f"batch at {first}: {missing} entries got no result")
    result.seconds = time.perf_counter() - started
    result.stored = client.get_tagged_image_count(project.id)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"data set folder (default {DEFAULT_DATA})")
    parser.add_argument("--batch", type=int, default=64, help="images per create_images_from_files call")
    parser.add_argument("--runs", type=int, default=3,
                        help="uploads (each into a new project, each after its own Pillow baseline); medians are reported")
    parser.add_argument("--database-url", default=None, help="OCV_DATABASE_URL for the server (default SQLite)")
    args = parser.parse_args()

    if not args.data.is_dir():
        sys.exit(f"bench: data set {args.data} is absent (expected ../shared/data/cls_hymenoptera beside the repository)")

    from azure.cognitiveservices.vision.customvision.training import (
        CustomVisionTrainingClient,
    )
    from msrest.authentication import ApiKeyCredentials

    files = collect(args.data)
    total_bytes = sum(path.stat().st_size for path, _ in files)
    for path, _ in files:  # warm the page cache so that neither measurement pays for the disk
        path.read_bytes()
    print(f"data set:  {args.data}")
    print(f"images:    {len(files)} files, {total_bytes / 2**20:.1f} MiB "
          f"({', '.join(f'{tag} {n}' for tag, n in sorted(Counter(tag for _, tag in files).items()))}), "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")

    key = secrets.token_hex(16)
    database = args.database_url.split("://")[0] if args.database_url else "SQLite"
    runs: list[tuple[Upload, float, int]] = []
    with tempfile.TemporaryDirectory(prefix="ocv-bench-") as tmp, \
            ocv_server(Path(tmp) / "data", Path(tmp) / "server.log", training_key=key, database_url=args.database_url) as server:
        print(f"server:    ocv serve ({database}, data dir in {tmp}), pid {server.pid}, "
              f"answered {server.startup_seconds:.2f}s after start")
        client = CustomVisionTrainingClient(server.endpoint, ApiKeyCredentials(in_headers={"Training-key": key}))
        for number in range(1, args.runs + 1):
            decode_seconds, decode_failed = pillow_baseline(files)
            result = upload(client, files, args.data, args.batch)
            runs.append((result, decode_seconds, decode_failed))
            rate, decode_rate = len(files) / result.seconds, len(files) / decode_seconds
            print(f"run {number}:     upload {result.seconds:5.2f}s = {rate:6.1f} images/s | "
                  f"Pillow read+decode {decode_seconds:4.2f}s = {decode_rate:6.1f} images/s | ratio {rate / decode_rate:.2f}")
        peak_kib, processes = server.peak_rss_kib()

    first = runs[0][0]
    statuses = Counter(first.statuses)
    ok, duplicate = statuses.pop("OK", 0), statuses.pop("OKDuplicate", 0)
    upload_seconds = statistics.median(run.seconds for run, _, _ in runs)
    decode_seconds = statistics.median(seconds for _, seconds, _ in runs)
    rate, decode_rate = len(files) / upload_seconds, len(files) / decode_seconds
    print(f"uploaded:  {len(files)} images per run in batches of {args.batch} via create_images_from_files "
          "(official SDK, one batch at a time)")
    print(f"results:   OK {ok}, OKDuplicate {duplicate}, errors {sum(statuses.values())}"
          + (f" ({', '.join(f'{status} {n}' for status, n in statuses.most_common())})" if statuses else "")
          + (" (run 1; later runs differ!)" if any(run.statuses != first.statuses for run, _, _ in runs) else ""))
    for line in first.errors[:10]:
        print(f"           - {line}")
    bad_status = first.by_file.get(BAD_FILE)
    if bad_status is not None:
        print(f"placeholder: {BAD_FILE}: {bad_status}")
    print(f"stored:    {first.stored} tagged images in the project (GetTaggedImageCount)")
    print(f"time:      {upload_seconds:.2f}s (median of {len(runs)})  ->  {rate:.1f} images/s  (goal >= 50)")
    print(f"memory:    server peak RSS {peak_kib / 1024:.0f} MiB (VmHWM, {processes} process{'es' if processes != 1 else ''})")
    print(f"baseline:  Pillow read+decode in this process: {decode_seconds:.2f}s (median) -> {decode_rate:.1f} images/s "
          f"({runs[0][2]} failed to decode)")
    print(f"ratio:     server throughput / raw decode throughput = {rate / decode_rate:.2f}")

    bad = any(run.statuses.get("batch failed") or run.statuses.get("no result") or run.stored != run.statuses.get("OK", 0)
              for run, _, _ in runs)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
