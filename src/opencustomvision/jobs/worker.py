"""The in-process worker: the embedded default queue. Jobs wait in the database; a thread of this process claims
and runs them one at a time.

Whatever goes wrong in its own loop (the database away for a while, a job that raises), the worker logs it, backs
off and goes on: it ends only when the service stops. Its sign of life is recorded in the database for /health.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy.orm import Session, sessionmaker

from opencustomvision.domain import jobs
from opencustomvision.jobs.maintenance import Maintenance, housekeeping
from opencustomvision.jobs.queue import backoff_seconds
from opencustomvision.jobs.runner import JobRunner
from opencustomvision.jobs.workdirs import sweep_stale_workdirs

logger = logging.getLogger(__name__)


class InProcessWorker:
    def __init__(self, sessions: sessionmaker[Session], runner: JobRunner, *, maintenance: Maintenance | None = None,
                 poll_seconds: float = 2.0, max_backoff_seconds: float = 30.0) -> None:
        self._sessions = sessions
        self._runner = runner
        self._maintenance = maintenance
        self._poll_seconds = poll_seconds
        self._max_backoff_seconds = max_backoff_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_loop: float | None = None  # time.monotonic() of the last turn of the loop that went through

    @property
    def worker_id(self) -> str:
        return self._runner.worker_id

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            sweep_stale_workdirs()
            self._thread = threading.Thread(target=self._loop, name="ocv-job-worker", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        try:
            with self._sessions() as session:
                jobs.forget_worker(session, self.worker_id)
        except Exception:
            logger.warning("could not remove worker %s from the database", self.worker_id, exc_info=True)

    def check(self) -> None:
        """Always ready: jobs wait in the database for this process's thread."""

    def submit(self, job_id: str) -> None:
        """A job was queued (and committed): start it now rather than at the next poll."""
        self._wake.set()

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _turn(self) -> bool:
        """One turn: sign of life, reclaim jobs of dead workers, housekeeping, run what is queued. True if it ran a job."""
        housekeeping(self._sessions, self._runner, self._maintenance)
        with self._sessions() as session:
            queued = jobs.queued_job_ids(session, limit=1)
        ran = False
        for job_id in queued:
            ran = self._runner.run(job_id) or ran
        self.last_loop = time.monotonic()
        return ran

    def _loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                ran = self._turn()
                failures = 0
            except Exception:
                failures += 1
                delay = backoff_seconds(failures, self._poll_seconds, self._max_backoff_seconds)
                logger.exception("job worker %s: its loop failed (%d in a row); retrying in %.0f s", self.worker_id, failures, delay)
                self._stop.wait(delay)
                continue
            if not ran:
                self._wake.wait(self._poll_seconds)
                self._wake.clear()
