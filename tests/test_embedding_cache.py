"""The embedding cache: an image is embedded once per backbone, even when the background captioner and a training
ask for the same new images at the same time; the training waits only for the few the captioner has under way."""

from __future__ import annotations

import io
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from opencustomvision.domain.images import ImageInput, create_images
from opencustomvision.domain.projects import create_project
from opencustomvision.domain.resources import create_resource
from opencustomvision.embeddings import EmbeddingCache, ImagesGone
from opencustomvision.storage.blobs import LocalBlobStore
from opencustomvision.storage.db import create_db_engine, migrate, session_factory
from opencustomvision.storage.models import Image, ImageEmbedding, Resource
from tests.conftest import _database_url


class UnhurriedBackbone:
    """Embeds a picture as its mean colour, taking ``seconds`` per picture, and counts who embedded what."""

    identity = "unhurried-test-backbone"
    spec = SimpleNamespace(input_size=32)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.by_thread: Counter[str] = Counter()
        self.started = threading.Event()
        self._lock = threading.Lock()

    def embed_images(self, pictures: list, batch_size: int) -> np.ndarray:  # type: ignore[type-arg]
        self.started.set()
        with self._lock:
            self.by_thread[threading.current_thread().name] += len(pictures)
        time.sleep(self.seconds * len(pictures))
        return np.stack([np.asarray(picture, dtype=np.float32).mean(axis=(0, 1)) for picture in pictures])


def jpeg(number: int) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (64, 48), (number * 9 % 256, number * 5 % 256, 40)).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def stored_images(tmp_path: Path, count: int):  # type: ignore[no-untyped-def]
    """A fresh database and blob store holding one project of ``count`` distinct JPEGs: (engine, sessions, blobs, ids)."""
    engine = create_db_engine(_database_url(tmp_path))
    migrate(engine)
    sessions = session_factory(engine)
    blobs = LocalBlobStore(tmp_path / "blobs")
    name = f"embeddings-{uuid.uuid4().hex[:8]}"
    with sessions() as session:
        create_resource(session, name)
        project = create_project(session, session.scalars(select(Resource).where(Resource.name == name)).one().id, name=name)
        outcomes = create_images(session, blobs, project, [ImageInput(data=jpeg(number)) for number in range(count)])
        image_ids = [outcome.image.id for outcome in outcomes if outcome.image is not None]
    assert len(image_ids) == count
    return engine, sessions, blobs, image_ids


def test_a_training_arriving_mid_caption_embeds_nothing_twice_and_waits_only_for_a_few(tmp_path: Path) -> None:
    engine, sessions, blobs, image_ids = stored_images(tmp_path, 24)
    backbone = UnhurriedBackbone(seconds=0.05)
    cache = EmbeddingCache(blobs)

    def caption() -> None:
        with sessions() as session:
            cache.for_images(session, image_ids, backbone, background=True)  # type: ignore[arg-type]

    captioner = threading.Thread(target=caption, name="captioner")
    captioner.start()
    assert backbone.started.wait(10)
    started = time.monotonic()
    with sessions() as session:
        vectors = cache.for_images(session, image_ids, backbone)  # type: ignore[arg-type]
    waited = time.monotonic() - started
    captioner.join(30)
    engine.dispose()

    assert sum(backbone.by_thread.values()) == 24, backbone.by_thread  # each image embedded once
    # The captioner claims 8 at a time: the training took over at least the 8 it had not reached...
    assert backbone.by_thread[threading.current_thread().name] >= 8, backbone.by_thread
    # ...and finished sooner than embedding all 24 alone would take (1.2 s) plus the wait for the captioner's batch.
    assert waited < 24 * 0.05, waited
    with session_factory(create_db_engine(_database_url(tmp_path)))() as session:
        stored = {row.image_id: np.frombuffer(row.vector, dtype=np.float32)
                  for row in session.scalars(select(ImageEmbedding).where(ImageEmbedding.backbone == backbone.identity))}
    assert sorted(stored) == sorted(image_ids)
    assert np.allclose(vectors, np.stack([stored[image_id] for image_id in image_ids]))


def test_images_deleted_before_they_are_embedded_are_named(tmp_path: Path) -> None:
    engine, sessions, blobs, ids = stored_images(tmp_path, 3)
    with sessions() as session:
        stored = [session.get(Image, image_id) for image_id in ids]
        cache = EmbeddingCache(blobs)
        with pytest.raises(ImagesGone) as no_row:
            cache.for_images(session, [stored[0].id, "5c0ffee0-0000-4000-8000-00000000dead"], UnhurriedBackbone(0))  # type: ignore[arg-type]
        assert no_row.value.image_ids == ["5c0ffee0-0000-4000-8000-00000000dead"]
        blobs.delete(stored[1].resized_key)  # its file went first, its row is going
        with pytest.raises(ImagesGone):
            cache.for_images(session, [stored[1].id, stored[2].id], UnhurriedBackbone(0))  # type: ignore[arg-type]
        assert cache.for_images(session, [stored[2].id], UnhurriedBackbone(0)).shape == (1, 3)  # type: ignore[arg-type]
    engine.dispose()
