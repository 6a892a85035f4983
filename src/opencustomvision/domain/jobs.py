"""Background jobs: what may happen to one, from queued to finished, whichever worker runs it.

A job is claimed by a conditional update (queued -> running), so two workers, in one process or many, never run
the same job; while it runs its worker refreshes ``heartbeat_at``. A running job whose heartbeat went stale lost its
worker (killed, machine gone) and is queued again, a bounded number of times.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from opencustomvision.storage.models import Job, WorkerBeat, utcnow

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELED = "queued", "running", "succeeded", "failed", "canceled"
FINISHED = (SUCCEEDED, FAILED, CANCELED)
TRAINING_JOB = "training"
# A job is tried this many times before a lost worker fails it for good (a job that kills its worker every time
# must not hold the queue forever).
MAX_ATTEMPTS = 5


def queue_job(session: Session, *, kind: str, subject_id: str, project_id: str | None) -> Job:
    """Add a queued job in the caller's transaction; after the commit, hand ``job.id`` to the queue."""
    job = Job(kind=kind, subject_id=subject_id, project_id=project_id, status=QUEUED, progress=0.0, attempts=0,
              cancel_requested=False, created=utcnow())
    session.add(job)
    session.flush()
    return job


def latest_job(session: Session, kind: str, subject_id: str) -> Job | None:
    query = select(Job).where(Job.kind == kind, Job.subject_id == subject_id).order_by(Job.created.desc()).limit(1)
    return session.scalars(query).first()


def request_cancel(session: Session, job: Job) -> bool:
    """Cancel a job: a queued one ends now (True); a running one is asked to stop at its next check (False)."""
    if job.status == QUEUED:
        cancelled = session.execute(
            update(Job).where(Job.id == job.id, Job.status == QUEUED)
            .values(status=CANCELED, cancel_requested=True, finished=utcnow())
        ).rowcount
        if cancelled:
            session.refresh(job)
            return True
    if job.status == RUNNING:
        job.cancel_requested = True
        session.flush()
    return False


def queued_job_ids(session: Session, *, limit: int = 8) -> list[str]:
    query = select(Job.id).where(Job.status == QUEUED).order_by(Job.created, Job.id).limit(limit)
    return list(session.scalars(query))


def claim(session: Session, job_id: str, worker_id: str) -> bool:
    """Take a queued job for ``worker_id``; False if another worker took it first (or it is no longer queued)."""
    now = utcnow()
    claimed = session.execute(
        update(Job).where(Job.id == job_id, Job.status == QUEUED)
        .values(status=RUNNING, worker_id=worker_id, heartbeat_at=now, started=now, attempts=Job.attempts + 1)
    ).rowcount
    session.commit()
    return bool(claimed)


@dataclass(frozen=True)
class Beat:
    still_ours: bool
    cancel_requested: bool


def heartbeat(session: Session, job_id: str, worker_id: str, progress: float | None = None) -> Beat:
    """Refresh a running job's heartbeat (and progress); says whether it is still this worker's and cancelled."""
    values: dict[str, object] = {"heartbeat_at": utcnow()}
    if progress is not None:
        values["progress"] = min(1.0, max(0.0, progress))
    owned = session.execute(
        update(Job).where(Job.id == job_id, Job.worker_id == worker_id, Job.status == RUNNING).values(**values)
    ).rowcount
    session.commit()
    cancel = bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))
    return Beat(still_ours=bool(owned), cancel_requested=cancel)


def hold(session: Session, job_id: str, worker_id: str) -> bool:
    """Within the caller's transaction: whether the job is still running for ``worker_id``, holding its row (a
    write lock) until the caller commits, so no reclaim can interleave with the result being recorded."""
    return bool(session.execute(
        update(Job).where(Job.id == job_id, Job.worker_id == worker_id, Job.status == RUNNING).values(heartbeat_at=utcnow())
    ).rowcount)


