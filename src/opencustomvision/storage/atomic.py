"""Rows and their blobs land together or not at all."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from sqlalchemy.orm import Session

from opencustomvision.storage.blobs import BlobStore, BlobStoreUnavailable

logger = logging.getLogger(__name__)


def discard(blobs: BlobStore, keys: Iterable[str]) -> None:
    """Remove blobs no row points at any more, as far as the store lets us now: what a store that is away keeps
    is left to the orphan-blob sweep (storage/sweep.py), so a cleanup never turns into the caller's error."""
    for key in keys:
        try:
            blobs.delete(key)
        except (BlobStoreUnavailable, OSError) as error:
            logger.warning("blob %s left for the orphan sweep: %s", key, error)


def discard_prefix(blobs: BlobStore, prefix: str) -> None:
    """``discard`` for every blob under ``prefix``."""
    try:
        blobs.delete_prefix(prefix)
    except (BlobStoreUnavailable, OSError) as error:
        logger.warning("blobs under %s left for the orphan sweep: %s", prefix, error)


def put_all(blobs: BlobStore, items: Iterable[tuple[str, bytes]]) -> list[str]:
    """Write every blob, or, when one write fails, remove those already written and re-raise."""
    written: list[str] = []
    try:
        for key, data in items:
            blobs.put(key, data)
            written.append(key)
    except BaseException:
        discard(blobs, written)
        raise
    return written


def commit_or_discard(session: Session, blobs: BlobStore, keys: Sequence[str]) -> None:
    """Commit the rows that point at ``keys``; if the commit fails, the blobs go too."""
    try:
        session.commit()
    except BaseException:
        session.rollback()
        discard(blobs, keys)
        raise
