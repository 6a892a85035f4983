"""Rows and their blobs land together or not at all."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy.orm import Session

from opencustomvision.storage.blobs import BlobStore


def put_all(blobs: BlobStore, items: Iterable[tuple[str, bytes]]) -> list[str]:
    """Write every blob, or, when one write fails, remove those already written and re-raise."""
    written: list[str] = []
    try:
        for key, data in items:
            blobs.put(key, data)
            written.append(key)
    except BaseException:
        for key in written:
            blobs.delete(key)
        raise
    return written


def commit_or_discard(session: Session, blobs: BlobStore, keys: Sequence[str]) -> None:
    """Commit the rows that point at ``keys``; if the commit fails, the blobs go too."""
    try:
        session.commit()
    except BaseException:
        session.rollback()
        for key in keys:
            blobs.delete(key)
        raise
