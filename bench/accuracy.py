"""Few-shot accuracy benchmark: which backbone setup the non-compact domains should use.

    .venv/bin/python bench/accuracy.py [--seeds 0,1,2] [--shots 5,10] [--max-test-per-class 200]
                                       [--threads 2] [--cache-dir /tmp/ocv_accuracy_cache]

For cls_flowers5_128px and cls_hymenoptera (train/ and val/ pooled), each seed and each shot
count k: k training images per class are drawn (seeded; the 5-shot set is the first half of
the 10-shot set, so shot counts are paired), and top-1 accuracy is measured on the remaining
images. Every setup sees the same splits, beside a plain baseline in the same run:
scikit-learn LogisticRegression(C=1, max_iter=1000) on L2-normalised Lite0 centre-crop
embeddings. The candidates use the service's head (``TagClassifier``, C by inner CV):

    lite0 / lite1 / lite2     one centre crop (the ImageNet evaluation preprocessing)
    <best>+flip               mean embedding of the centre crop and of its mirror image
    <best>+flip+full          ... and of the whole image squashed to the input size (no crop)
    lite0+flip                the cheap backbone with the same flip averaging
    lite0|lite2               concatenation of the two L2-normalised centre-crop embeddings
    advanced                  trainingType=Advanced: lite2 fine-tuned on the training images
                              (``ml.finetune.fine_tune`` with the service's settings), judged on
                              the same test images; skip it with --no-advanced (it takes ~20 min)

``<best>`` is the single-crop backbone with the highest mean accuracy over both datasets and
both shot counts. The final choice is also one global choice over that same mean: no
per-dataset switch, nothing tuned on one dataset's test images.

The evaluation pool of a class larger than ``--max-test-per-class`` + the largest shot count
is a fixed random subset of that size (the same for every seed and setup; training images are
then drawn from the rest of the class); smaller classes are evaluated on all their remaining
images. ``--max-test-per-class 0`` evaluates on everything (about 3x the embedding time).

Images are decoded the way the service decodes uploads (``imaging.decode.load_rgb``: EXIF
orientation, size limits); files it rejects are skipped and counted. Embeddings are cached per
(backbone, view) in ``<cache-dir>/embeddings/*.npz``, keyed by file path and mtime, so reruns
only train heads. ``ms/img batched`` is the first pass's cost per image in batches of 32
(decode + preprocess + forward); ``p50 1 img`` is the latency of one image at a time (read +
decode as prediction decodes + preprocess + one forward call holding all of the setup's views; head excluded, it is
one matrix product; median over 20 hymenoptera photos of each one's best of 5, the setups
taking turns image by image), measured in every run. This machine is shared: timings are noisy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from opencustomvision.imaging.decode import ImageRejected, load_rgb
from opencustomvision.ml import Backbone
from opencustomvision.ml.heads import TagClassifier, l2_normalise
from opencustomvision.ml.preprocess import (
    INPUT_MEAN,
    INPUT_STD,
    preprocess_batch,
    resized_short_side,
)

DATA_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DATASETS: dict[str, str] = {"flowers5": "cls_flowers5_128px", "hymenoptera": "cls_hymenoptera"}
POOL_SEED = 20_240_601  # fixes the evaluation subsets; independent of the training seeds
CACHE_FORMAT = "1"  # bump to invalidate cached embeddings (e.g. when preprocessing changes)
BATCH = 32
GOAL_POINTS = 3.0

L0, L1, L2 = "efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"
SHORT = {L0: "lite0", L1: "lite1", L2: "lite2"}


# --- data -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    path: Path
    label: int


def list_dataset(root: Path) -> tuple[list[str], list[Item], list[str]]:
    """Classes (folder names), decodable files, and the skipped files with why.

    The class of a file is its parent folder's name (so hymenoptera's train/ and val/ pool)."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    classes = sorted({p.parent.name for p in files})
    items, skipped = [], []
    for path in files:
        try:
            load_rgb(path.read_bytes())
        except ImageRejected as exc:
            skipped.append(f"{path.relative_to(root)} ({exc})")
            continue
        items.append(Item(path, classes.index(path.parent.name)))
    return classes, items, skipped


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # indices into the dataset's items
    test: np.ndarray


