"""Jobs run by ``ocv worker`` processes through RQ on Redis (``OCV_QUEUE_URL=redis://…``).

Redis only carries the news "job X is ready"; the database stays the truth. A worker claims job X there
(``jobs.claim``), so a message delivered twice, or one for a job another worker already has, runs nothing. What
Redis can lose (it restarted without persistence, a submit that failed while it was away, a job whose worker died
and that the database queued again), each worker's housekeeping thread puts back: every few seconds it enqueues
every job the database holds as queued that Redis has no live message for. A message's id names the job and its
attempt (``ocv-{job}-{attempts}``), so a job queued again after its worker died gets a fresh message, never one
stuck as "started" on the dead worker.

Each ``ocv worker`` is an RQ ``SimpleWorker``: a job runs in the worker process itself (no fork per job), so the
backbones it loaded stay loaded, and a SIGKILL of the worker ends its job with it, leaving the job to another
worker once its heartbeat stops (at once when the dead worker was on the same machine).
"""

from __future__ import annotations

import logging
import re
import signal
import threading
import time
from datetime import timedelta

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, SimpleWorker
from rq.exceptions import NoSuchJobError
from rq.job import Job as RqJob
from rq.job import JobStatus
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from opencustomvision.domain import jobs
from opencustomvision.jobs.maintenance import Maintenance, housekeeping
from opencustomvision.jobs.queue import QueueUnavailable, backoff_seconds
from opencustomvision.jobs.runner import JobRunner
from opencustomvision.jobs.workdirs import sweep_stale_workdirs
from opencustomvision.storage.models import Job, utcnow

logger = logging.getLogger(__name__)

QUEUE_NAME = "ocv-jobs"
_LIVE = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED}
# RQ's own time limit must never cut a job short: each handler bounds its own work (its child's timeout).
_NO_RQ_TIMEOUT = -1
# A job queued this recently is left to the submit that queued it, so the two do not both send a message.
_RESUBMIT_AFTER = timedelta(seconds=3)


def message_id(job_id: str, attempts: int) -> str:
    return f"ocv-{job_id}-{attempts}"


def redis_connection(url: str) -> Redis:
    # Short timeouts: a Redis that is away must answer a request with 503 quickly, not hold it.
    return Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10, health_check_interval=15)


