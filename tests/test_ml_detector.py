"""The detector: target assignment, augmentation, the multi-scale backbone, training and prediction.

The multi-scale backbone is exported once per run (session fixture, ~20 s). Tests that train
a real detector are marked slow; the quickstart one trains for about 40 s on one core.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from opencustomvision.ml.detection import (
    DetectionModel,
    ModelFormatError,
    ObjectDetector,
    TrainingSettings,
)
from opencustomvision.ml.detection.augment import AugmentationSettings, random_view
from opencustomvision.ml.detection.settings import planned_steps
from opencustomvision.ml.detection.boxes import box_area, ltwh_to_xyxy, pairwise_iou
from opencustomvision.ml.detection.features import (
    FEATURE_NAMES,
    FEATURE_STRIDES,
    FeatureExtractor,
    preprocess_stretched,
)
from opencustomvision.ml.detection.targets import anchor_points, assign_targets_atss
from tests.conftest import shared_data

pytestmark = pytest.mark.db_independent

LITE0 = "efficientnet-lite0"
# The fork in the quickstart's test photo, drawn by hand (left, top, width, height).
TEST_FORK = (0.11, 0.255, 0.70, 0.545)


# --- anchor points and targets ---------------------------------------------------------------


def test_anchor_points_are_cell_centres_level_by_level() -> None:
    points = anchor_points(64, (16, 32))
    assert points.level_sizes == (16, 4)
    np.testing.assert_allclose(points.xy[:5], [[8, 8], [24, 8], [40, 8], [56, 8], [8, 24]])
    np.testing.assert_allclose(points.xy[16:], [[16, 16], [48, 16], [16, 48], [48, 48]])
    np.testing.assert_allclose(points.strides, [16] * 16 + [32] * 4)


@pytest.mark.parametrize(("side", "stride"), [(6, 8), (16, 8), (60, 16), (250, 32), (320, 32)])
def test_atss_puts_a_box_on_the_level_whose_anchors_fit_it(side: float, stride: float) -> None:
    # Anchors are 5 strides square (40, 80, 160 px at a 320 px input): the level whose anchors overlap the box
    # best holds its positives, with no size range fixed in advance.
    points = anchor_points(320, (8, 16, 32))
    centre = 160.3
    box = np.array([[centre - side / 2, centre - side / 2, centre + side / 2, centre + side / 2]])
    targets = assign_targets_atss(points, box, np.array([1]))
    positive = np.flatnonzero(targets.classes >= 0)
    assert len(positive) >= 1 and set(points.strides[positive]) == {stride}
    assert np.all(targets.classes[positive] == 1)
    xy = points.xy[positive]
    # Positives lie inside the box (a box too small to hold a point gets its best candidate alone) ...
    assert len(positive) == 1 or np.all((xy > box[0, :2]) & (xy < box[0, 2:]))
    # ... and their targets are the distances to the box's sides, in strides.
    decoded = np.concatenate([xy - targets.distances[positive, :2] * stride, xy + targets.distances[positive, 2:] * stride], axis=1)
    inside = (xy > box[0, :2]).all(axis=1) & (xy < box[0, 2:]).all(axis=1)
    np.testing.assert_allclose(decoded[inside], np.repeat(box, inside.sum(), axis=0), atol=1e-4)
    assert np.all(targets.distances[targets.classes < 0] == 0)


def test_atss_gives_a_contested_point_to_the_box_its_anchor_fits_best() -> None:
    points = anchor_points(320, (8, 16, 32))
    small, large = [100.0, 100.0, 160.0, 160.0], [90.0, 90.0, 250.0, 250.0]
    targets = assign_targets_atss(points, np.array([small, large]), np.array([0, 1]))
    assert set(points.strides[targets.classes == 0]) == {16.0}
    assert set(points.strides[targets.classes == 1]) == {32.0}
    assert assign_targets_atss(points, np.zeros((0, 4)), np.zeros(0, dtype=np.int64)).classes.max() == -1


# --- augmentation -------------------------------------------------------------------------


def _red_square_picture() -> tuple[Image.Image, np.ndarray]:
    image = Image.new("RGB", (400, 300), (40, 90, 200))
    ImageDraw.Draw(image).rectangle([100, 60, 219, 179], fill=(255, 0, 0))  # pixels 100..219 x 60..179
    return image, np.array([[100 / 400, 60 / 300, 220 / 400, 180 / 300]])


@pytest.mark.parametrize("seed", range(8))
def test_random_view_boxes_follow_the_pixels(seed: int) -> None:
    image, boxes = _red_square_picture()
    settings = AugmentationSettings(colour_jitter=0.0)
    view, moved, kept = random_view(image, boxes, 128, np.random.default_rng(seed), settings)
    assert view.size == (128, 128)
    pixels = np.asarray(view, dtype=np.int32)
    red = (pixels[..., 0] > 200) & (pixels[..., 2] < 60)
    if len(kept) == 0:
        # Dropped only when the square's centre left the view.
        assert red.sum() < 0.5 * 128 * 128
        return
    x1, y1, x2, y2 = np.round(moved[0] * 128).astype(int)
    inside = red[y1:y2, x1:x2]
    assert inside.mean() > 0.9  # the box covers red pixels ...
    assert red.sum() - inside.sum() < 0.05 * max(red.sum(), 1)  # ... and nearly all of them


def test_random_view_drops_a_box_whose_centre_leaves_the_view() -> None:
    image, _ = _red_square_picture()
    corner_box = np.array([[0.0, 0.0, 0.1, 0.1]])
    settings = AugmentationSettings(window_side=(0.6, 0.6), flip_probability=0.0, colour_jitter=0.0)
    # A window of 0.6 x 0.6 always misses the centre (0.05, 0.05) unless it starts before 0.05.
    dropped = [len(random_view(image, corner_box, 64, np.random.default_rng(s), settings)[2]) == 0 for s in range(20)]
    assert any(dropped)


# --- the multi-scale backbone -----------------------------------------------------------------


@pytest.fixture(scope="session")
def detection_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("detection-models")
    FeatureExtractor.load(LITE0, cache, threads=2)  # exported once, here
    return cache


def test_multiscale_onnx_matches_torch_at_any_multiple_of_32(detection_cache: Path) -> None:
    torch = pytest.importorskip("torch")
    from opencustomvision.ml.detection.features import build_multiscale_torch_model

    extractor = FeatureExtractor.load(LITE0, detection_cache, threads=2)
    assert extractor.channels == (40, 112, 1280)
    model = build_multiscale_torch_model(LITE0)
    rng = np.random.default_rng(0)
    for side in (224, 320):
        batch = rng.uniform(-1, 1, size=(1, 3, side, side)).astype(np.float32)
        onnx_maps = extractor.run(batch)
        with torch.no_grad():
            torch_maps = [m.numpy() for m in model(torch.from_numpy(batch))]
        for stride, onnx_map, torch_map in zip(FEATURE_STRIDES, onnx_maps, torch_maps, strict=True):
            assert onnx_map.shape[-1] == side // stride
            np.testing.assert_allclose(onnx_map, torch_map, atol=2e-3, rtol=1e-3)
    with pytest.raises(ValueError, match="multiples of 32"):
        extractor.run(np.zeros((1, 3, 100, 100), np.float32))


def test_exported_head_computes_what_the_torch_head_computes() -> None:
    torch = pytest.importorskip("torch")
    import onnxruntime as ort

    from opencustomvision.ml.detection.head import ExportedQualityHead, QualityHead
    from opencustomvision.ml.detection.model import DISTANCES_OUTPUT, SCORES_OUTPUT, DetectorConfig
    from opencustomvision.ml.detection.training import export_head

    torch.manual_seed(0)
    channels = (40, 112, 1280)
    head = QualityHead(channels, class_count=3).eval()
    session = ort.InferenceSession(export_head(head, DetectorConfig(LITE0, 320, 3, FEATURE_STRIDES), channels),
                                   providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(FEATURE_NAMES)
    rng = np.random.default_rng(1)
    features = [rng.normal(size=(1, c, 320 // s, 320 // s)).astype(np.float32) for c, s in zip(channels, FEATURE_STRIDES)]
    scores, distances = session.run([SCORES_OUTPUT, DISTANCES_OUTPUT], dict(zip(FEATURE_NAMES, features)))
    with torch.no_grad():
        expected = ExportedQualityHead(head)(*(torch.from_numpy(f) for f in features))
    assert scores.shape == (1, 2100, 3) and distances.shape == (1, 2100, 4)
    np.testing.assert_allclose(scores, expected[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(distances, expected[1].numpy(), atol=1e-4)


def test_stretched_preprocessing_keeps_the_whole_image() -> None:
    image = Image.new("RGB", (200, 100), (127, 127, 127))
    ImageDraw.Draw(image).rectangle([0, 0, 99, 99], fill=(255, 255, 255))  # left half white
    array = preprocess_stretched(image, 64)
    assert array.shape == (3, 64, 64)
    assert array[:, :, :30].min() == pytest.approx(1.0)  # (255 - 127) / 128
    assert np.abs(array[:, :, 34:]).max() == 0.0


# --- fitting and predicting ---------------------------------------------------------------------


def test_fit_rejects_bad_regions_before_any_training(tmp_path: Path) -> None:
    detector = ObjectDetector(LITE0, cache_dir=tmp_path)
    image = Image.new("RGB", (64, 64))
    with pytest.raises(ValueError, match="region lists"):
        detector.fit([image], [], 1)
    with pytest.raises(ValueError, match="tag indices"):
        detector.fit([image], [[(1, (0.1, 0.1, 0.5, 0.5))]], 1)
    with pytest.raises(ValueError, match="no region"):
        detector.fit([image], [[(0, (0.1, 0.1, 0.0, 0.5))]], 1)  # the only box is empty
    with pytest.raises(ValueError, match="multiple of 32"):
        ObjectDetector(LITE0, cache_dir=tmp_path, input_size=300)
    assert not any(tmp_path.iterdir())  # nothing was exported for a rejected call


def test_a_non_model_blob_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ModelFormatError):
        DetectionModel.from_bytes(b"not a zip", tmp_path)


def _quickstart() -> tuple[list[Image.Image], list[list[tuple[int, tuple[float, ...]]]], Image.Image]:
    base = shared_data("customvision-samples", "ObjectDetection")
    regions_by_tag = json.loads((base / "regions.json").read_text())
    images, regions = [], []
    for tag_index, tag in enumerate(sorted(regions_by_tag)):  # fork 0, scissors 1
        for stem, box in sorted(regions_by_tag[tag].items()):
            images.append(Image.open(base / "Images" / tag / f"{stem}.jpg").convert("RGB"))
            regions.append([(tag_index, tuple(box))])
    return images, regions, Image.open(base / "Images" / "test" / "test_image.jpg").convert("RGB")


@pytest.mark.slow
def test_quickstart_detector_finds_the_fork_and_survives_storage(detection_cache: Path) -> None:
    images, regions, test_image = _quickstart()
    detector = ObjectDetector(LITE0, cache_dir=detection_cache, seed=0, threads=1)
    detector.fit(images, regions, tag_count=2)
    # The schedule is steps chosen from the data (25 x sqrt(40)), not what the clock allowed.
    assert detector.schedule_.planned_steps == detector.schedule_.steps_done == planned_steps(40, TrainingSettings()) == 158
    assert not detector.schedule_.capped

    losses = [report.loss for report in detector.history_]
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:2])

    detections = detector.predict(test_image)
    assert 1 <= len(detections) <= 200
    top = detections[0]
    assert top.tag == 0  # fork
    assert top.probability > 0.4
    # Tight enough: the box holds the fork and not much more (what is missed is a margin above and
    # below the diagonal fork).
    predicted, fork = ltwh_to_xyxy([top.box]), ltwh_to_xyxy([TEST_FORK])
    assert pairwise_iou(predicted, fork)[0, 0] > 0.5
    overlap = np.concatenate([np.maximum(predicted[:, :2], fork[:, :2]), np.minimum(predicted[:, 2:], fork[:, 2:])], axis=1)
    assert box_area(overlap)[0] / box_area(fork)[0] > 0.85
    probabilities = [d.probability for d in detections]
    assert probabilities == sorted(probabilities, reverse=True)
    boxes = ltwh_to_xyxy([d.box for d in detections])
    assert boxes.min() >= 0.0 and boxes.max() <= 1.0

    blob = detector.to_bytes()
    assert len(blob) < 1_000_000  # the backbone is shared, not stored
    reloaded = DetectionModel.from_bytes(blob, detection_cache, threads=1)
    again = reloaded.predict(test_image)
    assert [d.tag for d in again] == [d.tag for d in detections]
    np.testing.assert_allclose([d.box for d in again], [d.box for d in detections], atol=1e-5)

    # Prediction in a fresh process never imports torch.
    blob_path = detection_cache / "quickstart-model.zip"
    blob_path.write_bytes(blob)
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from PIL import Image
        from opencustomvision.ml.detection import DetectionModel
        model = DetectionModel.from_bytes(Path({str(blob_path)!r}).read_bytes(), Path({str(detection_cache)!r}))
        top = model.predict(Image.open({str(_test_image_path())!r}).convert("RGB"))[0]
        assert "torch" not in sys.modules, "predicting imported torch"
        print(top.tag)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"


def _test_image_path() -> Path:
    return shared_data("customvision-samples", "ObjectDetection") / "Images" / "test" / "test_image.jpg"


def test_the_schedule_is_steps_from_the_data() -> None:
    settings = TrainingSettings()
    assert [planned_steps(n, settings) for n in (1, 16, 40, 160, 292)] == [100, 100, 158, 316, 427]
    assert planned_steps(10**6, settings) == settings.max_steps
    assert planned_steps(40, settings, scale=0.5) == 79
    with pytest.raises(ValueError):
        planned_steps(0, settings)


@pytest.mark.slow
def test_training_is_reproducible_for_a_seed_and_capped_only_by_the_clock(detection_cache: Path) -> None:
    images, regions, _ = _quickstart()
    images, regions = images[::5], regions[::5]
    settings = TrainingSettings(views_per_image=2)
    prepared = ObjectDetector(LITE0, cache_dir=detection_cache, threads=1, settings=settings).prepare(images, regions, 2)

    def fitted(seed: int, **options: float) -> ObjectDetector:
        detector = ObjectDetector(LITE0, cache_dir=detection_cache, seed=seed, threads=1, settings=settings, **options)
        return detector.fit_prepared(prepared)

    first = fitted(0, step_scale=0.05)
    assert first.schedule_.steps_done == first.schedule_.planned_steps == 5 and not first.schedule_.capped
    again = fitted(0, step_scale=0.05)
    assert [r.loss for r in again.history_] == [r.loss for r in first.history_]
    assert again.predict(images[0]) == first.predict(images[0])
    assert [r.loss for r in fitted(1, step_scale=0.05).history_] != [r.loss for r in first.history_]

    # A cap the planned steps cannot fit in: fewer steps, said so.
    capped = fitted(0, time_budget_seconds=1e-3)
    assert capped.schedule_.capped and capped.schedule_.steps_done < capped.schedule_.planned_steps == 100

    subset = fitted(0, step_scale=0.05)
    with pytest.raises(ValueError, match="image indices"):
        subset.fit_prepared(prepared, [len(images)])

    # Side by side in threads (as the evaluator trains beside the final detector): the same detectors as alone.
    with ThreadPoolExecutor(2) as pool:
        side_by_side = list(pool.map(lambda seed: fitted(seed, step_scale=0.05), (0, 1)))
    assert [r.loss for r in side_by_side[0].history_] == [r.loss for r in first.history_]
    assert [r.loss for r in side_by_side[1].history_] == [r.loss for r in fitted(1, step_scale=0.05).history_]
    assert side_by_side[0].predict(images[0]) == first.predict(images[0])
    # A long training while short ones beside it export (torch.export's modes are process-wide): its steps untouched.
    alone = fitted(0, step_scale=0.3)
    with ThreadPoolExecutor(2) as pool:
        beside = pool.submit(lambda: [fitted(1, step_scale=0.05) for _ in range(3)])
        long = fitted(0, step_scale=0.3)
        beside.result()
    assert [r.loss for r in long.history_] == [r.loss for r in alone.history_]