def finish(session: Session, job_id: str, worker_id: str, status: str, error: str | None = None) -> bool:
    """End a running job; False if it was no longer this worker's (requeued after a stale heartbeat)."""
    values: dict[str, object] = {"status": status, "finished": utcnow(), "error": error[:4000] if error else None}
    if status == SUCCEEDED:
        values["progress"] = 1.0
    done = session.execute(
        update(Job).where(Job.id == job_id, Job.worker_id == worker_id, Job.status == RUNNING).values(**values)
    ).rowcount
    session.commit()
    return bool(done)


@dataclass(frozen=True)
class Abandoned:
    job_id: str
    kind: str
    subject_id: str
    requeued: bool


def reclaim_abandoned(session: Session, *, stale_after: timedelta, is_gone: Callable[[str], bool] = lambda _: False,
                      now: datetime | None = None) -> list[Abandoned]:
    """Running jobs whose worker stopped beating (or is known to be gone): queued again, or failed once they have
    had MAX_ATTEMPTS."""
    now = now or utcnow()
    cutoff = now - stale_after
    running = session.scalars(select(Job).where(Job.status == RUNNING))
    stale = [job for job in running if job.heartbeat_at is None or job.heartbeat_at < cutoff or is_gone(job.worker_id or "")]
    found: list[Abandoned] = []
    for job in stale:
        give_up = job.attempts >= MAX_ATTEMPTS or job.cancel_requested
        values: dict[str, object] = (
            {"status": CANCELED if job.cancel_requested else FAILED, "finished": now,
             "error": f"its worker stopped responding {job.attempts} times"}
            if give_up else {"status": QUEUED, "worker_id": None, "heartbeat_at": None, "progress": 0.0}
        )
        # Only if it is still the same stale run: its worker may have come back and finished meanwhile.
        changed = session.execute(
            update(Job).where(Job.id == job.id, Job.status == RUNNING, Job.heartbeat_at == job.heartbeat_at).values(**values)
        ).rowcount
        if changed:
            found.append(Abandoned(job.id, job.kind, job.subject_id, requeued=not give_up))
    session.commit()
    return found


def record_worker_beat(session: Session, worker_id: str) -> None:
    now = utcnow()
    # An UPDATE, not a loaded row: the job's heartbeat thread and the worker's loop both beat, and a stopping
    # worker removes its row meanwhile.
    if not session.execute(update(WorkerBeat).where(WorkerBeat.id == worker_id).values(last_seen=now)).rowcount:
        session.add(WorkerBeat(id=worker_id, started=now, last_seen=now))
    try:
        session.commit()
    except IntegrityError:  # the other beat inserted it first
        session.rollback()


def forget_worker(session: Session, worker_id: str) -> None:
    session.execute(delete(WorkerBeat).where(WorkerBeat.id == worker_id))
    session.commit()


@dataclass(frozen=True)
class QueueHealth:
    live_workers: list[WorkerBeat]
    queued: int
    running: int
    oldest_queued: datetime | None


def queue_health(session: Session, *, alive_within: timedelta, forget_after: timedelta = timedelta(days=1)) -> QueueHealth:
    now = utcnow()
    # Workers that left without saying so (kill -9) are dropped once they are long gone.
    for beat in session.scalars(select(WorkerBeat).where(WorkerBeat.last_seen < now - forget_after)):
        session.delete(beat)
    session.commit()
    live = list(session.scalars(select(WorkerBeat).where(WorkerBeat.last_seen >= now - alive_within).order_by(WorkerBeat.id)))
    counts = dict(session.execute(select(Job.status, func.count()).where(Job.status.in_((QUEUED, RUNNING))).group_by(Job.status)).all())
    oldest = session.scalar(select(func.min(Job.created)).where(Job.status == QUEUED))
    return QueueHealth(live, int(counts.get(QUEUED, 0)), int(counts.get(RUNNING, 0)), oldest)
