"""Object detection over HTTP: train the SDK quickstart detector in ``ocv serve``, then time predictions.

    .venv/bin/python bench/detection_http.py [--requests 100] [--rounds 5]

Trains the fork/scissors quickstart (40 images with regions; goal: Completed in <= 30 s) through the Training
API, publishes it, and
POSTs an 816x612 JPEG (the quickstart's test photo resized, quality 90) to
``/customvision/v3.1/prediction/{id}/detect/iterations/{name}/image/nostore`` one request at a time:
p50 / p95 latency (goal p50 <= 60 ms). Throughput of the server (1 client) is divided by the throughput of
the raw model in this process on the same bytes (decode as the server decodes + ``DetectionModel.predict``
on the same stored blob), as for classification in bench/timing.py.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import TRAINING_API, ocv_server, percentile  # noqa: E402

from opencustomvision.imaging.decode import load_rgb  # noqa: E402
from opencustomvision.inference import DETECTION_DECODE_SIDE  # noqa: E402
from opencustomvision.jobs.training import load_detector  # noqa: E402
from opencustomvision.ml.detection import DetectionModel  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "customvision-samples" / "ObjectDetection"
GENERAL_DETECTION = "da2e3a8a-40a5-4171-82f4-58522f70fbc1"
SIZE = (816, 612)
GOAL_MS = 60.0
GOAL_TRAINING_S = 30.0
GOAL_RATIO = 0.85


def test_jpeg() -> bytes:
    with Image.open(DATA / "Images" / "test" / "test_image.jpg") as image:
        resized = image.convert("RGB").resize(SIZE, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    resized.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def train_and_publish(http: httpx.Client, resource_id: str) -> tuple[str, str, float]:
    project = http.post(f"{TRAINING_API}/projects", params={"name": "detection-bench", "domainId": GENERAL_DETECTION}).json()["id"]
    boxes = json.loads((DATA / "regions.json").read_text())
    for name in ("fork", "scissors"):
        tag = http.post(f"{TRAINING_API}/projects/{project}/tags", params={"name": name}).json()["id"]
        for stem, (left, top, width, height) in sorted(boxes[name].items()):
            image = http.post(f"{TRAINING_API}/projects/{project}/images", content=(DATA / "Images" / name / f"{stem}.jpg").read_bytes(),
                              headers={"Content-Type": "application/octet-stream"}).json()["images"][0]["image"]["id"]
            http.post(f"{TRAINING_API}/projects/{project}/images/regions", json={"regions": [
                {"imageId": image, "tagId": tag, "left": left, "top": top, "width": width, "height": height}]}).raise_for_status()
    started = time.perf_counter()
    iteration = http.post(f"{TRAINING_API}/projects/{project}/train").json()
    while iteration["status"] == "Training":
        time.sleep(1)
        iteration = http.get(f"{TRAINING_API}/projects/{project}/iterations/{iteration['id']}").json()
    seconds = time.perf_counter() - started
    if iteration["status"] != "Completed":
        raise RuntimeError(f"training ended {iteration['status']}")
    http.post(f"{TRAINING_API}/projects/{project}/iterations/{iteration['id']}/publish",
              params={"publishName": "bench", "predictionId": resource_id}).raise_for_status()
    return project, iteration["id"], seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of server and raw-model predictions")
    args = parser.parse_args()
    training_key, prediction_key = secrets.token_hex(16), secrets.token_hex(16)
    resource_id = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/bench/providers/Microsoft.CognitiveServices/accounts/bench-Prediction"
    body = test_jpeg()
    print(f"machine: {os.cpu_count()} CPUs, load average {', '.join(f'{v:.1f}' for v in os.getloadavg())} at start")
    with tempfile.TemporaryDirectory(prefix="ocv-detection-bench-") as directory, ocv_server(
        Path(directory) / "data", Path(directory) / "server.log", training_key=training_key,
        prediction_key=prediction_key, prediction_resource_id=resource_id,
    ) as server:
        http = httpx.Client(base_url=server.endpoint, headers={"Training-Key": training_key}, timeout=900)
        try:
            project, iteration, training_seconds = train_and_publish(http, resource_id)
        except RuntimeError as error:
            sys.exit(f"bench: {error}; the server's log ends:\n{(Path(directory) / 'server.log').read_text()[-4000:]}")
        print(f"training: quickstart, 40 images, train_project -> Completed in {training_seconds:.1f} s "
              f"(two detectors side by side: one without a held-out fifth, one on all)  goal <= {GOAL_TRAINING_S:g} s: "
              f"{'met' if training_seconds <= GOAL_TRAINING_S else 'MISSED'}")
        predict = httpx.Client(base_url=server.endpoint, timeout=60,
                               headers={"Prediction-Key": prediction_key, "Content-Type": "application/octet-stream"})
        url = f"/customvision/v3.1/prediction/{project}/detect/iterations/bench/image/nostore"
        for _ in range(5):
            top = predict.post(url, content=body).json()["predictions"][0]
        print(f"predict: {SIZE[0]}x{SIZE[1]} JPEG, {len(body) // 1024} KiB; top: {top['tagName']} {top['probability']:.2f}")
        # The raw model in this process: the stored blob, the backbone the server uses.
        blob = (server.data_dir / "blobs" / "projects" / project / "iterations" / iteration / "detector.bin").read_bytes()
        model = DetectionModel.from_bytes(load_detector(blob).model, server.data_dir / "models")
        for _ in range(5):
            model.predict(load_rgb(body, min_short_side=DETECTION_DECODE_SIDE))
        # Interleaved rounds, so that the other load on the machine touches server and raw model alike.
        latencies: list[float] = []
        server_rates, raw_rates = [], []
        per_round = max(1, args.requests // args.rounds)
        for _ in range(args.rounds):
            started = time.perf_counter()
            for _ in range(per_round):
                began = time.perf_counter()
                predict.post(url, content=body).raise_for_status()
                latencies.append(time.perf_counter() - began)
            server_rates.append(per_round / (time.perf_counter() - started))
            started = time.perf_counter()
            for _ in range(per_round):
                model.predict(load_rgb(body, min_short_side=DETECTION_DECODE_SIDE))
            raw_rates.append(per_round / (time.perf_counter() - started))
        server_rate, raw_rate = statistics.median(server_rates), statistics.median(raw_rates)
    p50 = 1000 * statistics.median(latencies)
    p95 = 1000 * percentile(latencies, 0.95)
    print(f"latency over {args.requests} sequential requests: p50 {p50:.1f} ms, p95 {p95:.1f} ms  "
          f"goal p50 <= {GOAL_MS:g} ms: {'met' if p50 <= GOAL_MS else 'MISSED'}")
    print(f"throughput (median of {args.rounds} interleaved rounds): server {server_rate:.1f} img/s, raw model "
          f"{raw_rate:.1f} img/s (same bytes, this process), "
          f"ratio {server_rate / raw_rate:.2f}  goal >= {GOAL_RATIO}: {'met' if server_rate / raw_rate >= GOAL_RATIO else 'MISSED'}")
    print(f"load average at the end {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
