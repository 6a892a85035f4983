"""What the hardening costs and buys, measured on a live ``ocv serve`` (issue 9).

1. Decode budget, memory: 20 concurrent requests of 64 maximal PNGs (10240 x 5120, ~60 KB each on the wire, 157 MB
   each decoded): the server's peak RSS with the default budget, and how each request was answered.
2. Decode budget, throughput: the same real photos (../shared/data/cls_hymenoptera, batches of 64, 4 clients at once)
   uploaded with the default budget and with a budget too large to ever bind, in the same run: images/s and ratio.
3. Slow clients: GET /domains latency (p50 / p99 / max over 3 s) alone, and beside 200 uploads that promised 5 MB
   and stalled.

    .venv/bin/python bench/hardening.py [--skip-memory]
"""

from __future__ import annotations

import argparse
import base64
import io
import socket
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import TRAINING_API, ocv_server, percentile  # noqa: E402

KEY = "bench-hardening-key"
PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "cls_hymenoptera"
UNBOUNDED = {"OCV_DECODE_BUDGET_MEGAPIXELS": "1000000", "OCV_DECODE_WAIT_SECONDS": "600"}


def maximal_png(shade: int) -> bytes:
    picture = Image.new("L", (10240, 5120), shade % 256)
    picture.putpixel((0, 0), (shade // 256) % 256)
    buffer = io.BytesIO()
    picture.save(buffer, "PNG", compress_level=9)
    return buffer.getvalue()


def new_project(client: httpx.Client, name: str) -> str:
    return str(client.post(f"{TRAINING_API}/projects", params={"name": name}).json()["id"])


def files_body(contents: list[bytes]) -> dict:  # type: ignore[type-arg]
    return {"images": [{"name": f"{i}.img", "contents": base64.b64encode(data).decode()} for i, data in enumerate(contents)]}


def memory(root: Path) -> None:
    with ocv_server(root / "memory", root / "memory.log", training_key=KEY) as server:
        client = httpx.Client(base_url=server.endpoint, headers={"Training-Key": KEY}, timeout=1800)
        project = new_project(client, "memory")
        batches = [files_body([maximal_png(r * 64 + i) for i in range(64)]) for r in range(20)]
        before = server.peak_rss_kib()[0]
        started = time.perf_counter()
        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(lambda body: client.post(f"{TRAINING_API}/projects/{project}/images/files", json=body), batches))
        seconds = time.perf_counter() - started
        peak, processes = server.peak_rss_kib()
        codes = {code: sum(a.status_code == code for a in answers) for code in sorted({a.status_code for a in answers})}
        stored = client.get(f"{TRAINING_API}/projects/{project}/images/count").json()
        print(f"decode budget, memory: 20 x 64 maximal PNGs in {seconds:.0f} s; answers {codes}; {stored} images stored; "
              f"peak RSS {peak / 1024:.0f} MiB ({processes} processes; {before / 1024:.0f} MiB before the uploads)")


def throughput(root: Path, name: str, settings: dict[str, str]) -> float:
    photos = sorted(p for p in PHOTOS.rglob("*.jpg"))
    batches = [[p.read_bytes() for p in photos[i:i + 64]] for i in range(0, len(photos), 64)]
    with ocv_server(root / name, root / f"{name}.log", training_key=KEY, settings=settings) as server:
        client = httpx.Client(base_url=server.endpoint, headers={"Training-Key": KEY}, timeout=600)
        project = new_project(client, name)
        started = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda b: client.post(f"{TRAINING_API}/projects/{project}/images/files", json=files_body(b)), batches))
        seconds = time.perf_counter() - started
        assert all(a.status_code in (200, 207) for a in answers), [a.status_code for a in answers]
        return len(photos) / seconds


def stalled_upload(endpoint: str, path: str) -> socket.socket:
    host, port = endpoint.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)))
    connection.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nTraining-Key: {KEY}\r\nContent-Type: application/octet-stream\r\n"
                       f"Content-Length: {5 << 20}\r\n\r\n".encode() + b"\xff\xd8")
    return connection


def latencies(client: httpx.Client, seconds: float = 3.0) -> list[float]:
    found = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        client.get(f"{TRAINING_API}/domains").raise_for_status()
        found.append(1000 * (time.perf_counter() - started))
    return found


def slow_clients(root: Path) -> None:
    with ocv_server(root / "slow", root / "slow.log", training_key=KEY) as server:
        client = httpx.Client(base_url=server.endpoint, headers={"Training-Key": KEY}, timeout=60)
        project = new_project(client, "slow")
        alone = latencies(client)
        stalled = [stalled_upload(server.endpoint, f"{TRAINING_API}/projects/{project}/images") for _ in range(200)]
        beside = latencies(client)
        for connection in stalled:
            connection.close()
        for label, values in (("alone", alone), ("beside 200 stalled uploads", beside)):
            print(f"GET /domains {label}: p50 {percentile(values, 0.5):.1f} ms, p99 {percentile(values, 0.99):.1f} ms, "
                  f"max {max(values):.1f} ms over {len(values)} requests")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-memory", action="store_true", help="leave out the 20 x 64 maximal PNG run (minutes)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ocv-bench-hardening-") as directory:
        root = Path(directory)
        slow_clients(root)
        if not PHOTOS.exists():
            print(f"throughput: {PHOTOS} is absent; skipped")
        else:
            unbounded = throughput(root, "unbounded", UNBOUNDED)
            bounded = throughput(root, "bounded", {})
            print(f"decode budget, throughput: {bounded:.1f} images/s with the default budget, {unbounded:.1f} without "
                  f"(ratio {bounded / unbounded:.2f})")
        if not args.skip_memory:
            memory(root)


if __name__ == "__main__":
    main()