def make_splits(
    labels: np.ndarray, seeds: Sequence[int], shots: Sequence[int], max_test: int
) -> tuple[dict[tuple[int, int], Split], bool]:
    """Split per (seed, shots), and whether any class's evaluation pool was subsampled."""
    most = max(shots)
    pool_rng = np.random.default_rng(POOL_SEED)
    pools, candidates, capped = [], [], False
    for label in np.unique(labels):
        members = pool_rng.permutation(np.flatnonzero(labels == label))
        if max_test and members.size - most > max_test:
            pools.append(members[:max_test])
            candidates.append(members[max_test:])
            capped = True
        else:
            pools.append(members)
            candidates.append(members)
    splits = {}
    for seed in seeds:
        rng = np.random.default_rng(seed)
        drawn = [rng.choice(c, size=most, replace=False) for c in candidates]
        for k in shots:
            train = np.concatenate([d[:k] for d in drawn])
            test = np.setdiff1d(np.concatenate(pools), train)
            splits[seed, k] = Split(np.sort(train), test)
    return splits, capped


# --- embeddings -------------------------------------------------------------------------------


def view_batch(images: Sequence[Image.Image], view: str, size: int) -> np.ndarray:
    """The float32 (N, 3, size, size) input of one view of each image."""
    if view == "centre":
        return preprocess_batch(images, size)
    if view == "flip":  # the centre crop of the mirror image is the mirror of the centre crop
        return preprocess_batch([im.transpose(Image.Transpose.FLIP_LEFT_RIGHT) for im in images], size)
    if view == "full":  # whole image, aspect ratio not kept, nothing cropped away
        batch = np.empty((len(images), 3, size, size), np.float32)
        for i, im in enumerate(images):
            pixels = np.asarray(im.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)
            batch[i] = ((pixels - INPUT_MEAN) / INPUT_STD).transpose(2, 0, 1)
        return batch
    raise ValueError(view)


class Embeddings:
    """Per-(backbone, view) embeddings, computed once and cached in an .npz keyed by path + mtime."""

    def __init__(self, cache_dir: Path, threads: int) -> None:
        self.cache_dir = cache_dir
        self.threads = threads
        self._backbones: dict[str, Backbone] = {}
        # (images, seconds) embedded per (backbone, view) in this run; empty when all came from the cache
        self.batched: dict[tuple[str, str], tuple[int, float]] = {}

    def backbone(self, name: str) -> Backbone:
        if name not in self._backbones:
            self._backbones[name] = Backbone.load(name, self.cache_dir / "models", threads=self.threads)
        return self._backbones[name]

    def get(self, name: str, view: str, paths: Sequence[Path]) -> np.ndarray:
        file = self.cache_dir / "embeddings" / f"{name}__{view}__v{CACHE_FORMAT}.npz"
        keys = [f"{p.resolve()}|{p.stat().st_mtime_ns}" for p in paths]
        cached: dict[str, np.ndarray] = {}
        if file.is_file():
            with np.load(file, allow_pickle=False) as npz:
                cached = dict(zip(npz["keys"].tolist(), npz["vectors"]))
        missing = [i for i, key in enumerate(keys) if key not in cached]
        if missing:
            backbone = self.backbone(name)
            started = time.perf_counter()
            for start in range(0, len(missing), BATCH):
                chunk = missing[start : start + BATCH]
                images = [load_rgb(paths[i].read_bytes()) for i in chunk]
                vectors = backbone.embed(view_batch(images, view, backbone.spec.input_size))
                for i, vector in zip(chunk, vectors):
                    cached[keys[i]] = vector
            elapsed = time.perf_counter() - started
            done, spent = self.batched.get((name, view), (0, 0.0))
            self.batched[name, view] = (done + len(missing), spent + elapsed)
            print(
                f"  embedded {len(missing):5d} images with {SHORT[name]}/{view}: "
                f"{len(missing) / elapsed:6.1f} img/s ({1000 * elapsed / len(missing):.1f} ms/img, "
                f"decode + preprocess + forward, batches of {BATCH})",
                flush=True,
            )
            file.parent.mkdir(parents=True, exist_ok=True)
            tmp = file.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(tmp, keys=np.array(list(cached), dtype=str), vectors=np.stack(list(cached.values())))
            os.replace(tmp, file)
        else:
            print(f"  {SHORT[name]}/{view}: {len(keys)} embeddings from cache", flush=True)
        return np.stack([cached[key] for key in keys]).astype(np.float32)


