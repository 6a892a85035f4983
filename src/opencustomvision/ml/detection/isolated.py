"""Training a detector for an iteration in a child process, with a held-out fold for honest metrics.

The training job writes a work directory and runs ``python -m opencustomvision.ml.detection.isolated
WORKDIR``: torch never loads into the server, and the child ends if the server does.

    WORKDIR/request.json   {"backbone", "tag_count", "seconds_per_model", "held_out": [image index, ...], "cache_dir"}
    WORKDIR/regions.json   per image: [[tag index, left, top, width, height], ...] (normalised)
    WORKDIR/images/{i}.img the stored bytes of image i

The backbone's views of every image are cached once; a detector trained on them without the held-out
images records what it finds in each of them (``validation.json``: {"i": [[tag index, probability, left,
top, width, height], ...]}), while the detector to keep is trained beside it on every image (``model.bin``,
``DetectionModel.to_bytes``). ``report.json`` says how many steps each planned and trained, and whether
the time cap (``seconds_per_model``) cut one short.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np

from opencustomvision.imaging.decode import load_rgb
from opencustomvision.ml.child import exit_with_parent, run_module
from opencustomvision.ml.detection.detector import ObjectDetector

__all__ = ["held_out_images", "run_in_child"]

# One in five images (at least one) is kept out of the first detector to measure it.
_HELD_OUT_FRACTION = 0.2
_DETECTION_INPUT_SIDE = 1024  # images are decoded at least this large (the network sees 320 px)


def held_out_images(image_count: int, seed: int = 0) -> list[int]:
    """Indices of the images the evaluation detector never sees."""
    if image_count < 2:
        raise ValueError("a held-out evaluation needs at least 2 images")
    count = min(image_count - 1, max(1, round(image_count * _HELD_OUT_FRACTION)))
    return sorted(np.random.default_rng(seed).permutation(image_count)[:count].tolist())


def run_in_child(workdir: Path, *, timeout_seconds: float, should_stop: Callable[[], bool] | None = None) -> dict[str, object]:
    return run_module("opencustomvision.ml.detection.isolated", workdir, timeout_seconds=timeout_seconds,
                      what="detector training", should_stop=should_stop)


def main(workdir: Path) -> None:
    exit_with_parent()
    request = json.loads((workdir / "request.json").read_text())
    regions = [[(int(tag), (float(left), float(top), float(width), float(height))) for tag, left, top, width, height in image]
               for image in json.loads((workdir / "regions.json").read_text())]
    images = [load_rgb((workdir / "images" / f"{i}.img").read_bytes(), min_short_side=_DETECTION_INPUT_SIDE)
              for i in range(len(regions))]
    held_out = set(request["held_out"])

    def detector() -> ObjectDetector:
        return ObjectDetector(request["backbone"], cache_dir=Path(request["cache_dir"]),
                              time_budget_seconds=float(request["seconds_per_model"]))

    prepared = detector().prepare(images, regions, int(request["tag_count"]))

    def evaluate() -> tuple[ObjectDetector, dict[str, list[list[float]]]]:
        evaluator = detector().fit_prepared(prepared, [i for i in range(len(images)) if i not in held_out])
        return evaluator, {
            str(i): [[d.tag, d.probability, *d.box] for d in evaluator.predict(images[i])] for i in sorted(held_out)
        }

    # Side by side, torch on one thread each: on two cores both take the time of one.
    with ThreadPoolExecutor(1, thread_name_prefix="evaluator") as pool:
        evaluating = pool.submit(evaluate)
        final = detector().fit_prepared(prepared)
        evaluator, validation = evaluating.result()
    (workdir / "model.bin").write_bytes(final.to_bytes())
    (workdir / "validation.json").write_text(json.dumps(validation))
    (workdir / "report.json").write_text(json.dumps({
        "caching_seconds": round(prepared.views.seconds, 1), "evaluator": asdict(evaluator.schedule_),
        "final": asdict(final.schedule_), "dropped_regions": final.dropped_regions_}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
