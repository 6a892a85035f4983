"""The RQ queue and worker (jobs/rq_queue.py) on the fleet's real Redis, and the S3 blob store (storage/s3.py) on its
real SeaweedFS: a message delivered twice runs its job once, the worker outlives a database outage and a job that
raises, what Redis lost is enqueued again, and the bucket refuses wrong credentials with a clear error."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from opencustomvision.domain import jobs
from opencustomvision.jobs.queue import new_worker_id
from opencustomvision.jobs.rq_queue import RqJobQueue, RqWorker
from opencustomvision.jobs.runner import JobRunner
from opencustomvision.storage.blobs import BlobNotFound, BlobStoreUnavailable
from opencustomvision.storage.s3 import S3BlobStore
from tests.conftest import Fleet
from tests.test_jobs import Flaky, Recording, queue, sessions, status  # noqa: F401 - sessions is a fixture

pytestmark = pytest.mark.slow


@pytest.fixture
def rq_queue(fleet: Fleet) -> Iterator[RqJobQueue]:
    """A Redis database of its own (the fleet's workers listen on database 0)."""
    found = RqJobQueue(fleet.redis_url(db=7))
    found.connection.flushdb()
    yield found
    found.connection.flushdb()
    found.stop()


def test_a_message_delivered_twice_runs_its_job_once(rq_queue: RqJobQueue, sessions: sessionmaker[Session]) -> None:  # noqa: F811
    handler = Recording()
    runner = JobRunner(sessions, {"test": handler}, worker_id=new_worker_id("rq-test"), heartbeat_seconds=0.05)
    job_id = queue(sessions)
    rq_queue.submit(job_id)
    rq_queue.queue.enqueue("opencustomvision.jobs.rq_queue.run_job", job_id)  # a second delivery of the same job
    RqWorker(rq_queue, sessions, runner).run(burst=True)
    assert handler.ran == ["s"] and status(sessions, job_id).status == jobs.SUCCEEDED


def test_the_rq_worker_outlives_a_database_outage_and_a_failing_job(rq_queue: RqJobQueue,
                                                                    sessions: sessionmaker[Session]) -> None:  # noqa: F811
    flaky = Flaky(sessions)
    handler, failing = Recording(), Recording(fail=True)
    runner = JobRunner(flaky, {"test": handler, "broken": failing}, worker_id=new_worker_id("rq-test"),  # type: ignore[arg-type]
                       heartbeat_seconds=0.05)
    worker = RqWorker(rq_queue, flaky, runner, resubmit_after=timedelta(0))  # type: ignore[arg-type]
    broken, after = queue(sessions, kind="broken", subject="broken"), queue(sessions, subject="queued after the fault")
    rq_queue.submit(broken)
    rq_queue.submit(after)
    flaky.down.set()
    assert worker.run(burst=True) == 0  # every claim meets the outage; the worker goes through its queue all the same
    assert flaky.refused >= 2 and handler.ran == []
    assert status(sessions, broken).status == status(sessions, after).status == jobs.QUEUED
    flaky.down.clear()
    worker.housekeeping_turn()  # the database holds both as queued; their messages were spent: enqueued again
    assert not rq_queue.queue.is_empty()
    worker.run(burst=True)
    assert status(sessions, broken).status == jobs.FAILED and "the job's own error" in (status(sessions, broken).error or "")
    assert status(sessions, after).status == jobs.SUCCEEDED and handler.ran == ["queued after the fault"]


def test_jobs_that_redis_lost_are_enqueued_again(rq_queue: RqJobQueue, sessions: sessionmaker[Session]) -> None:  # noqa: F811
    handler = Recording()
    runner = JobRunner(sessions, {"test": handler}, worker_id=new_worker_id("rq-test"), heartbeat_seconds=0.05)
    job_id = queue(sessions)
    rq_queue.submit(job_id)
    rq_queue.connection.flushdb()  # as a Redis restarted without persistence
    worker = RqWorker(rq_queue, sessions, runner, resubmit_after=timedelta(0))
    assert rq_queue.resubmit_lost(sessions, older_than=timedelta(0)) == [job_id]
    assert rq_queue.resubmit_lost(sessions, older_than=timedelta(0)) == []  # its message is live now: not twice
    worker.run(burst=True)
    assert handler.ran == ["s"] and status(sessions, job_id).status == jobs.SUCCEEDED


def test_the_s3_store_on_seaweedfs(fleet: Fleet) -> None:
    with fleet.aws_env():
        store = S3BlobStore.from_url(f"s3://ocv-blobs/test-{id(fleet)}")
        store.put("projects/p/images/i/original", b"one")
        store.put("projects/p/images/j/original", b"two")
        store.put("projects/q/images/k/original", b"three")
        assert store.get("projects/p/images/i/original") == b"one"
        assert sorted(blob.key for blob in store.list("projects/p")) == ["projects/p/images/i/original", "projects/p/images/j/original"]
        store.delete_prefix("projects/p")
        assert [blob.key for blob in store.list("projects")] == ["projects/q/images/k/original"]
        store.delete("projects/q/images/k/original")
        store.delete("projects/q/images/k/original")  # deleting what is gone is fine
        with pytest.raises(BlobNotFound):
            store.get("projects/q/images/k/original")
        with pytest.raises(ValueError):
            store.put("../escape", b"x")
    wrong = dict(fleet.env, AWS_SECRET_ACCESS_KEY="not-the-secret")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in wrong.items():
            if name.startswith("AWS_"):
                patch.setenv(name, value)
        with pytest.raises(BlobStoreUnavailable, match="SignatureDoesNotMatch|AccessDenied|InvalidAccessKeyId"):
            S3BlobStore.from_url("s3://ocv-blobs/test").put("projects/x", b"x")