class RqJobQueue:
    """What the API replicas hand queued jobs to; they run no jobs themselves."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.connection = redis_connection(url)
        self.queue = Queue(QUEUE_NAME, connection=self.connection)

    def check(self) -> None:
        try:
            self.connection.ping()
        except RedisError as error:
            raise QueueUnavailable(str(error)) from error

    def submit(self, job_id: str, attempts: int = 0) -> None:
        try:
            self.queue.enqueue("opencustomvision.jobs.rq_queue.run_job", job_id, job_id=message_id(job_id, attempts),
                               job_timeout=_NO_RQ_TIMEOUT, result_ttl=3600, failure_ttl=86400,
                               description=f"ocv job {job_id} (attempt {attempts + 1})")
        except RedisError as error:
            raise QueueUnavailable(str(error)) from error

    def has_live_message(self, job_id: str, attempts: int) -> bool:
        try:
            return RqJob.fetch(message_id(job_id, attempts), connection=self.connection).get_status() in _LIVE
        except NoSuchJobError:
            return False

    def resubmit_lost(self, sessions: sessionmaker[Session], *, older_than: timedelta = _RESUBMIT_AFTER,
                      limit: int = 200) -> list[str]:
        """Enqueue each job the database holds as queued that has no live message in Redis; returns their ids."""
        cutoff = utcnow() - older_than
        with sessions() as session:
            waiting = session.execute(
                select(Job.id, Job.attempts).where(Job.status == jobs.QUEUED, Job.created < cutoff)
                .order_by(Job.created).limit(limit)).all()
        lost = [(job_id, attempts) for job_id, attempts in waiting if not self.has_live_message(job_id, attempts)]
        for job_id, attempts in lost:
            logger.warning("job %s is queued in the database but not in Redis: enqueued again", job_id)
            self.submit(job_id, attempts)
        return [job_id for job_id, _ in lost]

    def start(self) -> None:
        """Nothing to start in an API replica: ``ocv worker`` processes run the jobs."""

    def stop(self) -> None:
        self.connection.close()


class _SimpleWorker(SimpleWorker):
    """RQ's SimpleWorker, remembering whether it was asked to stop (RQ's own flag is set only when busy)."""

    stop_asked = False

    def request_stop(self, signum, frame):  # type: ignore[no-untyped-def]
        self.stop_asked = True
        super().request_stop(signum, frame)


# The runner of this ``ocv worker`` process: RQ calls ``run_job`` by its import path, in this same process.
_runner: JobRunner | None = None


def run_job(job_id: str) -> bool:
    """What an RQ message runs: claim the job in the database and run it (False: another worker had it)."""
    if _runner is None:
        raise RuntimeError("run_job runs inside `ocv worker`, which sets up the job runner")
    return _runner.run(job_id)


class RqWorker:
    """One ``ocv worker`` process: an RQ worker that runs jobs, and a housekeeping thread beside it.

    Whatever fails in either (Redis or the database away for a while, a job that raises), it logs, backs off and
    goes on; it ends when asked to (SIGTERM / SIGINT: after the job at hand) or, with ``burst``, when the queue is
    empty."""

    def __init__(self, queue: RqJobQueue, sessions: sessionmaker[Session], runner: JobRunner, *,
                 maintenance: Maintenance | None = None, housekeeping_seconds: float = 5.0,
                 resubmit_after: timedelta = _RESUBMIT_AFTER, max_backoff_seconds: float = 30.0) -> None:
        self.queue = queue
        self._sessions = sessions
        self.runner = runner
        self._maintenance = maintenance
        self._housekeeping_seconds = housekeeping_seconds
        self._resubmit_after = resubmit_after
        self._max_backoff_seconds = max_backoff_seconds
        self._stop = threading.Event()

    @property
    def worker_id(self) -> str:
        return self.runner.worker_id

    def housekeeping_turn(self) -> None:
        for job_id in housekeeping(self._sessions, self.runner, self._maintenance):
            logger.info("job %s queued again after its worker was lost", job_id)
        self.queue.resubmit_lost(self._sessions, older_than=self._resubmit_after)

    def _housekeeping_loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self.housekeeping_turn()
                failures = 0
                delay = self._housekeeping_seconds
            except Exception:
                failures += 1
                delay = backoff_seconds(failures, self._housekeeping_seconds, self._max_backoff_seconds)
                logger.exception("worker %s: housekeeping failed (%d in a row); retrying in %.0f s", self.worker_id, failures, delay)
            self._stop.wait(delay)

    def run(self, *, burst: bool = False) -> int:
        """Work until stopped (from the main thread: RQ handles SIGTERM there)."""
        global _runner
        _runner = self.runner
        self._stop.clear()
        # RQ installs its own SIGINT / SIGTERM handlers; whoever runs this gets theirs back afterwards.
        handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
        sweep_stale_workdirs()
        keeper = threading.Thread(target=self._housekeeping_loop, name="ocv-housekeeping", daemon=True)
        keeper.start()
        failures = 0
        try:
            while not self._stop.is_set():
                worker = _SimpleWorker([self.queue.queue], connection=self.queue.connection,
                                       name=f"{re.sub(r'[^A-Za-z0-9_.-]', '-', self.worker_id)}.{failures}")
                started = time.monotonic()
                try:
                    worker.work(burst=burst, with_scheduler=False, logging_level="WARNING")
                except Exception:
                    logger.exception("worker %s: the RQ worker failed", self.worker_id)
                if burst or worker.stop_asked:  # the queue ran dry, or asked to stop (SIGTERM / SIGINT)
                    break
                # RQ leaves its loop on errors it does not handle itself (Redis away): start it again, backing off.
                failures = 1 if time.monotonic() - started > 60 else failures + 1
                delay = backoff_seconds(failures, 0.5, self._max_backoff_seconds, max_doublings=6)
                logger.warning("worker %s: the RQ worker stopped unexpectedly (%d in a row); starting it again in %.1f s",
                               self.worker_id, failures, delay)
                self._stop.wait(delay)
        finally:
            self._stop.set()
            keeper.join(timeout=self._housekeeping_seconds + 5)
            try:
                with self._sessions() as session:
                    jobs.forget_worker(session, self.worker_id)
            except Exception:
                logger.warning("could not remove worker %s from the database", self.worker_id, exc_info=True)
            _runner = None
            for number, handler in handlers.items():
                signal.signal(number, handler)
        return 0

    def stop(self) -> None:
        self._stop.set()