# --- setups -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    name: str
    parts: tuple[tuple[str, str], ...]  # (backbone, view)
    combine: str  # "mean": average the views' embeddings; "concat": L2-normalise each, concatenate

    def features(self, table: dict[tuple[str, str], np.ndarray]) -> np.ndarray:
        arrays = [table[part] for part in self.parts]
        if self.combine == "mean":
            return np.mean(arrays, axis=0)
        return np.hstack([l2_normalise(a) for a in arrays])

    def embed_one(self, emb: Embeddings, data: bytes) -> np.ndarray:
        """What serving one image would cost: decoded as prediction decodes (a JPEG at the reduced
        scale the largest input allows), then per backbone one forward call over all its views."""
        sizes = [emb.backbone(b).spec.input_size for b, _ in self.parts]
        image = load_rgb(data, min_short_side=resized_short_side(max(sizes)))
        out = []
        for name in dict.fromkeys(b for b, _ in self.parts):
            backbone = emb.backbone(name)
            views = [v for b, v in self.parts if b == name]
            batch = np.concatenate([view_batch([image], v, backbone.spec.input_size) for v in views])
            out.append(backbone.embed(batch).mean(axis=0))
        return np.concatenate(out)


def single(name: str) -> Setup:
    return Setup(SHORT[name], ((name, "centre"),), "mean")


def flipped(name: str, full: bool = False) -> Setup:
    views = ("centre", "flip", "full") if full else ("centre", "flip")
    return Setup(f"{SHORT[name]}+{'+'.join(views[1:])}", tuple((name, v) for v in views), "mean")


# --- evaluation -------------------------------------------------------------------------------


def one_hot(labels: np.ndarray, n: int) -> np.ndarray:
    return np.eye(n, dtype=np.int64)[labels]


def accuracy_of(fit_predict: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray], X, labels, split) -> float:
    predicted = fit_predict(X[split.train], labels[split.train], X[split.test])
    return float(np.mean(predicted == labels[split.test]))


def baseline_fit_predict(X_train, y_train, X_test) -> np.ndarray:
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        model = LogisticRegression(C=1.0, max_iter=1000).fit(l2_normalise(X_train), y_train)
    return model.predict(l2_normalise(X_test))


def head_fit_predict(n_classes: int, chosen_C: list[float]):
    tag_ids = [str(i) for i in range(n_classes)]

    def run(X_train, y_train, X_test) -> np.ndarray:
        head = TagClassifier("Multiclass").fit(X_train, one_hot(y_train, n_classes), tag_ids)
        chosen_C.append(head.C_)
        return np.argmax(head.predict_proba(X_test), axis=1)

    return run


def fmt(values: Sequence[float]) -> str:
    values = [100 * v for v in values]
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):5.1f}±{spread:3.1f}"


def fmt_delta(values: Sequence[float]) -> str:
    values = [100 * v for v in values]
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):+5.1f}±{spread:3.1f}"


def latency_p50(setups: Sequence[Setup], emb: Embeddings, paths: Sequence[Path], repeats: int) -> dict[str, float]:
    """Per setup: median over images of each image's best of ``repeats`` single-image runs.

    The setups take turns image by image, so a burst of load from another process hits them
    alike; the best of a few tries is the closest to the uncontended cost."""
    for setup in setups:  # warm-up: sessions loaded, first-run allocations done
        setup.embed_one(emb, paths[0].read_bytes())
    best = {s.name: [np.inf] * len(paths) for s in setups}
    for _ in range(repeats):
        for i, path in enumerate(paths):
            for setup in setups:
                started = time.perf_counter()
                setup.embed_one(emb, path.read_bytes())
                best[setup.name][i] = min(best[setup.name][i], time.perf_counter() - started)
    return {name: 1000 * statistics.median(times) for name, times in best.items()}


