"""Housekeeping that every worker does now and then, beside its jobs: a sign of life for /health, jobs of dead
workers queued again, and blobs no row points at (left by a process killed mid-upload or mid-delete) removed once
older than a grace period."""

from __future__ import annotations

import time

from sqlalchemy.orm import Session, sessionmaker

from opencustomvision.domain import jobs
from opencustomvision.jobs.runner import JobRunner
from opencustomvision.storage.blobs import BlobStore
from opencustomvision.storage.sweep import sweep_orphan_blobs


class Maintenance:
    def __init__(self, sessions: sessionmaker[Session], blobs: BlobStore, *, grace_seconds: float,
                 interval_seconds: float = 3600.0) -> None:
        self._sessions = sessions
        self._blobs = blobs
        self.grace_seconds = grace_seconds
        self.interval_seconds = interval_seconds
        self._last_run: float | None = None

    def run_if_due(self) -> None:
        """Runs at a worker's first turn (start-up), then once per interval."""
        now = time.monotonic()
        if self._last_run is not None and now - self._last_run < self.interval_seconds:
            return
        self._last_run = now
        with self._sessions() as session:
            sweep_orphan_blobs(session, self._blobs, grace_seconds=self.grace_seconds)


def housekeeping(sessions: sessionmaker[Session], runner: JobRunner, maintenance: Maintenance | None) -> list[str]:
    """One turn of a worker's housekeeping, whatever its queue; returns the ids of the jobs it queued again."""
    with sessions() as session:
        jobs.record_worker_beat(session, runner.worker_id)
    requeued = runner.reclaim_abandoned()
    if maintenance is not None:
        maintenance.run_if_due()
    return requeued
