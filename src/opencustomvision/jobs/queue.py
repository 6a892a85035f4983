"""The job queue interface the service hands queued jobs to, and the worker identities it runs them under.

The embedded default is the in-process worker (jobs/worker.py); ``OCV_QUEUE_URL=redis://…`` selects RQ on Redis
(jobs/rq_queue.py), whose jobs ``ocv worker`` processes run. Whatever the queue, a job's state lives in the
database and it is claimed there, so a job handed over twice (or found by polling) still runs once.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Protocol


class QueueUnavailable(Exception):
    """The queue cannot take jobs now (Redis away): the request answers 503, nothing is queued."""


class JobQueue(Protocol):
    def check(self) -> None:
        """Raise QueueUnavailable if a job queued now could not be handed on (called before queueing one)."""

    def submit(self, job_id: str) -> None:
        """Called after the job's row was committed. May raise QueueUnavailable: the job stays queued in the
        database, and the workers' housekeeping hands it on when the queue is back."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


def backoff_seconds(failures: int, base: float, cap: float, *, max_doublings: int = 10) -> float:
    """How long a worker loop waits after ``failures`` failures in a row: doubling from ``base``, at most ``cap``."""
    return min(cap, base * 2 ** min(failures, max_doublings))


def new_worker_id(role: str) -> str:
    """Unique per process start, and readable in logs and /health: ``role@host:pid:nonce``."""
    return f"{role}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def is_gone(worker_id: str) -> bool:
    """Whether ``worker_id`` names a process of this machine that no longer runs (so its jobs need no timeout)."""
    _, _, place = worker_id.partition("@")
    host, _, rest = place.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