def advanced_accuracies(data: dict, threads: int) -> dict[tuple[str, int], list[float]]:
    """Top-1 accuracy of Advanced training (fine-tuned lite2) per (dataset, shots), over seeds."""
    import torch

    from opencustomvision.ml.finetune import fine_tune

    torch.set_num_threads(threads)
    short_side = resized_short_side(260)
    out: dict[tuple[str, int], list[float]] = {}
    for name, d in data.items():
        n_classes = len(d["classes"])
        tag_ids = [str(i) for i in range(n_classes)]

        def load(i: int) -> Image.Image:
            return load_rgb(d["items"][i].path.read_bytes(), min_short_side=short_side)

        for (seed, k), split in d["splits"].items():
            started = time.perf_counter()
            train = [load(i) for i in split.train]
            tuned = fine_tune(L2, train, one_hot(d["labels"][split.train], n_classes), tag_ids, "Multiclass")
            trained = time.perf_counter() - started
            predicted = np.concatenate([
                np.argmax(tuned.predict_proba([load(i) for i in chunk]), axis=1)
                for chunk in np.array_split(split.test, max(1, len(split.test) // BATCH))
            ])
            accuracy = float(np.mean(predicted == d["labels"][split.test]))
            out.setdefault((name, k), []).append(accuracy)
            print(f"  advanced {name} seed {seed} {k} shots: {100 * accuracy:.1f}% "
                  f"(fine-tuned in {trained:.0f} s, {tuned.epochs_run} epochs)", flush=True)
    return out


# --- main -------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--shots", default="5,10")
    parser.add_argument("--max-test-per-class", type=int, default=200, help="0: no cap")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/ocv_accuracy_cache"))
    parser.add_argument("--latency-images", type=int, default=20)
    parser.add_argument("--latency-repeats", type=int, default=5)
    parser.add_argument("--no-advanced", action="store_true", help="skip the fine-tuned (Advanced) setup")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    shots = sorted(int(k) for k in args.shots.split(","))
    run_started = time.perf_counter()

    roots = {name: DATA_ROOT / folder for name, folder in DATASETS.items()}
    absent = [str(root) for root in roots.values() if not root.is_dir()]
    if absent:
        sys.exit(f"bench/accuracy.py: shared data not found: {', '.join(absent)} (expected under {DATA_ROOT})")

    print(f"few-shot top-1 accuracy; seeds {seeds}, shots {shots}, {args.threads} ORT threads, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    emb = Embeddings(args.cache_dir, args.threads)
    data = {}
    for name, root in roots.items():
        classes, items, skipped = list_dataset(root)
        labels = np.array([item.label for item in items])
        splits, capped = make_splits(labels, seeds, shots, args.max_test_per_class)
        needed = np.unique(np.concatenate([np.concatenate([s.train, s.test]) for s in splits.values()]))
        tests = {len(s.test) for s in splits.values()}
        print(f"{name}: {len(items)} images, classes {classes} "
              f"({', '.join(str(int(np.sum(labels == c))) for c in range(len(classes)))}); "
              f"skipped {len(skipped)}{': ' + '; '.join(skipped) if skipped else ''}")
        print(f"  test images per run: {min(tests)}-{max(tests)}"
              + (f" (evaluation pool capped at {args.max_test_per_class} per class, fixed seed {POOL_SEED})"
                 if capped else " (all remaining images)"))
        data[name] = {"classes": classes, "items": items, "labels": labels, "splits": splits, "needed": needed}

    tables: dict[str, dict[tuple[str, str], np.ndarray]] = {name: {} for name in data}

    def ensure(parts: Sequence[tuple[str, str]]) -> None:
        for part in parts:
            for name, d in data.items():
                if part not in tables[name]:
                    paths = [d["items"][i].path for i in d["needed"]]
                    full = np.zeros((len(d["items"]), emb.backbone(part[0]).spec.embedding_dim), np.float32)
                    full[d["needed"]] = emb.get(part[0], part[1], paths)
                    tables[name][part] = full

    # results[setup][(dataset, k)] = accuracies over seeds; chosen C of the head per setup
    results: dict[str, dict[tuple[str, int], list[float]]] = {}
    chosen: dict[str, list[float]] = {}

    def evaluate(setup: Setup | None) -> None:
        key = "baseline" if setup is None else setup.name
        if key in results:
            return
        ensure(((L0, "centre"),) if setup is None else setup.parts)
        results[key], chosen[key] = {}, []
        for name, d in data.items():
            X = tables[name][(L0, "centre")] if setup is None else setup.features(tables[name])
            run = baseline_fit_predict if setup is None else head_fit_predict(len(d["classes"]), chosen[key])
            for (seed, k), split in d["splits"].items():
                results[key].setdefault((name, k), []).append(accuracy_of(run, X, d["labels"], split))

    def overall(key: str) -> float:
        return statistics.fmean(statistics.fmean(v) for v in results[key].values())

    setups: list[Setup] = [single(L0), single(L1), single(L2)]
    evaluate(None)
    for setup in setups:
        evaluate(setup)
    best = max((L0, L1, L2), key=lambda n: overall(SHORT[n]))
    print(f"best single-crop backbone by the mean over both datasets and shot counts: {SHORT[best]}")
    extra = [flipped(best), flipped(best, full=True), flipped(L0), Setup("lite0|lite2", ((L0, "centre"), (L2, "centre")), "concat")]
    for setup in extra:
        if setup.name not in {s.name for s in setups}:
            setups.append(setup)
            evaluate(setup)

    if not args.no_advanced:
        results["advanced"], chosen["advanced"] = advanced_accuracies(data, args.threads), []

    # latency of one image at a time, on hymenoptera photos (real sizes, decode included)
    hym = data["hymenoptera"]
    lat_paths = [hym["items"][i].path for i in np.linspace(0, len(hym["items"]) - 1, args.latency_images).astype(int)]
    latency = latency_p50(setups, emb, lat_paths, args.latency_repeats)
    latency["baseline"] = latency[SHORT[L0]]
    latency["advanced"] = latency[SHORT[L2]]  # the same network, other weights

    # ---- report
    names = [s.name for s in setups] + [key for key in ("advanced",) if key in results]
    cells = sorted(results["baseline"], key=lambda c: (list(data).index(c[0]), c[1]))
    print()
    print("Top-1 accuracy (%), mean±std over seeds " + ",".join(map(str, seeds))
          + "; Δ = paired difference to the baseline, same splits")
    header = f"{'dataset':<12} {'shots':>5}  {'setup':<22} {'accuracy':>10}  {'Δ baseline':>10}"
    print(header)
    print("-" * len(header))
    for dataset, k in cells:
        base = results["baseline"][dataset, k]
        print(f"{dataset:<12} {k:>5}  {'baseline (LR C=1, lite0)':<22} {fmt(base):>10}  {'':>10}")
        for key in names:
            acc = results[key][dataset, k]
            print(f"{'':<12} {'':>5}  {key:<22} {fmt(acc):>10}  {fmt_delta([a - b for a, b in zip(acc, base)]):>10}")
    print()
    print("Summary: mean over the 4 (dataset, shots) cells; cost per image on this machine")
    header = (f"{'setup':<24} {'mean acc':>8} {'Δ base':>7} {'min Δ cell':>10} "
              f"{'ms/img batched':>14} {'p50 1 img':>9} {'head C (median)':>15}")
    print(header)
    print("-" * len(header))
    base_mean = overall("baseline")
    parts_of = {"baseline": ((L0, "centre"),), "advanced": ((L2, "centre"),), **{s.name: s.parts for s in setups}}
    for key in ["baseline"] + names:
        parts = parts_of[key]
        batched = [emb.batched.get(p) for p in parts]
        batched_txt = (f"{sum(1000 * t / n for n, t in batched):.1f}" if all(b is not None for b in batched)
                       else "cached")
        min_delta = min(
            statistics.fmean(results[key][c]) - statistics.fmean(results["baseline"][c]) for c in cells
        )
        c_txt = f"{statistics.median(chosen[key]):.3g}" if chosen[key] else "1 (fixed)"
        label = "baseline (LR C=1, lite0)" if key == "baseline" else key
        print(f"{label:<24} {100 * overall(key):8.1f} {100 * (overall(key) - base_mean):+7.1f} "
              f"{100 * min_delta:+10.1f} {batched_txt:>14} {latency[key]:9.1f} {c_txt:>15}")

    winner = max(names, key=overall)
    gain = 100 * (overall(winner) - base_mean)
    print()
    print(f"most accurate setup (one global choice, mean over both datasets and both shot counts): {winner} "
          f"({100 * overall(winner):.1f}%, {gain:+.1f} points vs baseline; goal +{GOAL_POINTS:g}: "
          f"{'met' if gain >= GOAL_POINTS else 'NOT met'})")
    print(f"{winner} against each other setup, paired over all {sum(len(v) for v in results[winner].values())} "
          "(dataset, shots, seed) runs: mean Δ ± std, runs won/tied/lost")
    for key in ["baseline"] + [name for name in names if name != winner]:
        diffs = [100 * (a - b) for c in cells for a, b in zip(results[winner][c], results[key][c])]
        won, lost = sum(d > 1e-9 for d in diffs), sum(d < -1e-9 for d in diffs)
        print(f"  vs {key:<18} {statistics.fmean(diffs):+5.2f} ± {statistics.stdev(diffs):4.2f}   "
              f"{won}/{len(diffs) - won - lost}/{lost}")
    fastest = max((name for name in names if latency[name] <= 20.0), key=overall, default=None)
    if fastest is not None:
        print(f"most accurate setup with p50 ≤ 20 ms here: {fastest} ({100 * overall(fastest):.1f}%, "
              f"{100 * (overall(fastest) - base_mean):+.1f} points, p50 {latency[fastest]:.1f} ms)")
    print(f"total run time {time.perf_counter() - run_started:.0f} s; load average now {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
