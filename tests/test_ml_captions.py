"""Automatic captions: the backbone's own ImageNet head applied to embeddings, and how a label reads."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from opencustomvision.domain.captions import caption_for
from opencustomvision.ml.backbone import Backbone
from opencustomvision.ml.captions import ImageNetLabeler, imagenet_names
from opencustomvision.ml.preprocess import preprocess_batch
from tests.conftest import LiveServer, shared_data

pytestmark = pytest.mark.db_independent


@pytest.fixture(scope="module")
def lite2(live_server: LiveServer) -> Backbone:
    # The live server's model folder: the backbone is exported once per test run, whoever needs it first.
    return Backbone.load("efficientnet-lite2", live_server.settings.data_dir / "models")


def photos(folder: str, count: int) -> list[Image.Image]:
    return [Image.open(path).convert("RGB") for path in sorted(shared_data("cls_hymenoptera", "val", folder).glob("*.jpg"))[:count]]


def test_the_head_read_from_the_graph_is_the_graphs_own(lite2: Backbone) -> None:
    batch = preprocess_batch(photos("ants", 4) + photos("bees", 4), lite2.spec.input_size)
    embedding, logits = lite2.forward(batch)
    labeler = ImageNetLabeler.from_onnx(lite2.path)
    assert labeler.weight.shape == (1000, 1280)
    np.testing.assert_allclose(labeler.logits(embedding), logits, atol=1e-3)


def test_imagenet_labels_name_what_the_photos_show(lite2: Backbone) -> None:
    labeler = ImageNetLabeler.from_onnx(lite2.path)
    for folder, word in (("ants", "ant"), ("bees", "bee")):
        labels = labeler.labels(lite2.embed(preprocess_batch(photos(folder, 12), lite2.spec.input_size)))
        assert sum(label == word for label in labels) >= 8, labels
    assert labeler.labels(np.empty((0, 1280), np.float32)) == []


def test_names_and_wording() -> None:
    names = imagenet_names()
    assert (len(names), names[207], names[309], names[310]) == (1000, "golden retriever", "bee", "ant")
    assert caption_for("golden retriever") == "a photo of a golden retriever"
    assert caption_for("ant") == "a photo of an ant"
    assert caption_for("  Japanese   Cherry ") == "a photo of a Japanese Cherry"
    assert caption_for("bee", "subject") == "bee"
    assert caption_for("bee", "style") == "a photo of a bee"
