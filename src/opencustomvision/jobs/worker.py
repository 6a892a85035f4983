"""The in-process worker: runs queued training iterations one at a time in a background thread.

Job state lives in the database (an iteration in status Training is a queued or running job), so a
restart finds unfinished work and runs it again from the start: training is idempotent per iteration.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from opencustomvision.domain.iterations import TRAINING
from opencustomvision.storage.models import Iteration

logger = logging.getLogger(__name__)


class InProcessWorker:
    def __init__(self, sessions: sessionmaker[Session], run_job: Callable[[str], None], *, poll_seconds: float = 2.0) -> None:
        self._sessions = sessions
        self._run_job = run_job
        self._poll_seconds = poll_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="ocv-training-worker", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def notify(self) -> None:
        """Called after an iteration was queued, so it starts now rather than at the next poll."""
        self._wake.set()

    def _next_job(self) -> str | None:
        with self._sessions() as session:
            query = select(Iteration.id).where(Iteration.status == TRAINING).order_by(Iteration.created).limit(1)
            return session.scalars(query).first()

    def _loop(self) -> None:
        while not self._stop.is_set():
            iteration_id = self._next_job()
            if iteration_id is None:
                self._wake.wait(self._poll_seconds)
                self._wake.clear()
                continue
            try:
                self._run_job(iteration_id)
            except Exception:  # the job records its own failure; this only keeps the worker alive
                logger.exception("training job %s crashed", iteration_id)
                self._wake.wait(self._poll_seconds)
