"""Running one job: claim it, keep its heartbeat while its handler works, record how it ended.

Every kind of job (training, export, ...) is a handler behind one small interface, whichever queue brings the job
(the in-process worker, or RQ workers on Redis): the runner is what both call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from opencustomvision.domain import jobs
from opencustomvision.jobs.queue import is_gone
from opencustomvision.storage.blobs import BlobStoreUnavailable
from opencustomvision.storage.models import Job

logger = logging.getLogger(__name__)

# A part the job needs is away for a while (the database restarting, the object store down): the job is not at
# fault, so it is neither failed nor finished. Its heartbeat stops, and once stale the job is queued again
# (reclaim_abandoned), which spaces the retries and bounds them by MAX_ATTEMPTS.
TRANSIENT_ERRORS = (OperationalError, PoolTimeout, BlobStoreUnavailable)


class JobCanceled(Exception):
    """Raised by a handler that stopped because its job was cancelled."""


class JobLost(Exception):
    """The job is no longer this worker's (its heartbeat went stale and it was queued again): another worker
    will run it, so this one must stop without writing anything."""


class JobHandler(Protocol):
    def run(self, context: JobContext) -> None:
        """Do the work. Return when done, raise JobCanceled when cancelled, any other error to fail the job."""

    def give_up(self, subject_id: str, reason: str) -> None:
        """The job ended without ``run`` finishing it (cancelled while queued, its workers lost too often):
        leave the subject in a final state users can see."""


@dataclass
class JobContext:
    job_id: str
    kind: str
    subject_id: str
    worker_id: str
    _progress: float | None = None
    _canceled: threading.Event = field(default_factory=threading.Event)
    _lost: threading.Event = field(default_factory=threading.Event)

    def report_progress(self, fraction: float) -> None:
        """Written with the next heartbeat (cheap to call often)."""
        self._progress = fraction

    def cancel_requested(self) -> bool:
        return self._canceled.is_set()

    def should_stop(self) -> bool:
        """Cancelled, or no longer this worker's: long work polls this (e.g. to kill a child process)."""
        return self._canceled.is_set() or self._lost.is_set()

    def stop_if_asked(self) -> None:
        if self._lost.is_set():
            raise JobLost(self.job_id)
        if self._canceled.is_set():
            raise JobCanceled(self.job_id)

    def hold(self, session: Session) -> None:
        """In the transaction that records the job's result: lock the job as this worker's until the commit, so a
        job requeued meanwhile never has its result written twice. Raises JobLost if it is no longer ours."""
        if not jobs.hold(session, self.job_id, self.worker_id):
            self._lost.set()
            raise JobLost(self.job_id)


class JobRunner:
    def __init__(self, sessions: sessionmaker[Session], handlers: Mapping[str, JobHandler], *, worker_id: str,
                 heartbeat_seconds: float = 5.0, stale_after: timedelta = timedelta(seconds=60)) -> None:
        self._sessions = sessions
        self.handlers = dict(handlers)
        self.worker_id = worker_id
        self.heartbeat_seconds = heartbeat_seconds
        self.stale_after = stale_after

    def run(self, job_id: str) -> bool:
        """Claim and run the job; False if another worker had it (or it was no longer queued)."""
        with self._sessions() as session:
            if not jobs.claim(session, job_id, self.worker_id):
                return False
            job = session.get(Job, job_id)
            assert job is not None
            context = JobContext(job.id, job.kind, job.subject_id, self.worker_id)
        handler = self.handlers.get(context.kind)
        if handler is None:
            self._finish(context, jobs.FAILED, f"no handler for jobs of kind '{context.kind}' in this worker")
            return True
        stop_beating = threading.Event()
        beating = threading.Thread(target=self._beat, args=(context, stop_beating), name=f"ocv-heartbeat-{job_id[:8]}", daemon=True)
        beating.start()
        try:
            handler.run(context)
        except JobLost:
            logger.warning("job %s (%s %s) was taken over by another worker; this run stops", job_id, context.kind, context.subject_id)
        except JobCanceled:
            self._finish(context, jobs.CANCELED, "canceled")
        except TRANSIENT_ERRORS as error:
            logger.warning("job %s (%s %s) paused, a part it needs is away (%s): it is taken up again once its "
                           "heartbeat is %.0f s old", job_id, context.kind, context.subject_id, error, self.stale_after.total_seconds())
        except Exception as error:  # the handler's failure is the job's, not the worker's
            logger.exception("job %s (%s %s) failed", job_id, context.kind, context.subject_id)
            self._finish(context, jobs.FAILED, f"{type(error).__name__}: {error}")
        else:
            self._finish(context, jobs.SUCCEEDED)
        finally:
            stop_beating.set()
            beating.join(timeout=self.heartbeat_seconds + 5)
        return True

    def _beat(self, context: JobContext, stop: threading.Event) -> None:
        while not stop.wait(self.heartbeat_seconds):
            try:
                with self._sessions() as session:
                    beat = jobs.heartbeat(session, context.job_id, self.worker_id, context._progress)
                    # The worker's loop waits for this job: its sign of life comes from here meanwhile.
                    jobs.record_worker_beat(session, self.worker_id)
            except Exception:  # a missed beat is retried at the next; the job itself goes on
                logger.warning("heartbeat of job %s failed", context.job_id, exc_info=True)
                continue
            if beat.cancel_requested:
                context._canceled.set()
            if not beat.still_ours:
                context._lost.set()

    def _finish(self, context: JobContext, status: str, error: str | None = None) -> None:
        with self._sessions() as session:
            if not jobs.finish(session, context.job_id, self.worker_id, status, error):
                logger.warning("job %s was no longer this worker's when it ended %s", context.job_id, status)

    def reclaim_abandoned(self) -> list[str]:
        """Queue again the jobs whose workers died; give up those tried too often. Returns the requeued ids."""
        with self._sessions() as session:
            abandoned = jobs.reclaim_abandoned(session, stale_after=self.stale_after, is_gone=is_gone)
        requeued = []
        for job in abandoned:
            if job.requeued:
                logger.warning("job %s (%s %s) lost its worker: queued again", job.job_id, job.kind, job.subject_id)
                requeued.append(job.job_id)
            else:
                logger.error("job %s (%s %s) lost its worker too often: given up", job.job_id, job.kind, job.subject_id)
                self._give_up(job.kind, job.subject_id, "training stopped: its worker was lost repeatedly")
        return requeued

    def _give_up(self, kind: str, subject_id: str, reason: str) -> None:
        handler = self.handlers.get(kind)
        if handler is not None:
            handler.give_up(subject_id, reason)
