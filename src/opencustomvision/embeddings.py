"""Image embeddings, computed once per image and backbone and kept in the database.

Training, the captioner and Scenario's requests all ask for embeddings, sometimes of the same new images at the
same time: within a process, an image being embedded is waited for, not embedded twice. The background captioner
claims a few images at a time, so a training or a request that arrives meanwhile waits at most for the few under way
and embeds the rest itself (had it embedded those few too, the two would share the cores for the same work: a
quickstart training took 2.1 s instead of ~1.4 s). Across processes the first row written wins and the second write
is a no-op.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from opencustomvision.domain.images import images_by_id
from opencustomvision.imaging.decode import load_rgb
from opencustomvision.ml.backbone import Backbone
from opencustomvision.ml.preprocess import resized_short_side
from opencustomvision.storage.blobs import BlobNotFound, BlobStore
from opencustomvision.storage.models import ImageEmbedding
from opencustomvision.storage.upsert import insert_missing

EMBEDDING_BATCH = 32
# The background captioner's claim: what a caller arriving meanwhile may have to wait for (~0.3 s of Lite2 on 2 cores).
_BACKGROUND_CLAIM = 8
# Embedding waits its turn behind requests for room to decode, rather than fail.
_BACKGROUND_DECODE_WAIT = 3600.0


class ImagesGone(LookupError):
    """Some of the images asked for were deleted (their rows or their files) before they could be embedded."""

    def __init__(self, image_ids: list[str]) -> None:
        super().__init__(f"{len(image_ids)} of the images were deleted meanwhile")
        self.image_ids = image_ids


class EmbeddingCache:
    def __init__(self, blobs: BlobStore) -> None:
        self._blobs = blobs
        self._lock = threading.Lock()
        self._in_flight: dict[tuple[str, str], threading.Event] = {}  # set once that image is embedded (or failed)

    def embed_stored(self, resized_keys: list[str], backbone: Backbone) -> np.ndarray:
        """Embed stored resized copies (of images, or of assets that will become images): (len, dim) float32."""
        short_side = resized_short_side(backbone.spec.input_size)
        pictures = [load_rgb(self._blobs.get(key), min_short_side=short_side, budget_wait_seconds=_BACKGROUND_DECODE_WAIT)
                    for key in resized_keys]
        return backbone.embed_images(pictures, batch_size=EMBEDDING_BATCH)

    def _cached(self, session: Session, image_ids: Iterable[str], backbone: Backbone) -> dict[str, np.ndarray]:
        query = select(ImageEmbedding).where(ImageEmbedding.backbone == backbone.identity, ImageEmbedding.image_id.in_(list(image_ids)))
        return {row.image_id: np.frombuffer(row.vector, dtype=np.float32) for row in session.scalars(query)}

    def for_images(self, session: Session, image_ids: list[str], backbone: Backbone, *, background: bool = False) -> np.ndarray:
        """One vector per image, computing (and committing) only those this backbone never embedded.

        ``background``: the caller is the background captioner, which claims a few images at a time.
        """
        if not image_ids:
            return np.empty((0, 0), dtype=np.float32)
        cached = self._cached(session, image_ids, backbone)
        missing = [image_id for image_id in dict.fromkeys(image_ids) if image_id not in cached]
        claim = _BACKGROUND_CLAIM if background else max(1, len(missing))
        for start in range(0, len(missing), claim):
            self._claim_and_compute(session, missing[start:start + claim], backbone, cached)
        return np.stack([cached[image_id] for image_id in image_ids])

    def _claim_and_compute(self, session: Session, missing: list[str], backbone: Backbone, cached: dict[str, np.ndarray]) -> None:
        mine, theirs = [], []
        with self._lock:
            for image_id in missing:
                key = (image_id, backbone.identity)
                owner = self._in_flight.get(key)
                if owner is not None:
                    theirs.append(owner)
                    continue
                self._in_flight[key] = threading.Event()
                mine.append(image_id)
        try:
            if mine:
                # Claimed first, then looked up: whoever embedded one of these and let go of it committed it first.
                session.commit()  # a new transaction, to see it
                cached |= self._cached(session, mine, backbone)
            self._compute(session, [image_id for image_id in mine if image_id not in cached], backbone, cached)
        finally:
            with self._lock:
                for image_id in mine:
                    self._in_flight.pop((image_id, backbone.identity)).set()
        if theirs:
            for event in theirs:
                event.wait()
            session.commit()  # a new transaction, to see what the other committed
            cached |= self._cached(session, [i for i in missing if i not in cached], backbone)
            # Whatever the other could not embed (it failed) is embedded here.
            self._compute(session, [i for i in missing if i not in cached], backbone, cached)

    def _compute(self, session: Session, image_ids: list[str], backbone: Backbone, cached: dict[str, np.ndarray]) -> None:
        if not image_ids:
            return
        images = images_by_id(session, image_ids)
        if gone := [image_id for image_id in image_ids if image_id not in images]:
            raise ImagesGone(gone)
        for start in range(0, len(image_ids), EMBEDDING_BATCH):
            chunk = image_ids[start:start + EMBEDDING_BATCH]
            try:
                vectors = self.embed_stored([images[image_id].resized_key for image_id in chunk], backbone)
            except BlobNotFound as error:  # deleted after its row was read
                raise ImagesGone(chunk) from error
            cached.update(zip(chunk, vectors))
            insert_missing(session, ImageEmbedding, [
                {"image_id": image_id, "backbone": backbone.identity, "vector": vector.astype(np.float32).tobytes()}
                for image_id, vector in zip(chunk, vectors)
            ])
            session.commit()
