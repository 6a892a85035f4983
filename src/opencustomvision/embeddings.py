"""Image embeddings, computed once per image and backbone and kept in the database."""

from __future__ import annotations

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from opencustomvision.domain.images import images_by_id
from opencustomvision.imaging.decode import load_rgb
from opencustomvision.ml.backbone import Backbone
from opencustomvision.ml.preprocess import resized_short_side
from opencustomvision.storage.blobs import BlobStore
from opencustomvision.storage.models import ImageEmbedding

EMBEDDING_BATCH = 32
# Training waits its turn behind requests for room to decode, rather than fail.
_BACKGROUND_DECODE_WAIT = 3600.0


class EmbeddingCache:
    def __init__(self, blobs: BlobStore) -> None:
        self._blobs = blobs

    def for_images(self, session: Session, image_ids: list[str], backbone: Backbone) -> np.ndarray:
        """One vector per image, computing (and committing) only those this backbone never embedded."""
        cached = {
            row.image_id: np.frombuffer(row.vector, dtype=np.float32)
            for row in session.scalars(
                select(ImageEmbedding).where(ImageEmbedding.backbone == backbone.identity, ImageEmbedding.image_id.in_(image_ids))
            )
        }
        missing = [image_id for image_id in image_ids if image_id not in cached]
        if missing:
            images = images_by_id(session, missing)
            for start in range(0, len(missing), EMBEDDING_BATCH):
                chunk = missing[start:start + EMBEDDING_BATCH]
                short_side = resized_short_side(backbone.spec.input_size)
                pictures = [load_rgb(self._blobs.get(images[image_id].resized_key), min_short_side=short_side,
                                     budget_wait_seconds=_BACKGROUND_DECODE_WAIT) for image_id in chunk]
                vectors = backbone.embed_images(pictures, batch_size=EMBEDDING_BATCH)
                for image_id, vector in zip(chunk, vectors):
                    cached[image_id] = vector
                    session.merge(ImageEmbedding(image_id=image_id, backbone=backbone.identity, vector=vector.astype(np.float32).tobytes()))
                session.commit()
        if not image_ids:
            return np.empty((0, 0), dtype=np.float32)
        return np.stack([cached[image_id] for image_id in image_ids])
