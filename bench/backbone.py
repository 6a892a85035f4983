"""Backbone benchmark: export, file size and embedding speed of EfficientNet-Lite0/1/2, ONNX Runtime vs torch.

    .venv/bin/python bench/backbone.py [--models efficientnet-lite0,...] [--threads 2]
                                        [--batches 1,32] [--seconds 3] [--data DIR]

For each model: exports it to ONNX in a temporary folder (timed; the torch import is paid
before), prints the file size, then measures embedding throughput (images/s, model only, on
preprocessed batches) with ONNX Runtime and, as a same-run baseline, with the torch model in
eager mode (``torch.inference_mode``, same thread count), and their ratio. Also the
single-image latency (p50/p90) of ``Backbone.embed_images([image])``, preprocessing included,
and the preprocessing rate alone. Images are real photos from shared/data/cls_flowers5_128px
(128x128, so they are upscaled) when present, else synthetic noise. Throughputs are the best
of --repeats runs, with the process's CPU/wall ratio printed: the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from opencustomvision.ml import BACKBONES, Backbone, preprocess_batch
from opencustomvision.ml.backbone import build_torch_model, export_onnx, onnx_path

if TYPE_CHECKING:
    import torch

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cls_flowers5_128px"


def load_images(data: Path, count: int) -> tuple[list[Image.Image], str]:
    if data.is_dir():
        files = sorted(p for p in data.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
        if files:
            step = max(1, len(files) // count)  # spread over the classes
            images = []
            for path in files[::step][:count]:
                with Image.open(path) as image:
                    images.append(image.convert("RGB"))
            return images, f"{len(images)} real photos from {data}"
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)) for _ in range(count)]
    return images, f"{count} synthetic 400x300 noise images ({data} is absent)"


def throughput(
    run: Callable[[np.ndarray], object],
    batch: np.ndarray,
    batch_size: int,
    seconds: float,
    repeats: int,
) -> tuple[float, float]:
    """Best-of-``repeats`` images/s of ``run`` on ``batch_size`` slices of ``batch``, after a warm-up
    call, and the CPU time / wall time of that best run (about --threads when no other process
    competed for the cores; best-of-N because this machine is shared)."""
    chunks = [batch[i : i + batch_size] for i in range(0, len(batch) - batch_size + 1, batch_size)]
    run(chunks[0])
    best = (0.0, 0.0)
    for _ in range(repeats):
        done = 0
        cpu0 = _cpu_seconds()
        started = time.perf_counter()
        elapsed = 0.0
        while elapsed < seconds:
            run(chunks[(done // batch_size) % len(chunks)])
            done += batch_size
            elapsed = time.perf_counter() - started
        best = max(best, (done / elapsed, (_cpu_seconds() - cpu0) / elapsed))
    return best


def _torch_embedder(model: torch.nn.Module) -> Callable[[np.ndarray], object]:
    import torch

    def embed(chunk: np.ndarray) -> object:
        with torch.inference_mode():
            return model(torch.from_numpy(chunk))[0]

    return embed


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(BACKBONES))
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="intra-op threads, ONNX Runtime and torch",
    )
    parser.add_argument("--batches", default="1,32", help="batch sizes to measure")
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum time per measurement")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="measurements per figure; the best is kept",
    )
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    batch_sizes = [int(b) for b in args.batches.split(",")]

    import onnxruntime
    import torch  # imported up front so the export time below is the export alone

    torch.set_num_threads(args.threads)
    images, source = load_images(args.data, max(args.images, max(batch_sizes)))
    print(f"backbone bench: {source}")
    print(
        f"threads={args.threads}  cpus={os.cpu_count()}  onnxruntime {onnxruntime.__version__}  "
        f"torch {torch.__version__}  load average {os.getloadavg()[0]:.2f}"
    )

    header = f"{'model':<20}{'export s':>9}{'MB':>7}{'prep img/s':>11}"
    for b in batch_sizes:
        header += f"{f'ort b{b}':>9}{f'torch b{b}':>10}{'ratio':>7}"
    header += f"{'p50 ms':>8}{'p90 ms':>8}"
    rows: list[str] = []

    with tempfile.TemporaryDirectory(prefix="ocv-bench-") as tmp:
        cache = Path(tmp)
        for name in args.models.split(","):
            spec = BACKBONES[name]
            started = time.perf_counter()
            export_onnx(name, onnx_path(name, cache))
            export_s = time.perf_counter() - started
            backbone = Backbone.load(name, cache, threads=args.threads)
            size_mb = backbone.path.stat().st_size / 1e6

            started = time.perf_counter()
            batch = preprocess_batch(images, spec.input_size)
            prep_rate = len(images) / (time.perf_counter() - started)

            torch_embed = _torch_embedder(build_torch_model(name))

            row = f"{name:<20}{export_s:>9.1f}{size_mb:>7.1f}{prep_rate:>11.0f}"
            for b in batch_sizes:
                ort_rate, ort_cpu = throughput(backbone.embed, batch, b, args.seconds, args.repeats)
                torch_rate, torch_cpu = throughput(torch_embed, batch, b, args.seconds, args.repeats)
                row += f"{ort_rate:>9.1f}{torch_rate:>10.1f}{ort_rate / torch_rate:>7.2f}"
                print(
                    f"  {name} batch {b}: onnxruntime {ort_rate:.1f} img/s (cpu/wall {ort_cpu:.2f}), "
                    f"torch {torch_rate:.1f} img/s (cpu/wall {torch_cpu:.2f})",
                    flush=True,
                )

            backbone.embed_images(images[:1])
            latencies = []
            for image in (images * 2)[:100]:
                t0 = time.perf_counter()
                backbone.embed_images([image])
                latencies.append((time.perf_counter() - t0) * 1000)
            p50 = statistics.median(latencies)
            p90 = statistics.quantiles(latencies, n=10)[-1]
            row += f"{p50:>8.1f}{p90:>8.1f}"
            rows.append(row)
            print(
                f"  {name}: export {export_s:.1f} s, {size_mb:.1f} MB, latency p50 {p50:.1f} ms",
                flush=True,
            )
            del torch_embed, backbone

    print()
    print("embedding throughput in images/s (model only); ratio = onnxruntime / torch eager;")
    print("p50/p90: one image through embed_images (preprocessing included)")
    print(header)
    for row in rows:
        print(row)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
