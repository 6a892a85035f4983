"""Advanced training's fine-tuning (ml/finetune.py): it learns, it exports what it learned, it keeps to time."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from opencustomvision.imaging.decode import load_rgb
from opencustomvision.ml.backbone import Backbone, BackboneError, build_torch_model
from opencustomvision.ml.finetune import FineTuneSettings, _unfrozen_tail, fine_tune, run_in_child
from opencustomvision.ml.preprocess import preprocess_batch
from tests.conftest import shared_data

pytestmark = [pytest.mark.slow, pytest.mark.db_independent]

LITE0 = "efficientnet-lite0"
TAGS = ["hemlock", "cherry"]


@pytest.fixture(scope="module")
def quickstart_images():  # type: ignore[no-untyped-def]
    base = shared_data("customvision-samples", "ImageClassification", "Images")
    hemlock = sorted((base / "Hemlock").glob("*.jpg"))[:6]
    cherry = sorted((base / "Japanese_Cherry").glob("*.jpg"))[:6]
    images = [load_rgb(path.read_bytes(), min_short_side=256) for path in hemlock + cherry]
    labels = np.array([[1, 0]] * len(hemlock) + [[0, 1]] * len(cherry), dtype=np.float32)
    test = load_rgb((base / "Test" / "test_image.jpg").read_bytes(), min_short_side=256)
    return images, labels, test


def test_the_last_two_stages_and_the_head_convolution_learn() -> None:
    net = build_torch_model(LITE0).net
    tail = _unfrozen_tail(net, 2)
    # Lite0's block widths: ... 112 x3, 192 x4, 320 x1: the last two stages are blocks 11-15.
    assert tail[:-2] == list(net._blocks[11:])
    assert tail[-2:] == [net._conv_head, net._bn1]


def test_fine_tuning_changes_the_backbone_and_its_onnx_export_computes_the_same(quickstart_images, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    images, labels, test = quickstart_images
    tuned = fine_tune(LITE0, images, labels, TAGS, "Multiclass", settings=FineTuneSettings(epochs=3))
    assert tuned.epochs_run == 3

    frozen = build_torch_model(LITE0)
    import torch

    batch = torch.from_numpy(preprocess_batch(images[:2], 224))
    with torch.inference_mode():
        assert not torch.allclose(frozen(batch)[0], tuned.module(batch)[0], atol=1e-3)

    assert TAGS[int(np.argmax(tuned.predict_proba([test])))] == "hemlock"

    exported = Backbone.from_onnx_bytes(LITE0, tuned.export(tmp_path / "tuned.onnx").read_bytes(), identity="tuned")
    assert exported.identity == "tuned" and exported.spec.name == LITE0
    onnx_embeddings = exported.embed(preprocess_batch(images + [test], 224))
    np.testing.assert_allclose(onnx_embeddings, tuned.embed(images + [test]), rtol=1e-3, atol=1e-4)


def test_a_deadline_already_passed_leaves_the_frozen_backbone_and_its_linear_head(quickstart_images) -> None:  # type: ignore[no-untyped-def]
    images, labels, _ = quickstart_images
    tuned = fine_tune(LITE0, images, labels, TAGS, "Multiclass", deadline=time.monotonic() - 1)
    assert tuned.epochs_run == 0
    reference = build_torch_model(LITE0).state_dict()
    for name, value in tuned.module.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), reference[name].numpy())
    probabilities = tuned.predict_proba(images)
    assert np.all(np.argmax(probabilities, axis=1) == np.argmax(labels, axis=1))


def test_a_child_that_cannot_do_its_work_is_reported(tmp_path: Path) -> None:
    (tmp_path / "request.json").write_text(json.dumps({"backbone": LITE0}))  # no labels, no images
    with pytest.raises(BackboneError, match="fine-tuning failed"):
        run_in_child(tmp_path, timeout_seconds=120)
