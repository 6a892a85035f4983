"""Blobs that no row points at, and their removal.

Blobs are written before the rows that point at them, and removed after those rows are deleted, so a process
killed in between leaves blobs behind but never a row without its blobs. The sweep finds those left-overs by the
key layout (``projects/{project}/{images|predictions|iterations}/{id}/...``) and removes them once they are older
than a grace period, so an upload still under way in another process is never touched. Folders of other layouts
are left alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from opencustomvision.storage.blobs import BlobStore
from opencustomvision.storage.models import Image, Iteration, Project, StoredPrediction

logger = logging.getLogger(__name__)

_OWNERS = {"images": Image, "predictions": StoredPrediction, "iterations": Iteration}


def _existing(session: Session, model: type, ids: Iterable[str]) -> set[str]:
    wanted = list(set(ids))
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        found.update(session.scalars(select(model.id).where(model.id.in_(wanted[start:start + 500]))))  # type: ignore[attr-defined]
    return found


def sweep_orphan_blobs(session: Session, blobs: BlobStore, *, grace_seconds: float, now: float | None = None) -> list[str]:
    """Remove blobs older than ``grace_seconds`` whose project, image, prediction or iteration row is gone."""
    cutoff = (now if now is not None else time.time()) - grace_seconds
    candidates = [blob.key for blob in blobs.list("projects") if blob.modified <= cutoff]
    parsed = [(key, key.split("/")) for key in candidates]
    projects = _existing(session, Project, (parts[1] for _, parts in parsed if len(parts) > 1))
    owners = {
        folder: _existing(session, model, (parts[3] for _, parts in parsed if len(parts) > 4 and parts[2] == folder))
        for folder, model in _OWNERS.items()
    }
    orphans = []
    for key, parts in parsed:
        if len(parts) < 2:
            continue
        if parts[1] not in projects:
            orphans.append(key)
        elif len(parts) > 4 and parts[2] in owners and parts[3] not in owners[parts[2]]:
            orphans.append(key)
    for key in orphans:
        blobs.delete(key)
    partial = blobs.discard_partial_writes(grace_seconds)
    if orphans or partial:
        logger.info("removed %d blobs that no row points at and %d partial writes", len(orphans), partial)
    return orphans
