"""Object detection benchmark: quality on every shared detection set, training time, latency.

    .venv/bin/python bench/detection.py [--datasets quickstart,raccoon,bccd,fruit] [--seeds 0]
                                        [--threads 1] [--checkpoints 0] [--latency-runs 50] [--views-per-image 8]
                                        [--curve raccoon,bccd --curve-scales 0.25,0.5,1,2]
                                        [--cache-dir /tmp/ocv_detection_cache]

Data (``../shared/data``, skipped with a message when absent). Every detection choice is judged on all
four together; the figure to compare is the mean over the sets:

    quickstart  customvision-samples/ObjectDetection: train on the 20 fork + 20 scissors photos; test on
                Images/test/test_image.jpg, whose fork is boxed by hand (QUICKSTART_TEST_FORK)
    raccoon     od_raccoon: train on data/train_labels.csv (160 images), test on data/test_labels.csv (40)
    bccd        od_bccd: train on ImageSets/Main/trainval (292), test on test (72); zero-area boxes (two
                real bad labels) are dropped and counted
    fruit       cv_ai102_od_fruit: train on tagged-images.json (23 images) and the ten untagged images with
                the regions the lab's learners draw in the portal (tests/data/ai102_od_fruit_portal_regions.json);
                test on test-detector/produce.jpg, its three fruit boxed by hand (FRUIT_TEST_BOXES)

Per set and seed: the training time (decoding excluded; feature caching + steps + export; checkpoint
evaluations excluded), the steps trained and whether the time cap cut them short, Custom Vision's
measures (VOC AP@0.5 per tag, precision / recall at probability 0.5), and COCO's (pycocotools:
mAP@[.5:.95], AP50, AP75, AP of small / medium / large objects). COCO's AP50 is printed beside our VOC
mAP@0.5 as a check of both (they differ only by interpolation: 101 recall points vs every point).

``--curve``: for each named set, train at ``--curve-scales`` times the data-chosen number of steps and
print mAP against training time (the trade ``trainingType`` / ``reservedBudgetInHours`` can make).

Latency (``--latency-runs`` calls, p50, one image at a time, the first set's model): ``end to end`` = JPEG
bytes -> ``load_rgb`` decode at the reduced scale prediction uses -> ``DetectionModel.predict``;
``raw ONNX`` = the two ONNX sessions on an already preprocessed input. ``--threads`` sets ONNX Runtime's
threads (caching training features, prediction); torch trains on one thread.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

from defusedxml import ElementTree
from PIL import Image

from opencustomvision.imaging.decode import load_rgb
from opencustomvision.inference import DETECTION_DECODE_SIDE
from opencustomvision.ml.detection import DetectionModel, ObjectDetector, evaluate_detections
from opencustomvision.ml.detection.coco_evaluation import coco_evaluation
from opencustomvision.ml.detection.features import preprocess_stretched
from opencustomvision.ml.detection.settings import TrainingSettings

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
QUICKSTART = DATA / "customvision-samples" / "ObjectDetection"
FRUIT = DATA / "cv_ai102_od_fruit"
FRUIT_PORTAL_REGIONS = ROOT / "tests" / "data" / "ai102_od_fruit_portal_regions.json"
# Hand-drawn boxes (ltwh, normalised) of the test photos, as in tests/test_sdk_detection.py.
QUICKSTART_TEST_FORK = (0.11, 0.255, 0.70, 0.545)
FRUIT_TEST_BOXES = {"banana": (0.0137, 0.3177, 0.4307, 0.4831), "orange": (0.4746, 0.2148, 0.2480, 0.3281),
                    "apple": (0.6426, 0.4583, 0.3516, 0.4427)}

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
    test: Split
    note: str = ""


@dataclass
class Result:
    dataset: str
    seed: int
    seconds: float
    steps: int
    capped: bool
    voc_map: float
    coco: object  # CocoMetrics
    per_tag: list[str]


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
    test = Split([read_image(QUICKSTART / "Images" / "test" / "test_image.jpg")], [[(tags.index("fork"), QUICKSTART_TEST_FORK)]])
    return Dataset("quickstart", tags, split, test)


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
        for name, image in zip(names, images, strict=True):
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


def load_fruit() -> Dataset:
    tags = sorted(FRUIT_TEST_BOXES)
    train = Split([], [])
    for folder, listing in (("images", FRUIT / "tagged-images.json"), ("untagged-images", FRUIT_PORTAL_REGIONS)):
        for item in json.loads(listing.read_text())["files"]:
            train.images.append(read_image(FRUIT / folder / item["filename"]))
            train.regions.append([(tags.index(b["tag"]), (b["left"], b["top"], b["width"], b["height"])) for b in item["tags"]])
    test = Split([read_image(FRUIT / "test-detector" / "produce.jpg")],
                 [[(tags.index(name), box) for name, box in FRUIT_TEST_BOXES.items()]])
    return Dataset("fruit", tags, train, test)


def _check_size(name: str, image: Image.Image, xml_path: Path) -> None:
    tree = ElementTree.parse(xml_path)
    size = (int(tree.findtext("size/width")), int(tree.findtext("size/height")))
    if image.size != size:
        raise ValueError(f"{name}: annotated as {size}, the photo is {image.size}")


def evaluate(model: DetectionModel, dataset: Dataset):  # type: ignore[no-untyped-def]
    predictions = [[(d.tag, d.probability, d.box) for d in model.predict(image)] for image in dataset.test.images]
    voc = evaluate_detections(predictions, dataset.test.regions, len(dataset.tags), iou_threshold=0.5, probability_threshold=0.5)
    coco = coco_evaluation(predictions, dataset.test.regions, [image.size for image in dataset.test.images], len(dataset.tags))
    return voc, coco


def make_detector(args: argparse.Namespace, seed: int, step_scale: float = 1.0) -> ObjectDetector:
    return ObjectDetector(args.backbone, cache_dir=args.cache_dir, time_budget_seconds=args.time_budget,
                          seed=seed, threads=args.threads, step_scale=step_scale,
                          settings=replace(TrainingSettings(), views_per_image=args.views_per_image))


def train_and_evaluate(dataset: Dataset, args: argparse.Namespace, seed: int, step_scale: float = 1.0,
                       checkpoints: int = 0, verbose: bool = True) -> tuple[Result, DetectionModel]:
    detector = make_detector(args, seed, step_scale)
    paused = 0.0

    def on_epoch(report) -> None:  # type: ignore[no-untyped-def]
        nonlocal paused
        marks = {round(report.planned_epochs * (k + 1) / checkpoints) for k in range(checkpoints)} if checkpoints else set()
        line = (f"  epoch {report.epoch:3d}/{report.planned_epochs}  loss {report.loss:.4f}  "
                + "  ".join(f"{k} {v:.3f}" for k, v in report.loss_terms.items()) + f"  t={report.seconds:6.1f}s")
        if report.epoch in marks:
            started = time.perf_counter()
            voc, coco = evaluate(report.snapshot(), dataset)
            line += f"  mAP@0.5 {voc.mean_average_precision:.4f}  mAP@[.5:.95] {coco.map_50_95:.4f}"
            paused += time.perf_counter() - started
        if verbose and (marks or report.epoch == report.planned_epochs):
            print(line, flush=True)

    started = time.perf_counter()
    detector.fit(dataset.train.images, dataset.train.regions, len(dataset.tags), on_epoch=on_epoch)
    seconds = time.perf_counter() - started - paused
    model = DetectionModel.from_bytes(detector.to_bytes(), args.cache_dir, threads=args.threads)
    voc, coco = evaluate(model, dataset)
    per_tag = [f"{dataset.tags[t.tag]} {t.average_precision:.3f} / {t.precision:.2f} / {t.recall:.2f}"
               for t in voc.per_tag if t.average_precision is not None]
    schedule = detector.schedule_
    return Result(dataset.name, seed, seconds, schedule.steps_done, schedule.capped, voc.mean_average_precision or 0.0,
                  coco, per_tag), model


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def print_result(result: Result) -> None:
    coco = result.coco
    print(f"  seed {result.seed}: {result.seconds:.1f} s, {result.steps} steps{' (CAPPED by the time budget)' if result.capped else ''}; "
          f"VOC mAP@0.5 {result.voc_map:.4f} (COCO AP50 {_fmt(coco.map_50)}); COCO mAP@[.5:.95] {_fmt(coco.map_50_95)}, "
          f"AP75 {_fmt(coco.map_75)}, small/medium/large {_fmt(coco.map_small)} / {_fmt(coco.map_medium)} / {_fmt(coco.map_large)} "
          f"(objects {coco.objects_by_size[0]} / {coco.objects_by_size[1]} / {coco.objects_by_size[2]})", flush=True)
    print(f"    per tag, AP@0.5 / precision / recall at p >= 0.5: {'; '.join(result.per_tag)}", flush=True)


def summary(results: list[Result]) -> None:
    print("\n== summary (mean over seeds)\n")
    print("| set | training s | steps | VOC mAP@0.5 | COCO AP50 | mAP@[.5:.95] | AP small | AP medium | AP large |")
    print("|---|---|---|---|---|---|---|---|---|")
    by_set: dict[str, list[Result]] = defaultdict(list)
    for result in results:
        by_set[result.dataset].append(result)
    columns: dict[str, list[float]] = defaultdict(list)
    for name, rows in by_set.items():
        def mean(get) -> float | None:  # type: ignore[no-untyped-def]
            values = [get(r) for r in rows if get(r) is not None]
            return statistics.fmean(values) if values else None

        values = {"seconds": mean(lambda r: r.seconds), "voc": mean(lambda r: r.voc_map), "ap50": mean(lambda r: r.coco.map_50),
                  "coco": mean(lambda r: r.coco.map_50_95)}
        for key, value in values.items():
            columns[key].append(value)
        capped = sum(r.capped for r in rows)
        print(f"| {name} | {values['seconds']:.1f} | {statistics.fmean(r.steps for r in rows):.0f}{' capped ' + str(capped) if capped else ''} | "
              f"{values['voc']:.4f} | {_fmt(values['ap50'])} | {_fmt(values['coco'])} | {_fmt(mean(lambda r: r.coco.map_small))} | "
              f"{_fmt(mean(lambda r: r.coco.map_medium))} | {_fmt(mean(lambda r: r.coco.map_large))} |")
    if len(by_set) > 1:
        print(f"| **mean of {len(by_set)} sets** | {statistics.fmean(columns['seconds']):.1f} | | **{statistics.fmean(columns['voc']):.4f}** | "
              f"{statistics.fmean(columns['ap50']):.4f} | **{statistics.fmean(columns['coco']):.4f}** | | | |")


def latency(model: DetectionModel, runs: int) -> None:
    jpeg = (QUICKSTART / "Images" / "test" / "test_image.jpg").read_bytes()
    decode, end_to_end, raw = [], [], []
    batch = preprocess_stretched(load_rgb(jpeg, min_short_side=DETECTION_DECODE_SIDE), model.config.input_size)[None]
    for _ in range(5):
        model.predict(load_rgb(jpeg, min_short_side=DETECTION_DECODE_SIDE))
        model.run_networks(batch)
    for _ in range(runs):  # interleaved, so load changes touch all three alike
        started = time.perf_counter()
        model.predict(load_rgb(jpeg, min_short_side=DETECTION_DECODE_SIDE))
        end_to_end.append(time.perf_counter() - started)
        started = time.perf_counter()
        model.run_networks(batch)
        raw.append(time.perf_counter() - started)
        started = time.perf_counter()
        load_rgb(jpeg, min_short_side=DETECTION_DECODE_SIDE)
        decode.append(time.perf_counter() - started)
    p50 = lambda values: statistics.median(values) * 1000  # noqa: E731
    print(f"\n== latency, the 816x612 quickstart JPEG one at a time, {runs} runs, p50: end to end {p50(end_to_end):.1f} ms "
          f"(of which decode {p50(decode):.1f} ms); raw ONNX (backbone + head, preprocessed input) {p50(raw):.1f} ms")


LOADERS = {"quickstart": load_quickstart, "raccoon": load_raccoon, "bccd": load_bccd, "fruit": load_fruit}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="quickstart,raccoon,bccd,fruit")
    parser.add_argument("--backbone", default="efficientnet-lite0")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--time-budget", type=float, default=600.0, help="cap in seconds per training (reported when it bites)")
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds")
    parser.add_argument("--views-per-image", type=int, default=TrainingSettings().views_per_image,
                        help="augmented views cached per training image (the service's setting by default)")
    parser.add_argument("--checkpoints", type=int, default=0, help="test-set evaluations during training (a curve)")
    parser.add_argument("--curve", default="", help="sets to train at --curve-scales times the chosen steps")
    parser.add_argument("--curve-scales", default="0.25,0.5,1,2")
    parser.add_argument("--latency-runs", type=int, default=50)
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/ocv_detection_cache"))
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"shared data {DATA} is absent: nothing to benchmark", file=sys.stderr)
        return 1
    print(f"machine: {os.cpu_count()} CPUs, load average {', '.join(f'{v:.1f}' for v in os.getloadavg())} at start")

    seeds = [int(s) for s in args.seeds.split(",")]
    results: list[Result] = []
    first_model = None
    for name in filter(None, args.datasets.split(",")):
        dataset = LOADERS[name]()
        boxes = sum(len(r) for r in dataset.train.regions)
        print(f"\n== {name}: {len(dataset.train.images)} training images, {boxes} boxes, tags {dataset.tags}; "
              f"{len(dataset.test.images)} test images, {sum(len(r) for r in dataset.test.regions)} boxes")
        if dataset.note:
            print(f"  {dataset.note}")
        for seed in seeds:
            result, model = train_and_evaluate(dataset, args, seed, checkpoints=args.checkpoints)
            print_result(result)
            results.append(result)
            first_model = first_model or model
    if results:
        summary(results)

    for name in filter(None, args.curve.split(",")):
        dataset = LOADERS[name]()
        print(f"\n== curve, {name}: mAP against training time (seed {seeds[0]})\n")
        print("| step scale | steps | training s | VOC mAP@0.5 | mAP@[.5:.95] |")
        print("|---|---|---|---|---|")
        for scale in (float(s) for s in args.curve_scales.split(",")):
            result, _ = train_and_evaluate(dataset, args, seeds[0], step_scale=scale, verbose=False)
            print(f"| {scale:g} | {result.steps}{' (capped)' if result.capped else ''} | {result.seconds:.1f} | "
                  f"{result.voc_map:.4f} | {_fmt(result.coco.map_50_95)} |", flush=True)

    if first_model is not None and args.latency_runs:
        latency(first_model, args.latency_runs)
    print(f"\nmachine: load average {', '.join(f'{v:.1f}' for v in os.getloadavg())} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
