"""Jobs: claimed once whoever asks, reclaimed when their worker dies, cancelled, and a worker that outlives its faults."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from opencustomvision.domain import jobs
from opencustomvision.jobs.runner import JobContext, JobRunner
from opencustomvision.jobs.workdirs import job_workdir, sweep_stale_workdirs
from opencustomvision.jobs.worker import InProcessWorker
from opencustomvision.storage.db import create_db_engine, migrate, session_factory
from opencustomvision.storage.models import Job
from tests.conftest import _database_url


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = create_db_engine(_database_url(tmp_path))
    migrate(engine)
    factory = session_factory(engine)
    yield factory
    with factory() as session:  # PostgreSQL is shared by the whole run: leave no queued work behind
        session.query(Job).filter(Job.project_id.is_(None)).delete()
        session.commit()
    engine.dispose()


def queue(sessions: sessionmaker[Session], kind: str = "test", subject: str = "s") -> str:
    with sessions() as session:
        job = jobs.queue_job(session, kind=kind, subject_id=subject, project_id=None)
        session.commit()
        return job.id


def status(sessions: sessionmaker[Session], job_id: str) -> Job:
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


class Recording:
    """A handler that records what it ran, optionally failing or waiting for cancellation."""

    def __init__(self, *, fail: bool = False, wait_for_cancel: bool = False) -> None:
        self.ran: list[str] = []
        self.given_up: list[tuple[str, str]] = []
        self.started = threading.Event()
        self.fail = fail
        self.wait_for_cancel = wait_for_cancel

    def run(self, context: JobContext) -> None:
        self.ran.append(context.subject_id)
        self.started.set()
        context.report_progress(0.5)
        if self.fail:
            raise RuntimeError("the job's own error")
        while self.wait_for_cancel:
            context.stop_if_asked()
            time.sleep(0.05)

    def give_up(self, subject_id: str, reason: str) -> None:
        self.given_up.append((subject_id, reason))


def test_a_job_is_claimed_by_exactly_one_of_many_workers(sessions: sessionmaker[Session]) -> None:
    job_ids = [queue(sessions, subject=str(i)) for i in range(20)]
    handler = Recording()
    runners = [JobRunner(sessions, {"test": handler}, worker_id=f"w{i}", heartbeat_seconds=0.05) for i in range(4)]

    def work(runner: JobRunner) -> None:
        for job_id in job_ids:
            runner.run(job_id)

    threads = [threading.Thread(target=work, args=(runner,)) for runner in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(handler.ran, key=int) == [str(i) for i in range(20)]
    assert all(status(sessions, job_id).status == jobs.SUCCEEDED for job_id in job_ids)
    assert {status(sessions, job_id).attempts for job_id in job_ids} == {1}


def test_a_failing_job_fails_alone_and_records_why(sessions: sessionmaker[Session]) -> None:
    job_id = queue(sessions)
    runner = JobRunner(sessions, {"test": Recording(fail=True)}, worker_id="w")
    assert runner.run(job_id) is True
    job = status(sessions, job_id)
    assert job.status == jobs.FAILED and "the job's own error" in (job.error or "")
    assert runner.run(job_id) is False  # finished jobs are never claimed again


def test_a_job_of_a_dead_worker_is_queued_again_then_given_up(sessions: sessionmaker[Session]) -> None:
    job_id = queue(sessions)
    handler = Recording()
    with sessions() as session:
        assert jobs.claim(session, job_id, "dead-worker")
    survivor = JobRunner(sessions, {"test": handler}, worker_id="survivor", stale_after=timedelta(seconds=0.2))
    assert survivor.reclaim_abandoned() == []  # its heartbeat is fresh
    time.sleep(0.3)
    assert survivor.reclaim_abandoned() == [job_id]
    assert status(sessions, job_id).status == jobs.QUEUED
    assert survivor.run(job_id) and handler.ran == ["s"]
    assert status(sessions, job_id).status == jobs.SUCCEEDED and status(sessions, job_id).attempts == 2

    # A job that kills every worker that takes it ends failed, and its subject is told.
    doomed = queue(sessions, subject="doomed")
    for attempt in range(jobs.MAX_ATTEMPTS):
        with sessions() as session:
            assert jobs.claim(session, doomed, f"dead-{attempt}")
        time.sleep(0.3)
        survivor.reclaim_abandoned()
    assert status(sessions, doomed).status == jobs.FAILED
    assert handler.given_up and handler.given_up[0][0] == "doomed"


def test_a_worker_that_lost_its_job_writes_nothing(sessions: sessionmaker[Session]) -> None:
    job_id = queue(sessions)
    runner = JobRunner(sessions, {"test": Recording()}, worker_id="slow", stale_after=timedelta(seconds=0.1))
    with sessions() as session:
        assert jobs.claim(session, job_id, "slow")
    time.sleep(0.2)
    assert runner.reclaim_abandoned() == [job_id]
    context = JobContext(job_id, "test", "s", "slow")
    with sessions() as session, pytest.raises(Exception) as lost:
        context.hold(session)
    assert type(lost.value).__name__ == "JobLost"
    assert status(sessions, job_id).status == jobs.QUEUED


def test_cancel_ends_a_queued_job_at_once_and_stops_a_running_one(sessions: sessionmaker[Session]) -> None:
    queued = queue(sessions)
    with sessions() as session:
        job = session.get(Job, queued)
        assert jobs.request_cancel(session, job) is True
        session.commit()
    assert status(sessions, queued).status == jobs.CANCELED

    running = queue(sessions)
    handler = Recording(wait_for_cancel=True)
    runner = JobRunner(sessions, {"test": handler}, worker_id="w", heartbeat_seconds=0.05)
    thread = threading.Thread(target=runner.run, args=(running,))
    thread.start()
    assert handler.started.wait(5)
    time.sleep(0.1)
    assert status(sessions, running).progress == pytest.approx(0.5)
    with sessions() as session:
        assert jobs.request_cancel(session, session.get(Job, running)) is False
        session.commit()
    thread.join(5)
    assert not thread.is_alive()
    assert status(sessions, running).status == jobs.CANCELED


class Flaky:
    """A session factory whose database is away while ``down`` is set, as a restarted database server would be."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self.down = threading.Event()
        self.refused = 0

    def __call__(self) -> Session:
        if self.down.is_set():
            self.refused += 1
            raise OperationalError("connect", {}, ConnectionRefusedError("the database is restarting"))
        return self.sessions()


