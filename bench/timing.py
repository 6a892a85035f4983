"""Timing benchmark: quickstart training time, prediction latency, and prediction throughput vs the raw model.

    .venv/bin/python bench/timing.py [--keep-data-dir DIR] [--requests 200] [--warmup 10] [--rounds 3]
                                     [--throughput-images 60] [--poll 0.1]

Starts ``ocv serve`` on a free loopback port (temporary data folder, or DIR with --keep-data-dir, which is
kept, so its ONNX export cache is reused by the next run) and drives it as a client following the
official SDK quickstart would:

1. training: uploads the 20 quickstart images (tags Hemlock / Japanese Cherry) into a new project, calls
   train_project and polls get_iteration every --poll seconds until Completed. First on the fresh data
   folder (the backbones were prepared at install by ``ocv prepare``; the server links them when it
   starts), then a second project on the same server (warm), then the warm project again after adding one
   image, with forceTrain (only the new image needs an embedding). The server-side job time
   (Iteration.training_seconds, read from the SQLite database) is printed beside the client-observed time.
   ``--unprepared`` first starts another server on a fresh data folder with no prepared models
   (OCV_PREPARED_MODELS pointing at an empty folder): it exports the backbones in the background from its
   start, and its first training waits for what is left of that.
2. latency: publishes the warm iteration, makes a ~1 MP JPEG from the quickstart test image (1155x866,
   quality 90) and POSTs it as an octet-stream body to the v3.1 classify .../image/nostore endpoint with
   httpx --requests times in a row after --warmup calls; p50/p95/mean in ms. One SDK call confirms the answer.
3. throughput: --rounds interleaved rounds of (a) the raw model in this process on the same JPEG bytes:
   Pillow decode + preprocess + Backbone.embed with the backbone the iteration's domain maps to, (b) the
   server with one sequential client, (c) the server with two client threads; medians and their ratios.
   CPU milliseconds per image (this process's for (a), the server process's, all threads, for (b) and (c))
   are printed beside them: on a shared machine they move less than wall-clock rates do.

Prints the server's peak RSS at the end. Exit status 0 whatever the numbers; 1 if something failed.
"""

from __future__ import annotations

import argparse
import io
import os
import secrets
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import httpx
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import Server, ocv_server, percentile

QUICKSTART = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "customvision-samples" / "ImageClassification" / "Images"
TAG_FOLDERS = (("Hemlock", "Hemlock"), ("Japanese Cherry", "Japanese_Cherry"))
TEST_IMAGE = Path("Test") / "test_image.jpg"
PREDICTION_SIZE = (1155, 866)  # about 1 MP
PREDICTION_QUALITY = 90
PUBLISH_NAME = "timingModel"
PREDICTION_URL = "/customvision/v3.1/prediction/{project}/classify/iterations/{name}/image/nostore"

GOAL_FIRST_TRAINING_S = 3.0
GOAL_WARM_TRAINING_S = 1.5
GOAL_P50_MS = 20.0
GOAL_RATIO = 0.85


def goal(met: bool) -> str:
    return "met" if met else "MISSED"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- training -----------------------------------------------------------------------------------------


def quickstart_entries(base: Path, tag_ids: dict[str, str]):  # type: ignore[no-untyped-def]
    from azure.cognitiveservices.vision.customvision.training.models import (
        ImageFileCreateEntry,
    )

    entries = []
    for tag, folder in TAG_FOLDERS:
        for path in sorted((base / folder).glob("*.jpg")):
            entries.append(ImageFileCreateEntry(name=path.name, contents=path.read_bytes(), tag_ids=[tag_ids[tag]]))
    return entries


def new_quickstart_project(trainer, base: Path, label: str):  # type: ignore[no-untyped-def]
    """A project in the default (General) domain with the quickstart tags and 20 images; upload seconds."""
    from azure.cognitiveservices.vision.customvision.training.models import (
        ImageFileCreateBatch,
    )

    project = trainer.create_project(f"timing-{label}-{uuid.uuid4().hex[:8]}")
    tag_ids = {tag: trainer.create_tag(project.id, tag).id for tag, _ in TAG_FOLDERS}
    entries = quickstart_entries(base, tag_ids)
    started = time.perf_counter()
    summary = trainer.create_images_from_files(project.id, ImageFileCreateBatch(images=entries))
    seconds = time.perf_counter() - started
    if not summary.is_batch_successful:
        sys.exit(f"bench: upload failed: {[image.status for image in summary.images]}")
    return project, tag_ids, len(entries), seconds


