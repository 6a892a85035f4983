"""Object detection benchmark: accuracy, training time and latency of the detector.

    .venv/bin/python bench/detection.py [--datasets quickstart,raccoon,bccd] [--threads 1]
                                        [--time-budget 240] [--input-size 320] [--views 8]
                                        [--max-epochs 60] [--checkpoints 3] [--latency-runs 50]
                                        [--cache-dir /tmp/ocv_detection_cache]

Data (``../shared/data``, skipped with a message when absent):

    quickstart  customvision-samples/ObjectDetection: 20 fork + 20 scissors photos, one box each;
                the check is that the top prediction on Images/test/test_image.jpg is a fork
                with a tight box (IoU with a hand-drawn reference box is printed)
    raccoon     od_raccoon: train on data/train_labels.csv (160 images), mAP@0.5 on
                data/test_labels.csv (40). Goal: mAP@0.5 >= 0.75 in <= 5 minutes of training
    bccd        od_bccd: train on ImageSets/Main/trainval (292), AP@0.5 per class on test (72);
                zero-area boxes (two real bad labels) are dropped and counted

Per dataset it prints the training curve (mean loss per epoch; mAP on the test split at
``--checkpoints`` evenly spaced epochs, the last one included; checkpoint time is not charged
to training), the training time (feature caching + epochs + export), and the AP, precision
and recall per tag at probability 0.5 / IoU 0.5 (Custom Vision's GetIterationPerformance).

Latency (``--latency-runs`` calls, p50, one image at a time): ``end to end`` = JPEG bytes ->
``load_rgb`` decode (as uploads are decoded) -> ``DetectionModel.predict`` (resize, backbone
ONNX, head ONNX, decode, NMS), on the 816x612 quickstart test photo; ``raw ONNX`` = the two
ONNX sessions on an already preprocessed input. ``--threads`` sets the ONNX Runtime threads
(the backbone while caching training features, and prediction); the torch part of training
always runs on one thread (see ``ObjectDetector``).

Images are decoded with ``imaging.decode.load_rgb`` (EXIF orientation applied), like uploads.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from defusedxml import ElementTree
from PIL import Image

from opencustomvision.imaging.decode import load_rgb
from opencustomvision.ml.detection import (
    DetectionModel,
    ObjectDetector,
    TrainingSettings,
    evaluate_detections,
)
from opencustomvision.ml.detection.boxes import ltwh_to_xyxy, pairwise_iou
from opencustomvision.ml.detection.features import preprocess_stretched

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
QUICKSTART = DATA / "customvision-samples" / "ObjectDetection"
# The fork in Images/test/test_image.jpg, drawn by hand (ltwh, normalised): the tightness reference.
QUICKSTART_TEST_FORK = (0.11, 0.255, 0.70, 0.545)

Box = tuple[float, float, float, float]


@dataclass
class Split:
    images: list[Image.Image]
    regions: list[list[tuple[int, Box]]]


@dataclass
class Dataset:
    name: str
    tags: list[str]
    train: Split
    test: Split | None
    note: str = ""


def read_image(path: Path) -> Image.Image:
    return load_rgb(path.read_bytes())


def load_quickstart() -> Dataset:
    regions_by_tag = json.loads((QUICKSTART / "regions.json").read_text())
    tags = sorted(regions_by_tag)
    split = Split([], [])
    for tag_index, tag in enumerate(tags):
        for stem, box in sorted(regions_by_tag[tag].items()):
            split.images.append(read_image(QUICKSTART / "Images" / tag / f"{stem}.jpg"))
            split.regions.append([(tag_index, tuple(box))])
    return Dataset("quickstart", tags, split, None)


def load_raccoon() -> Dataset:
    root = DATA / "od_raccoon"

    def split(csv_name: str) -> Split:
        boxes: dict[str, list[tuple[int, Box]]] = defaultdict(list)
        with open(root / "data" / csv_name, newline="") as fh:
            for row in csv.DictReader(fh):
                width, height = float(row["width"]), float(row["height"])
                x1, y1, x2, y2 = (float(row[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
                boxes[row["filename"]].append((0, (x1 / width, y1 / height, (x2 - x1) / width, (y2 - y1) / height)))
        names = sorted(boxes)
        images = [read_image(root / "images" / name) for name in names]
        for name, image, (_, box) in zip(names, images, (boxes[n][0] for n in names), strict=True):
            _check_size(name, image, root / "annotations" / name.replace(".jpg", ".xml"))
        return Split(images, [boxes[n] for n in names])

    return Dataset("raccoon", ["raccoon"], split("train_labels.csv"), split("test_labels.csv"))


def load_bccd() -> Dataset:
    root = DATA / "od_bccd"
    tags = ["RBC", "WBC", "Platelets"]
    dropped: list[str] = []

    def split(*list_names: str) -> Split:
        ids = [line.strip() for name in list_names for line in (root / "ImageSets" / "Main" / name).read_text().split()]
        result = Split([], [])
        for image_id in ids:
            tree = ElementTree.parse(root / "Annotations" / f"{image_id}.xml")
            width = float(tree.findtext("size/width"))
            height = float(tree.findtext("size/height"))
            regions = []
            for obj in tree.iterfind("object"):
                x1, y1, x2, y2 = (float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
                if x2 <= x1 or y2 <= y1:
                    dropped.append(f"{image_id} {obj.findtext('name')} ({x1:g},{y1:g},{x2:g},{y2:g})")
                    continue
                tag = tags.index(obj.findtext("name").strip())
                regions.append((tag, (x1 / width, y1 / height, (x2 - x1) / width, (y2 - y1) / height)))
            image = read_image(root / "JPEGImages" / f"{image_id}.jpg")
            if image.size != (width, height):
                raise ValueError(f"{image_id}: XML says {width}x{height}, the photo is {image.size}")
            result.images.append(image)
            result.regions.append(regions)
        return result

    train, test = split("train.txt", "val.txt"), split("test.txt")
    return Dataset("bccd", tags, train, test, note=f"dropped zero-area boxes: {dropped}")


def _check_size(name: str, image: Image.Image, xml_path: Path) -> None:
    tree = ElementTree.parse(xml_path)
    size = (int(tree.findtext("size/width")), int(tree.findtext("size/height")))
    if image.size != size:
        raise ValueError(f"{name}: annotated as {size}, the photo is {image.size}")


def mean_ap(model: DetectionModel, split: Split, tag_count: int) -> tuple[float, object]:
    predictions = [model.predict(image) for image in split.images]
    metrics = evaluate_detections(predictions, split.regions, tag_count, iou_threshold=0.5, probability_threshold=0.5)
    return metrics.mean_average_precision or 0.0, metrics


def train(dataset: Dataset, args: argparse.Namespace) -> tuple[ObjectDetector, float]:
    settings = TrainingSettings(views_per_image=args.views, max_epochs=args.max_epochs)
    detector = ObjectDetector(
        args.backbone,
        cache_dir=args.cache_dir,
        time_budget_seconds=args.time_budget,
        input_size=args.input_size,
        seed=args.seed,
        threads=args.threads,
        settings=settings,
    )
    paused = 0.0

    def on_epoch(report) -> None:  # type: ignore[no-untyped-def]
        nonlocal paused
        checkpoints = {round(report.planned_epochs * (k + 1) / args.checkpoints) for k in range(args.checkpoints)}
        line = (
            f"  epoch {report.epoch:3d}/{report.planned_epochs}  loss {report.loss:.4f}  "
            + "  ".join(f"{k} {v:.3f}" for k, v in report.loss_terms.items())
            + f"  t={report.seconds:6.1f}s"
        )
        if dataset.test is not None and report.epoch in checkpoints:
            started = time.perf_counter()
            value, _ = mean_ap(report.snapshot(), dataset.test, len(dataset.tags))
            line += f"  mAP@0.5 {value:.4f}"
            paused += time.perf_counter() - started
        print(line, flush=True)

    started = time.perf_counter()
    detector.fit(dataset.train.images, dataset.train.regions, len(dataset.tags), on_epoch=on_epoch)
    return detector, time.perf_counter() - started - paused


def report_dataset(dataset: Dataset, args: argparse.Namespace) -> DetectionModel:
    boxes = sum(len(r) for r in dataset.train.regions)
    print(f"\n== {dataset.name}: {len(dataset.train.images)} training images, {boxes} boxes, tags {dataset.tags}")
    if dataset.note:
        print(f"  {dataset.note}")
    detector, seconds = train(dataset, args)
    print(f"  training time {seconds:.1f} s (caching + epochs + export; checkpoint evaluations excluded)")
    blob = detector.to_bytes()
    model = DetectionModel.from_bytes(blob, args.cache_dir, threads=args.threads)
    print(f"  stored model {len(blob) / 1024:.0f} KiB")
    if dataset.test is not None:
        value, metrics = mean_ap(model, dataset.test, len(dataset.tags))
        print(f"  test: {len(dataset.test.images)} images, mAP@0.5 = {value:.4f}")
        for tag in metrics.per_tag:
            print(
                f"    {dataset.tags[tag.tag]:10s} AP@0.5 {tag.average_precision:.4f}  precision {tag.precision:.3f}  "
                f"recall {tag.recall:.3f}  (probability >= 0.5; {tag.ground_truth_count} boxes)"
            )
    return model


def quickstart_check(model: DetectionModel, tags: Sequence[str]) -> None:
    image = read_image(QUICKSTART / "Images" / "test" / "test_image.jpg")
    detections = model.predict(image)
    top = detections[0]
    iou = pairwise_iou(ltwh_to_xyxy([top.box]), ltwh_to_xyxy([QUICKSTART_TEST_FORK]))[0, 0]
    print(f"  test_image.jpg top: {tags[top.tag]} p={top.probability:.3f} box={tuple(round(v, 3) for v in top.box)}  IoU with reference fork {iou:.3f}")
    print(f"  next: {[(tags[d.tag], round(d.probability, 3)) for d in detections[1:4]]}")
    print(f"  quickstart check (top is fork, IoU >= 0.6 with the hand-drawn box): {'PASS' if tags[top.tag] == 'fork' and iou >= 0.6 else 'FAIL'}")


def latency(model: DetectionModel, runs: int) -> None:
    jpeg = (QUICKSTART / "Images" / "test" / "test_image.jpg").read_bytes()
    end_to_end = []
    for _ in range(runs + 5):
        started = time.perf_counter()
        model.predict(load_rgb(jpeg))
        end_to_end.append(time.perf_counter() - started)
    size = model.config.input_size
    batch = preprocess_stretched(load_rgb(jpeg), size)[None]
    raw = []
    for _ in range(runs + 5):
        started = time.perf_counter()
        model.run_networks(batch)
        raw.append(time.perf_counter() - started)
    decode = []
    for _ in range(runs):
        started = time.perf_counter()
        load_rgb(jpeg)
        decode.append(time.perf_counter() - started)
    p50 = lambda values: statistics.median(values[5:] if len(values) > runs else values) * 1000
    print(
        f"\n== latency, one 816x612 JPEG at a time, {runs} runs, p50: end to end {p50(end_to_end):.1f} ms "
        f"(of which decode {p50(decode):.1f} ms); raw ONNX (backbone + head, preprocessed input) {p50(raw):.1f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="quickstart,raccoon,bccd")
    parser.add_argument("--backbone", default="efficientnet-lite0")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--time-budget", type=float, default=240.0, help="seconds per training")
    parser.add_argument("--input-size", type=int, default=320)
    parser.add_argument("--views", type=int, default=TrainingSettings().views_per_image)
    parser.add_argument("--max-epochs", type=int, default=TrainingSettings().max_epochs)
    parser.add_argument("--checkpoints", type=int, default=3)
    parser.add_argument("--latency-runs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/ocv_detection_cache"))
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"shared data {DATA} is absent: nothing to benchmark", file=sys.stderr)
        return 1

    loaders = {"quickstart": load_quickstart, "raccoon": load_raccoon, "bccd": load_bccd}
    model = None
    for name in args.datasets.split(","):
        dataset = loaders[name]()
        trained = report_dataset(dataset, args)
        if name == "quickstart":
            quickstart_check(trained, dataset.tags)
        model = model or trained
    if model is not None and args.latency_runs:
        latency(model, args.latency_runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