def test_the_worker_outlives_a_database_outage_and_a_failing_job(sessions: sessionmaker[Session]) -> None:
    flaky = Flaky(sessions)
    handler = Recording()
    failing = Recording(fail=True)
    runner = JobRunner(flaky, {"test": handler, "broken": failing}, worker_id="embedded", heartbeat_seconds=0.05)  # type: ignore[arg-type]
    worker = InProcessWorker(flaky, runner, poll_seconds=0.05, max_backoff_seconds=0.2)  # type: ignore[arg-type]
    flaky.down.set()
    worker.start()
    try:
        deadline = time.monotonic() + 5
        while flaky.refused < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert flaky.refused >= 3 and worker.is_alive()
        flaky.down.clear()
        broken = queue(sessions, kind="broken", subject="broken")
        after = queue(sessions, subject="queued after the fault")
        worker.submit(after)
        deadline = time.monotonic() + 10
        while status(sessions, after).status != jobs.SUCCEEDED and time.monotonic() < deadline:
            time.sleep(0.05)
        assert status(sessions, broken).status == jobs.FAILED
        assert status(sessions, after).status == jobs.SUCCEEDED and handler.ran == ["queued after the fault"]
        assert worker.is_alive()
        with sessions() as session:
            health = jobs.queue_health(session, alive_within=timedelta(seconds=5))
        assert [beat.id for beat in health.live_workers] == ["embedded"]
    finally:
        worker.stop()
    with sessions() as session:
        assert jobs.queue_health(session, alive_within=timedelta(seconds=5)).live_workers == []


def test_work_folders_of_ended_processes_are_swept(tmp_path: Path) -> None:
    with job_workdir("ocv-detector-", root=tmp_path) as mine:
        dead = tmp_path / f"{socket.gethostname()}-{2**22 + 12345}"  # above any pid this machine hands out
        (dead / "ocv-detector-left-behind").mkdir(parents=True)
        removed = sweep_stale_workdirs(tmp_path)
        assert removed == [dead] and not dead.exists()
        assert mine.is_dir()  # this process still runs: its folder stays
    assert not mine.exists()


def test_health_answers_with_the_live_worker(live_server) -> None:  # type: ignore[no-untyped-def]
    import httpx

    deadline = time.monotonic() + 10
    while True:
        response = httpx.get(f"{live_server.endpoint}/health", timeout=10)
        if response.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert any("in-process" in worker["id"] for worker in body["workers"])
    assert set(body["jobs"]) == {"queued", "running", "oldestQueued"}