def train_and_wait(trainer, project_id: str, poll: float, *, force: bool = False, timeout: float = 900):  # type: ignore[no-untyped-def]
    """(iteration, seconds from the train_project call to the get_iteration that said Completed, polls)."""
    started = time.perf_counter()
    iteration = trainer.train_project(project_id, force_train=force)
    polls = 0
    while iteration.status == "Training":
        if time.perf_counter() - started > timeout:
            sys.exit(f"bench: training did not finish within {timeout:.0f}s")
        time.sleep(poll)
        iteration = trainer.get_iteration(project_id, iteration.id)
        polls += 1
    seconds = time.perf_counter() - started
    if iteration.status != "Completed":
        sys.exit(f"bench: iteration ended as {iteration.status}")
    return iteration, seconds, polls


class Database:
    """Read-only peeks into the server's SQLite database, for numbers the API does not show."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "ocv.sqlite3"

    def _one(self, query: str, *args: object) -> object:
        try:
            with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5) as connection:
                row = connection.execute(query, args).fetchone()
            return row[0] if row else None
        except sqlite3.Error:
            return None

    def job_seconds(self, iteration_id: str) -> float | None:
        value = self._one("SELECT training_seconds FROM iterations WHERE id = ?", str(iteration_id))
        return float(value) if isinstance(value, (int, float)) else None

    def embeddings(self) -> int | None:
        value = self._one("SELECT COUNT(*) FROM image_embeddings")
        return int(value) if isinstance(value, int) else None


def describe_training(label: str, seconds: float, polls: int, job: float | None, extra: str = "") -> str:
    job_text = f"server job {job:6.2f}s" if job is not None else "server job ?"
    return f"  {label:<34} {seconds:6.2f}s  ({job_text}, {polls} polls){extra}"


def one_more_image(base: Path) -> bytes:
    """A new picture (not a duplicate): the first Hemlock photo, mirrored."""
    with Image.open(base / "Hemlock" / "hemlock_1.jpg") as image:
        mirrored = ImageOps.mirror(image.convert("RGB"))
    buffer = io.BytesIO()
    mirrored.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def unprepared_first_training(base: Path, poll: float, training_key: str, prediction_key: str, resource_id: str) -> None:
    """A server on a fresh data folder with no prepared models: its first training waits for the background export."""
    from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
    from msrest.authentication import ApiKeyCredentials

    with tempfile.TemporaryDirectory(prefix="ocv-timing-unprepared-") as directory:
        tmp = Path(directory)
        (tmp / "none-prepared").mkdir()
        with ocv_server(tmp / "data", tmp / "server.log", training_key=training_key, prediction_key=prediction_key,
                        prediction_resource_id=resource_id, settings={"OCV_PREPARED_MODELS": str(tmp / "none-prepared")}) as server:
            trainer = CustomVisionTrainingClient(server.endpoint, ApiKeyCredentials(in_headers={"Training-key": training_key}))
            project, _, count, upload = new_quickstart_project(trainer, base, "unprepared")
            since_start = time.perf_counter() - server.started_at
            iteration, seconds, polls = train_and_wait(trainer, project.id, poll)
            print(describe_training("1st, nothing prepared (export at start)", seconds, polls,
                                    Database(tmp / "data").job_seconds(iteration.id),
                                    f"; train_project {since_start:.1f}s after the server started, {count} images uploaded in {upload:.1f}s"))


# --- prediction ---------------------------------------------------------------------------------------


def prediction_jpeg(base: Path) -> tuple[bytes, tuple[int, int]]:
    with Image.open(base / TEST_IMAGE) as image:
        resized = image.convert("RGB").resize(PREDICTION_SIZE, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    resized.save(buffer, "JPEG", quality=PREDICTION_QUALITY)
    return buffer.getvalue(), resized.size


def prediction_client(server: Server, prediction_key: str) -> httpx.Client:
    return httpx.Client(base_url=server.endpoint, timeout=60,
                        headers={"Prediction-Key": prediction_key, "Content-Type": "application/octet-stream"})


def classify(client: httpx.Client, url: str, body: bytes) -> httpx.Response:
    response = client.post(url, content=body)
    if response.status_code != 200:
        sys.exit(f"bench: prediction answered {response.status_code}: {response.text[:500]}")
    return response


def server_sequential(client: httpx.Client, url: str, body: bytes, count: int) -> tuple[float, list[float]]:
    """(wall seconds, per-request latencies in seconds)."""
    latencies = []
    started = time.perf_counter()
    for _ in range(count):
        began = time.perf_counter()
        classify(client, url, body)
        latencies.append(time.perf_counter() - began)
    return time.perf_counter() - started, latencies


def server_concurrent(clients: list[httpx.Client], url: str, body: bytes, count: int) -> float:
    """Wall seconds for ``count`` requests spread over one thread per client."""
    shares = [count // len(clients) + (1 if index < count % len(clients) else 0) for index in range(len(clients))]
    barrier = threading.Barrier(len(clients) + 1)
    failures: list[BaseException] = []

    def work(client: httpx.Client, share: int) -> None:
        barrier.wait()
        try:
            for _ in range(share):
                response = client.post(url, content=body)
                response.raise_for_status()
        except BaseException as error:  # noqa: BLE001 - reported below
            failures.append(error)

    threads = [threading.Thread(target=work, args=(client, share)) for client, share in zip(clients, shares)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if failures:
        sys.exit(f"bench: concurrent prediction failed: {failures[0]!r}")
    return seconds


def raw_model(backbone) -> Callable[[bytes], object]:  # type: ignore[no-untyped-def]
    """What the server does per image, minus HTTP: Pillow decode, preprocess, Backbone.embed."""
    from opencustomvision.ml.preprocess import preprocess_batch

    size = backbone.spec.input_size

    def run(data: bytes) -> object:
        with Image.open(io.BytesIO(data)) as image:
            picture = image.convert("RGB")
        return backbone.embed(preprocess_batch([picture], size))

    return run


def raw_sequential(run: Callable[[bytes], object], body: bytes, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        run(body)
    return time.perf_counter() - started


# --- main ---------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=QUICKSTART, help=f"quickstart Images folder (default {QUICKSTART})")
    parser.add_argument("--keep-data-dir", type=Path, default=None, metavar="DIR",
                        help="use DIR as the server's data folder and keep it (reuses the ONNX export cache)")
    parser.add_argument("--requests", type=int, default=200, help="sequential prediction calls timed for latency")
    parser.add_argument("--warmup", type=int, default=10, help="untimed prediction calls first")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved throughput rounds (raw, 1 client, 2 clients)")
    parser.add_argument("--throughput-images", type=int, default=60, help="images per throughput measurement")
    parser.add_argument("--poll", type=float, default=0.1, help="get_iteration polling interval, seconds")
    parser.add_argument("--unprepared", action="store_true",
                        help="also time the first training of a server that has no prepared models (exports at its start)")
    args = parser.parse_args()

    base = args.images
    if not (base / TEST_IMAGE).is_file():
        sys.exit(f"bench: quickstart images absent: {base / TEST_IMAGE}")

    from azure.cognitiveservices.vision.customvision.prediction import (
        CustomVisionPredictionClient,
    )
    from azure.cognitiveservices.vision.customvision.training import (
        CustomVisionTrainingClient,
    )
    from azure.cognitiveservices.vision.customvision.training.models import (
        ImageFileCreateBatch,
        ImageFileCreateEntry,
    )
    from msrest.authentication import ApiKeyCredentials

    from opencustomvision.domain.catalog import backbone_for
    from opencustomvision.ml.backbone import Backbone, default_threads, onnx_path, prepared_models_dir

    training_key, prediction_key = secrets.token_hex(16), secrets.token_hex(16)
    resource_id = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/bench/providers/Microsoft.CognitiveServices/accounts/bench-Prediction"
    print(f"machine:   {os.cpu_count()} CPUs ({default_threads()} usable), load average {os.getloadavg()[0]:.2f}")

    if args.unprepared:
        unprepared_first_training(base, args.poll, training_key, prediction_key, resource_id)

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ocv-timing-")))
        data_dir = args.keep_data_dir.resolve() if args.keep_data_dir is not None else tmp / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        server = stack.enter_context(ocv_server(data_dir, tmp / "server.log", training_key=training_key,
                                                prediction_key=prediction_key, prediction_resource_id=resource_id))
        print(f"server:    ocv serve (SQLite, data dir {data_dir}{' kept' if args.keep_data_dir else ', temporary'}), "
              f"pid {server.pid}, answered {server.startup_seconds:.2f}s after start")
        trainer = CustomVisionTrainingClient(server.endpoint, ApiKeyCredentials(in_headers={"Training-key": training_key}))
        predictor = CustomVisionPredictionClient(server.endpoint, ApiKeyCredentials(in_headers={"Prediction-key": prediction_key}))
        database = Database(data_dir)
        created: list[str] = []

        # 1. training --------------------------------------------------------------------------------
        print("training:  20 quickstart images, train_project -> get_iteration every "
              f"{args.poll:.1f}s until Completed (client-observed; server job = Iteration.training_seconds)")
        cold_project, _, count, upload_cold = new_quickstart_project(trainer, base, "cold")
        created.append(cold_project.id)
        backbone_name = backbone_for(cold_project.settings.domain_id)
        model_file = onnx_path(backbone_name, data_dir / "models")
        prepared = (prepared_models_dir() / model_file.name).is_file()
        cold_iteration, cold_seconds, polls = train_and_wait(trainer, cold_project.id, args.poll)
        first_label = "1st, fresh dir (models prepared)" if prepared else "1st, fresh dir (NOT prepared)"
        print(describe_training(first_label, cold_seconds, polls, database.job_seconds(cold_iteration.id),
                                f"  goal <= {GOAL_FIRST_TRAINING_S:.0f}s: {goal(cold_seconds <= GOAL_FIRST_TRAINING_S)}"))

        warm_project, warm_tags, _, upload_warm = new_quickstart_project(trainer, base, "warm")
        created.append(warm_project.id)
        warm_iteration, warm_seconds, polls = train_and_wait(trainer, warm_project.id, args.poll)
        warm_job = database.job_seconds(warm_iteration.id)
        print(describe_training("2nd project, same server (warm)", warm_seconds, polls, warm_job,
                                f"  goal <= {GOAL_WARM_TRAINING_S:g}s: {goal(warm_seconds <= GOAL_WARM_TRAINING_S)}"))

        embeddings_before = database.embeddings()
        added = trainer.create_images_from_files(warm_project.id, ImageFileCreateBatch(images=[
            ImageFileCreateEntry(name="hemlock_1_mirrored.jpg", contents=one_more_image(base), tag_ids=[warm_tags["Hemlock"]])]))
        if not added.is_batch_successful:
            sys.exit(f"bench: adding an image failed: {added.images[0].status}")
        retrain_iteration, retrain_seconds, polls = train_and_wait(trainer, warm_project.id, args.poll, force=True)
        embeddings_after = database.embeddings()
        new_embeddings = (f", {embeddings_after - embeddings_before} new embedding(s)"
                          if embeddings_before is not None and embeddings_after is not None else "")
        print(describe_training("+1 image, forceTrain (cache)", retrain_seconds, polls,
                                database.job_seconds(retrain_iteration.id), new_embeddings))
        print(f"  one-time cost (1st - 2nd): "
              f"{cold_seconds - warm_seconds:.2f}s; uploads of {count} images took "
              f"{upload_cold:.2f}s / {upload_warm:.2f}s; backbone {backbone_name} (domain General)")

        # 2. latency ---------------------------------------------------------------------------------
        trainer.publish_iteration(warm_project.id, retrain_iteration.id, PUBLISH_NAME, resource_id)
        body, dimensions = prediction_jpeg(base)
        url = PREDICTION_URL.format(project=warm_project.id, name=PUBLISH_NAME)
        print(f"predict:   {TEST_IMAGE} resized to {dimensions[0]}x{dimensions[1]} "
              f"({dimensions[0] * dimensions[1] / 1e6:.2f} MP), JPEG q{PREDICTION_QUALITY}, {len(body) / 1024:.0f} KiB; "
              f"POST {url.replace(warm_project.id, '{id}')}")
        sdk = predictor.classify_image_with_no_store(warm_project.id, PUBLISH_NAME, body)
        top = sdk.predictions[0]
        print(f"  SDK classify_image_with_no_store: {top.tag_name} {top.probability:.3f} "
              f"({len(sdk.predictions)} tags{', as expected' if top.tag_name == 'Hemlock' else ', EXPECTED Hemlock'})")
        single = prediction_client(server, prediction_key)
        stack.callback(single.close)
        for _ in range(args.warmup):
            classify(single, url, body)
        cpu_before = cpu_seconds(server.pid)
        _, latencies = server_sequential(single, url, body, args.requests)
        server_cpu_ms = (cpu_seconds(server.pid) - cpu_before) / args.requests * 1000
        milliseconds = [value * 1000 for value in latencies]
        p50 = statistics.median(milliseconds)
        print(f"  latency over {args.requests} sequential calls (after {args.warmup} warm-up): "
              f"p50 {p50:.1f} ms, p95 {percentile(milliseconds, 0.95):.1f} ms, mean {statistics.fmean(milliseconds):.1f} ms, "
              f"min {min(milliseconds):.1f} ms; server CPU {server_cpu_ms:.1f} ms/request  "
              f"goal p50 <= {GOAL_P50_MS:.0f} ms: {goal(p50 <= GOAL_P50_MS)}")

        # 3. throughput ------------------------------------------------------------------------------
        iteration_domain = trainer.get_iteration(warm_project.id, retrain_iteration.id).domain_id
        raw_backbone_name = backbone_for(iteration_domain)
        raw = raw_model(Backbone.load(raw_backbone_name, data_dir / "models"))
        for _ in range(args.warmup):
            raw(body)
        pair = [prediction_client(server, prediction_key) for _ in range(2)]
        for client in pair:
            stack.callback(client.close)
            classify(client, url, body)
        n = args.throughput_images
        raws, ones, twos = [], [], []
        raw_cpu, one_cpu, two_cpu = [], [], []  # CPU ms per image: this process for raw, the server's otherwise
        for number in range(1, args.rounds + 1):
            before = time.process_time()
            raws.append(n / raw_sequential(raw, body, n))
            raw_cpu.append((time.process_time() - before) / n * 1000)
            before = cpu_seconds(server.pid)
            ones.append(n / server_sequential(single, url, body, n)[0])
            one_cpu.append((cpu_seconds(server.pid) - before) / n * 1000)
            before = cpu_seconds(server.pid)
            twos.append(n / server_concurrent(pair, url, body, n))
            two_cpu.append((cpu_seconds(server.pid) - before) / n * 1000)
            print(f"  round {number}: raw {raws[-1]:5.1f} img/s ({raw_cpu[-1]:5.1f} CPU ms/img) | "
                  f"server 1 client {ones[-1]:5.1f} img/s ({one_cpu[-1]:5.1f}) | "
                  f"2 clients {twos[-1]:5.1f} img/s ({two_cpu[-1]:5.1f})")
        raw_rate, one_rate, two_rate = (statistics.median(values) for values in (raws, ones, twos))
        raw_ms, one_ms, two_ms = (statistics.median(values) for values in (raw_cpu, one_cpu, two_cpu))
        print(f"throughput (median of {args.rounds} rounds of {n} images; raw = this process: Pillow decode + "
              f"preprocess + Backbone.embed, {raw_backbone_name}, {default_threads()} ORT threads):")
        print(f"  raw model           {raw_rate:6.1f} images/s  ({1000 / raw_rate:.1f} ms/image, {raw_ms:.1f} CPU ms/image)")
        print(f"  server, 1 client    {one_rate:6.1f} images/s  ratio {one_rate / raw_rate:.2f}  "
              f"goal >= {GOAL_RATIO}: {goal(one_rate / raw_rate >= GOAL_RATIO)}  "
              f"(CPU: {one_ms:.1f} ms/image, raw/server {raw_ms / one_ms:.2f})")
        print(f"  server, 2 clients   {two_rate:6.1f} images/s  ratio {two_rate / raw_rate:.2f}  "
              f"goal >= {GOAL_RATIO}: {goal(two_rate / raw_rate >= GOAL_RATIO)}  "
              f"(CPU: {two_ms:.1f} ms/image, raw/server {raw_ms / two_ms:.2f})")

        peak_kib, processes = server.peak_rss_kib()
        print(f"memory:    server peak RSS {peak_kib / 1024:.0f} MiB (VmHWM, {processes} process{'es' if processes != 1 else ''})")
        print(f"machine:   load average {os.getloadavg()[0]:.2f} at the end (the numbers above are only as quiet as the machine)")

        if args.keep_data_dir is not None:  # leave the kept folder with its model cache, not with our projects
            for project_id in created:
                try:
                    for iteration in trainer.get_iterations(project_id):
                        if iteration.publish_name:
                            trainer.unpublish_iteration(project_id, iteration.id)
                    trainer.delete_project(project_id)
                except Exception as error:  # noqa: BLE001 - cleanup only
                    print(f"note: could not delete project {project_id}: {error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
