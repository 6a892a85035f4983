"""Load on the fleet (scripts/cluster.sh: 2 API replicas behind nginx, 2 RQ workers, PostgreSQL, Redis, SeaweedFS),
each figure beside its baseline measured in the same run:

- uploads: C concurrent clients x U uploads in batches of 1 to 64, some duplicates, through nginx (2 replicas)
  against straight to one replica; every image must land exactly once (count and SHA-256 of each stored original)
  and no answer may be a 5xx. Prints images/s for both.
- predictions on a published classifier: C clients through nginx (2 replicas) against one replica: predictions/s,
  p50 / p99; the RSS of each replica before and after N predictions.
- training: 4 projects trained at once with 2 workers against 1 worker (wall time until all are Completed).

    .venv/bin/python bench/scale.py [--clients 8] [--uploads 1000] [--predictions 10000] [--cluster-dir DIR]

Without --cluster-dir it starts a fleet of its own in a temporary folder and stops it at the end. Loopback only.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import TRAINING_API, percentile  # noqa: E402

CLUSTER = Path(__file__).resolve().parents[1] / "scripts" / "cluster.sh"


@dataclass
class Fleet:
    """A fleet started by scripts/cluster.sh, and a hand on each of its parts (stop, start, kill)."""

    state: Path
    endpoint: str
    training_key: str
    prediction_key: str
    prediction_resource_id: str
    ports: dict[str, str]

    def part(self, action: str, name: str) -> None:
        """``stop`` / ``start`` / ``kill`` (SIGKILL) one part: postgres, redis, seaweedfs, nginx, apiN, workerN."""
        subprocess.run([str(CLUSTER), action, name], env=dict(os.environ, OCV_CLUSTER_DIR=str(self.state)), check=True,
                       capture_output=True, timeout=180)

    def replica(self, n: int) -> str:
        return f"http://127.0.0.1:{self.ports[f'API_PORT_{n}']}"

    def pid(self, name: str) -> int | None:
        path = self.state / "pids" / name
        return int(path.read_text()) if path.exists() else None

    def client(self, endpoint: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=f"{endpoint or self.endpoint}{TRAINING_API}", headers={"Training-Key": self.training_key},
                            timeout=300)


def name_values(text: str) -> dict[str, str]:
    """``NAME=value`` lines, as scripts/cluster.sh prints them."""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("cluster:"))


def attach(state: Path) -> Fleet:
    environment = dict(os.environ, OCV_CLUSTER_DIR=str(state))
    printed = name_values(subprocess.run([str(CLUSTER), "summary"], env=environment, capture_output=True, text=True,
                                          check=True).stdout)
    return Fleet(state, printed["ENDPOINT"], printed["TRAINING_KEY"], printed["PREDICTION_KEY"],
                 printed["PREDICTION_RESOURCE_ID"], name_values((state / "cluster.env").read_text()))


@contextmanager
def fleet_of_own() -> Iterator[Fleet]:
    with tempfile.TemporaryDirectory(prefix="ocv-bench-fleet-") as folder:
        environment = dict(os.environ, OCV_CLUSTER_DIR=folder)
        started = time.perf_counter()
        up = subprocess.run([str(CLUSTER), "up"], env=environment, capture_output=True, text=True, timeout=600)
        if up.returncode != 0:
            sys.exit(f"bench: scripts/cluster.sh up failed:\n{up.stderr[-3000:]}")
        print(f"fleet up in {time.perf_counter() - started:.0f} s")
        try:
            yield attach(Path(folder))
        finally:
            subprocess.run([str(CLUSTER), "down"], env=environment, capture_output=True, timeout=600)


def photo(seed: int, size: tuple[int, int] = (320, 240)) -> bytes:
    """A distinct JPEG per seed: a background and a dozen squares of random colours."""
    rng = random.Random(seed)
    picture = Image.new("RGB", size, (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    for _ in range(12):
        x, y = rng.randrange(size[0] - 30), rng.randrange(size[1] - 30)
        picture.paste((rng.randrange(256), rng.randrange(256), rng.randrange(256)), (x, y, x + 30, y + 30))
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def files_body(batch: list[bytes], tag_ids: list[str] | None = None) -> dict:  # type: ignore[type-arg]
    return {"images": [{"name": f"{i}.jpg", "contents": base64.b64encode(data).decode(), **({"tagIds": tag_ids} if tag_ids else {})}
                       for i, data in enumerate(batch)]}


# ---------------------------------------------------------------------------------------------------------------
# uploads


@dataclass
class UploadLoad:
    seconds: float = 0.0
    images_sent: int = 0
    statuses: Counter = field(default_factory=Counter)  # type: ignore[type-arg]
    image_statuses: Counter = field(default_factory=Counter)  # type: ignore[type-arg]
    sent_hashes: set[str] = field(default_factory=set)

    @property
    def images_per_second(self) -> float:
        return self.images_sent / self.seconds


def upload_load(endpoint: str, key: str, project_id: str, *, clients: int, uploads: int, seed: int,
                duplicate_fraction: float = 0.1, max_batch: int = 64) -> UploadLoad:
    """``clients`` at once, each sending ``uploads`` images in batches of 1 to ``max_batch``; a share of each batch
    repeats images sent before (by this client or another), which must answer OKDuplicate."""
    rng = random.Random(seed)
    plans: list[list[list[bytes]]] = []
    shared: list[bytes] = []
    for client in range(clients):
        batches, left = [], uploads
        while left:
            size = min(left, rng.randint(1, max_batch))
            batch = []
            for i in range(size):
                if shared and rng.random() < duplicate_fraction:
                    batch.append(rng.choice(shared))
                else:
                    batch.append(photo(seed * 1_000_000 + client * 10_000 + uploads - left + i))
            shared.extend(batch[:2])
            batches.append(batch)
            left -= size
        plans.append(batches)
    result = UploadLoad(images_sent=clients * uploads)
    result.sent_hashes = {hashlib.sha256(data).hexdigest() for batches in plans for batch in batches for data in batch}
    lock = threading.Lock()

    def run(batches: list[list[bytes]]) -> None:
        with httpx.Client(base_url=f"{endpoint}{TRAINING_API}", headers={"Training-Key": key}, timeout=300) as client:
            for batch in batches:
                answer = client.post(f"/projects/{project_id}/images/files", json=files_body(batch))
                with lock:
                    result.statuses[answer.status_code] += 1
                    if answer.status_code in (200, 207):
                        result.image_statuses.update(image["status"] for image in answer.json()["images"])

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(run, plans))
    result.seconds = time.perf_counter() - started
    return result


def stored_hashes(endpoint: str, key: str, project_id: str) -> list[str]:
    """SHA-256 of every stored original of the project, as fetched back through its signed link."""
    with httpx.Client(base_url=f"{endpoint}{TRAINING_API}", headers={"Training-Key": key}, timeout=120) as client:
        listed: list[dict] = []  # type: ignore[type-arg]
        while page := client.get(f"/projects/{project_id}/images", params={"take": 256, "skip": len(listed)}).json():
            listed.extend(page)
        return [hashlib.sha256(client.get(image["originalImageUri"]).content).hexdigest() for image in listed]


def check_exactly_once(load: UploadLoad, hashes: list[str]) -> list[str]:
    """What is wrong with the outcome, if anything: a 5xx, an image stored twice or missing."""
    problems = []
    if any(status >= 500 for status in load.statuses):
        problems.append(f"server errors: {dict(load.statuses)}")
    if set(load.image_statuses) - {"OK", "OKDuplicate"}:
        problems.append(f"image statuses: {dict(load.image_statuses)}")
    if len(hashes) != len(set(hashes)):
        problems.append(f"{len(hashes) - len(set(hashes))} images stored twice")
    if set(hashes) != load.sent_hashes:
        problems.append(f"{len(load.sent_hashes - set(hashes))} sent images missing, {len(set(hashes) - load.sent_hashes)} unknown")
    return problems


# ---------------------------------------------------------------------------------------------------------------
# predictions, training


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def make_classifier_project(fleet: Fleet, name: str, seed: int, per_tag: int = 10) -> str:
    with fleet.client() as client:
        project_id = client.post("/projects", params={"name": name}).json()["id"]
        for tag_name in ("a", "b"):
            tag = client.post(f"/projects/{project_id}/tags", params={"name": tag_name}).json()["id"]
            batch = [photo(seed * 10_000 + (tag_name == "b") * 1000 + i) for i in range(per_tag)]
            answer = client.post(f"/projects/{project_id}/images/files", json=files_body(batch, [tag]))
            assert answer.status_code == 200, answer.text
    return str(project_id)


def train_all(fleet: Fleet, project_ids: list[str], timeout: float = 1800) -> float:
    """Seconds from queueing a training of each project at once until all are Completed."""
    with fleet.client() as client:
        started = time.perf_counter()
        iterations = {project_id: client.post(f"/projects/{project_id}/train", params={"forceTrain": "true"}).json()["id"]
                      for project_id in project_ids}
        while True:
            states = [client.get(f"/projects/{p}/iterations/{i}").json()["status"] for p, i in iterations.items()]
            if "Training" not in states:
                assert set(states) == {"Completed"}, states
                return time.perf_counter() - started
            assert time.perf_counter() - started < timeout, states
            time.sleep(0.5)


def prediction_load(fleet: Fleet, endpoint: str, project_id: str, name: str, *, clients: int, count: int) -> tuple[float, list[float], Counter]:  # type: ignore[type-arg]
    images = [photo(900_000 + i) for i in range(32)]
    latencies: list[float] = []
    statuses: Counter = Counter()  # type: ignore[type-arg]
    lock = threading.Lock()
    url = f"{endpoint}/customvision/v3.0/prediction/{project_id}/classify/iterations/{name}/image/nostore"

    def run(index: int) -> None:
        with httpx.Client(headers={"Prediction-Key": fleet.prediction_key}, timeout=120) as client:
            for n in range(index, count, clients):
                started = time.perf_counter()
                status = client.post(url, content=images[n % len(images)]).status_code
                with lock:
                    latencies.append(time.perf_counter() - started)
                    statuses[status] += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(run, range(clients)))
    return count / (time.perf_counter() - started), latencies, statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--uploads", type=int, default=1000, help="images each client uploads")
    parser.add_argument("--predictions", type=int, default=10_000)
    parser.add_argument("--training-projects", type=int, default=4)
    parser.add_argument("--warm-up", type=int, default=1000, help="predictions through nginx before RSS is first read")
    parser.add_argument("--parts", default="uploads,predictions,training", help="which measurements to run")
    parser.add_argument("--cluster-dir", type=Path, help="a fleet already up (scripts/cluster.sh up)")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; every part of the fleet shares them")
    with (fleet_of_own() if args.cluster_dir is None else _attached(args.cluster_dir)) as fleet:
        parts = set(args.parts.split(","))
        if "uploads" in parts:
            upload_figures(fleet, args)
        if "predictions" in parts:
            prediction_figures(fleet, args)
        if "training" in parts:
            training_figures(fleet, args)


def upload_figures(fleet: Fleet, args: argparse.Namespace) -> None:
    print(f"\n== uploads: {args.clients} clients x {args.uploads} images, batches of 1-64, ~10 % duplicates")
    for label, endpoint in (("2 replicas (nginx)", fleet.endpoint), ("1 replica", fleet.replica(1))):
        with fleet.client() as client:
            project_id = client.post("/projects", params={"name": f"bench-upload-{label[0]}-{time.time():.0f}"}).json()["id"]
        load = upload_load(endpoint, fleet.training_key, project_id, clients=args.clients, uploads=args.uploads, seed=len(label))
        problems = check_exactly_once(load, stored_hashes(fleet.endpoint, fleet.training_key, project_id))
        print(f"{label:20s} {load.images_per_second:7.1f} images/s  ({load.images_sent} in {load.seconds:.1f} s; "
              f"answers {dict(load.statuses)}; images {dict(load.image_statuses)}; "
              f"{len(load.sent_hashes)} distinct, {'each stored once' if not problems else 'PROBLEMS: ' + '; '.join(problems)})")


def prediction_figures(fleet: Fleet, args: argparse.Namespace) -> None:
    print(f"\n== predictions: {args.clients} clients, {args.predictions} predictions per setup")
    project_id = make_classifier_project(fleet, f"bench-predict-{time.time():.0f}", seed=1)
    train_all(fleet, [project_id])
    with fleet.client() as client:
        iteration = client.get(f"/projects/{project_id}/iterations").json()[0]["id"]
        client.post(f"/projects/{project_id}/iterations/{iteration}/publish",
                    params={"publishName": "bench", "predictionId": fleet.prediction_resource_id}).raise_for_status()
    # Warm both replicas at full concurrency (threads, allocator arenas, the model), then read RSS.
    prediction_load(fleet, fleet.endpoint, project_id, "bench", clients=args.clients, count=args.warm_up)
    before = {name: rss_kib(fleet.pid(name) or 0) for name in ("api1", "api2")}
    middle = {}
    results = {}
    for label, endpoint in (("1 replica", fleet.replica(1)), ("2 replicas (nginx)", fleet.endpoint)):
        rate, latencies, statuses = prediction_load(fleet, endpoint, project_id, "bench", clients=args.clients,
                                                    count=args.predictions)
        results[label] = rate
        middle[label] = {name: rss_kib(fleet.pid(name) or 0) for name in ("api1", "api2")}
        print(f"{label:20s} {rate:7.1f} predictions/s  p50 {1000 * percentile(latencies, 0.5):6.1f} ms  "
              f"p99 {1000 * percentile(latencies, 0.99):6.1f} ms  answers {dict(statuses)}")
    print(f"ratio 2 replicas / 1 replica: {results['2 replicas (nginx)'] / results['1 replica']:.2f}x")
    for name in ("api1", "api2"):
        after = middle["2 replicas (nginx)"][name]
        print(f"RSS {name}: {before[name] / 1024:.0f} MiB after the warm-up, {middle['1 replica'][name] / 1024:.0f} MiB "
              f"after the 1-replica run, {after / 1024:.0f} MiB at the end ({100 * (after - before[name]) / before[name]:+.1f} %)")


def training_figures(fleet: Fleet, args: argparse.Namespace) -> None:
    print(f"\n== training: {args.training_projects} projects at once")
    timings = {}
    for label in ("2 workers", "1 worker"):
        projects = [make_classifier_project(fleet, f"bench-train-{label[0]}-{i}-{time.time():.0f}", seed=100 + 10 * len(label) + i,
                                            per_tag=15) for i in range(args.training_projects)]
        if label == "1 worker":
            fleet.part("stop", "worker2")
        try:
            timings[label] = train_all(fleet, projects)
        finally:
            if label == "1 worker":
                fleet.part("start", "worker2")
        print(f"{label:20s} {timings[label]:7.1f} s until all {args.training_projects} are Completed")
    print(f"ratio 1 worker / 2 workers: {timings['1 worker'] / timings['2 workers']:.2f}x")


@contextmanager
def _attached(state: Path) -> Iterator[Fleet]:
    yield attach(state)


if __name__ == "__main__":
    main()
