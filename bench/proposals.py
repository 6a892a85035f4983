"""Recall of GetImageRegionProposals' class-agnostic boxes on od_raccoon.

    .venv/bin/python bench/proposals.py [--split train|test] [--cache-dir /tmp/ocv_proposals_cache]

For each image of the split (``data/{split}_labels.csv``), the share of ground-truth boxes matched at
IoU >= 0.5 by one of the first k proposals, k in 1, 5, 10, 50; and the time per image (decode included).
The setup was chosen on the train split; the test split is the figure to report. Baseline in the same
run: the whole image as the only proposal.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from opencustomvision.imaging.decode import load_rgb
from opencustomvision.inference import DETECTION_DECODE_SIDE
from opencustomvision.ml.detection.boxes import ltwh_to_xyxy, pairwise_iou
from opencustomvision.ml.detection.features import FeatureExtractor
from opencustomvision.ml.detection.proposals import RegionProposer

RACCOON = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "od_raccoon"
TOP_K = (1, 5, 10, 50)


def ground_truth(split: str) -> dict[str, np.ndarray]:
    boxes: dict[str, list[tuple[float, float, float, float]]] = {}
    with open(RACCOON / "data" / f"{split}_labels.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            width, height = float(row["width"]), float(row["height"])
            boxes.setdefault(row["filename"], []).append(
                (float(row["xmin"]) / width, float(row["ymin"]) / height, float(row["xmax"]) / width, float(row["ymax"]) / height))
    return {name: np.array(found) for name, found in boxes.items()}


def recall(truth: dict[str, np.ndarray], proposals: dict[str, np.ndarray], k: int) -> float:
    matched = total = 0
    for name, boxes in truth.items():
        total += len(boxes)
        candidates = proposals[name][:k]
        if len(candidates):
            matched += int((pairwise_iou(boxes, candidates).max(axis=1) >= 0.5).sum())
    return matched / total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="test", choices=("train", "test"))
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/ocv_proposals_cache"))
    args = parser.parse_args()
    truth = ground_truth(args.split)
    proposer = RegionProposer(FeatureExtractor.load("efficientnet-lite0", args.cache_dir))
    proposals, seconds = {}, []
    for name in truth:
        data = (RACCOON / "images" / name).read_bytes()
        started = time.perf_counter()
        found = proposer.propose(load_rgb(data, min_short_side=DETECTION_DECODE_SIDE))
        seconds.append(time.perf_counter() - started)
        proposals[name] = ltwh_to_xyxy([p.box for p in found]) if found else np.empty((0, 4))
    whole = {name: np.array([[0.0, 0.0, 1.0, 1.0]]) for name in truth}
    boxes = sum(len(b) for b in truth.values())
    print(f"od_raccoon {args.split}: {len(truth)} images, {boxes} boxes; recall at IoU >= 0.5 among the first k proposals")
    print("  " + "  ".join(f"R@{k} {recall(truth, proposals, k):.2f}" for k in TOP_K)
          + f"   (baseline, whole image: {recall(truth, whole, 1):.2f})")
    print(f"  {statistics.median(seconds) * 1000:.1f} ms per image (median; decode + backbone + blobs), "
          f"{statistics.fmean(len(p) for p in proposals.values()):.1f} proposals per image")
    return 0


if __name__ == "__main__":
    sys.exit(main())
