"""Faults on the fleet (scripts/cluster.sh: PostgreSQL, Redis, SeaweedFS, 2 API replicas behind nginx, 2 RQ
workers): kill -9 of a replica mid-upload and of a worker mid-training, PostgreSQL restarted under load, Redis and
SeaweedFS stopped; and whether one replica sees a publish, unpublish or delete done on the other within a second.

Each fault is followed by a store audit: every listed image whole (row, original, resized copy, thumbnail, each
fetchable), and once the orphan sweep has run (the workers' storage/sweep.py, run here at once with no grace
period), no blob in the bucket that no row points at. Runs in CI's PostgreSQL pass (the ``fleet`` fixture).
"""

from __future__ import annotations

import base64
import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from opencustomvision.domain.jobs import TRAINING_JOB
from opencustomvision.storage.db import create_db_engine, session_factory
from opencustomvision.storage.models import Job
from opencustomvision.storage.s3 import S3BlobStore
from opencustomvision.storage.sweep import sweep_orphan_blobs
from tests.conftest import Fleet
from tests.test_faults import photo, tinted

pytestmark = pytest.mark.slow


@dataclass
class FleetStore:
    """The fleet's database and bucket, seen from the test (as a worker sees them)."""

    sessions: sessionmaker[Session]
    blobs: S3BlobStore

    def sweep(self) -> None:
        with self.sessions() as session:
            sweep_orphan_blobs(session, self.blobs, grace_seconds=0)

    def image_blobs(self, project_id: str) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for blob in self.blobs.list(f"projects/{project_id}/images"):
            _, _, _, image_id, name = blob.key.split("/")
            found.setdefault(image_id, set()).add(name)
        return found

    def job(self, kind: str, subject_id: str) -> Job | None:
        with self.sessions() as session:
            return session.scalars(select(Job).where(Job.kind == kind, Job.subject_id == subject_id)
                                   .order_by(Job.created.desc())).first()


@pytest.fixture(scope="module")
def store(fleet: Fleet) -> Iterator[FleetStore]:
    engine = create_db_engine(fleet.env["OCV_DATABASE_URL"])
    with fleet.aws_env():
        yield FleetStore(session_factory(engine), S3BlobStore.from_url(fleet.env["OCV_BLOB_URL"]))
    engine.dispose()


def files_body(batch: list[bytes], tag_ids: list[str] | None = None) -> dict:  # type: ignore[type-arg]
    return {"images": [{"name": f"{i}.jpg", "contents": base64.b64encode(data).decode(), **({"tagIds": tag_ids} if tag_ids else {})}
                       for i, data in enumerate(batch)]}


def new_project(fleet: Fleet, prefix: str) -> str:
    with fleet.client() as client:
        return str(client.post("/projects", params={"name": f"{prefix}-{uuid.uuid4().hex[:8]}"}).json()["id"])


def listed_images(fleet: Fleet, project_id: str) -> list[dict]:  # type: ignore[type-arg]
    listed: list[dict] = []  # type: ignore[type-arg]
    with fleet.client() as client:
        while page := client.get(f"/projects/{project_id}/images", params={"take": 256, "skip": len(listed)}).json():
            listed.extend(page)
    return listed


def audit(fleet: Fleet, store: FleetStore, project_id: str) -> list[dict]:  # type: ignore[type-arg]
    """Every listed image whole and fetchable through nginx; after the sweep, no blob without its row."""
    listed = listed_images(fleet, project_id)
    with httpx.Client(timeout=30) as client:
        for image in listed:
            for uri in (image["originalImageUri"], image["resizedImageUri"], image["thumbnailUri"]):
                fetched = client.get(uri)
                assert fetched.status_code == 200 and fetched.content, f"image {image['id']}: {uri} -> {fetched.status_code}"
    store.sweep()
    assert store.image_blobs(project_id) == {image["id"]: {"original", "resized", "thumbnail"} for image in listed}
    return listed


def test_kill_of_a_replica_mid_upload_leaves_each_image_whole_or_absent(fleet: Fleet, store: FleetStore) -> None:
    project_id = new_project(fleet, "fleet-kill-api")
    rounds = 3
    batches = [[photo(10_000 + 64 * round_ + i) for i in range(64)] for round_ in range(rounds)]
    with httpx.Client(timeout=120) as client:
        started = time.monotonic()
        client.post(f"{fleet.replica(1)}/customvision/v3.3/training/projects/{project_id}/images/files",
                    headers={"Training-Key": fleet.training_key}, json=files_body([photo(90_000 + i) for i in range(8)]))
        per_image = (time.monotonic() - started) / 8
    rng = random.Random(14)
    for batch in batches:
        within = 40 * per_image
        for _ in range(4):  # until the kill lands within the upload (the replica must not have answered)
            answers: list[int] = []

            def upload() -> None:
                try:
                    with httpx.Client(timeout=120) as client:  # straight to replica 1, which dies under it
                        answers.append(client.post(f"{fleet.replica(1)}/customvision/v3.3/training/projects/{project_id}/images/files",
                                                   headers={"Training-Key": fleet.training_key}, json=files_body(batch)).status_code)
                except httpx.TransportError:
                    pass

            uploading = threading.Thread(target=upload)
            uploading.start()
            time.sleep(rng.uniform(0.2, max(0.4, within)))  # somewhere within the batch
            fleet.part("kill", "api1")
            uploading.join()
            fleet.part("start", "api1")
            audit(fleet, store, project_id)
            if not answers:
                break
            within /= 2
        assert answers == [], "the replica always answered before it was killed: no kill landed within the upload"
    # The client's retry (through nginx, to either replica) stores each image exactly once.
    with fleet.client() as client:
        for batch in batches:
            answer = client.post(f"/projects/{project_id}/images/files", json=files_body(batch))
            assert {image["status"] for image in answer.json()["images"]} <= {"OK", "OKDuplicate"}, answer.text
    listed = audit(fleet, store, project_id)
    assert len(listed) == 8 + 64 * rounds


def train(client: httpx.Client, project_id: str) -> str:
    answer = client.post(f"/projects/{project_id}/train", params={"forceTrain": "true"})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id"])


def wait_until_trained(client: httpx.Client, project_id: str, iteration_id: str, timeout: float = 300) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while (iteration := client.get(f"/projects/{project_id}/iterations/{iteration_id}").json())["status"] == "Training":
        assert time.monotonic() < deadline, f"stuck in Training: {iteration}"
        time.sleep(0.3)
    return iteration  # type: ignore[no-any-return]


def worker_part(fleet: Fleet, worker_id: str) -> str:
    pid = int(worker_id.split(":")[1])  # rq@host:pid:nonce
    return next(name for name in ("worker1", "worker2") if fleet.pid(name) == pid)


@pytest.fixture(scope="module")
def classifier_project(fleet: Fleet) -> str:
    """Two tags of 40 photos each: enough for a training that a kill lands in."""
    project_id = new_project(fleet, "fleet-train")
    with fleet.client() as client:
        for name, base in (("warm", (220, 120, 40)), ("cold", (40, 90, 220))):
            tag = client.post(f"/projects/{project_id}/tags", params={"name": name}).json()["id"]
            # Distinct photos (tinted() saturates past a few dozen): the metrics compared need not be good ones.
            pictures = [photo(base[0] * 1000 + i) for i in range(40)]
            assert client.post(f"/projects/{project_id}/images/files", json=files_body(pictures, [tag])).status_code == 200
    return project_id


def performance(client: httpx.Client, project_id: str, iteration_id: str) -> dict:  # type: ignore[type-arg]
    report = client.get(f"/projects/{project_id}/iterations/{iteration_id}/performance").json()
    return {"precision": report["precision"], "recall": report["recall"], "averagePrecision": report["averagePrecision"],
            "tags": sorted((tag["name"], tag["precision"], tag["recall"], tag["averagePrecision"]) for tag in report["perTagPerformance"])}


def test_kill_of_a_worker_mid_training_completes_it_once_on_the_other(fleet: Fleet, store: FleetStore,
                                                                      classifier_project: str) -> None:
    with fleet.client() as client:
        killed_run = train(client, classifier_project)
        deadline = time.monotonic() + 120
        while (job := store.job(TRAINING_JOB, killed_run)) is None or job.status != "running":
            assert time.monotonic() < deadline, "no worker took the training"
            time.sleep(0.1)
        first_worker = worker_part(fleet, job.worker_id or "")
        time.sleep(0.5)
        assert client.get(f"/projects/{classifier_project}/iterations/{killed_run}").json()["status"] == "Training"
        fleet.part("kill", first_worker)
        try:
            finished = wait_until_trained(client, classifier_project, killed_run)
            assert finished["status"] == "Completed"
            job = store.job(TRAINING_JOB, killed_run)
            assert job is not None and job.status == "succeeded" and job.attempts == 2
            assert worker_part(fleet, job.worker_id or "") != first_worker  # the other worker finished it
        finally:
            fleet.part("start", first_worker)
        clean_run = train(client, classifier_project)
        assert wait_until_trained(client, classifier_project, clean_run)["status"] == "Completed"
        assert performance(client, classifier_project, killed_run) == performance(client, classifier_project, clean_run)
        statuses = [it["status"] for it in client.get(f"/projects/{classifier_project}/iterations").json()]
        assert statuses == ["Completed", "Completed"]  # each training once: none twice, none stuck


def is_custom_vision_error(answer: httpx.Response, code: str | None = None) -> bool:
    body = answer.json()
    return set(body) == {"code", "message"} and (code is None or body["code"] == code)


def test_postgresql_restarted_under_load(fleet: Fleet, store: FleetStore, classifier_project: str) -> None:
    project_id = new_project(fleet, "fleet-pg")
    answers: list[httpx.Response] = []
    dropped: list[str] = []
    stop = threading.Event()

    def load(seed: int) -> None:
        rng = random.Random(seed)
        with fleet.client() as client:
            while not stop.is_set():
                try:
                    if rng.random() < 0.5:
                        answers.append(client.post(f"/projects/{project_id}/images/files",
                                                   json=files_body([photo(rng.randrange(10**6)) for _ in range(4)])))
                    else:
                        answers.append(client.get(f"/projects/{project_id}/images", params={"take": 20}))
                except httpx.TransportError as error:  # a replica that dropped a request instead of answering it
                    dropped.append(repr(error))
                time.sleep(0.05)

    clients = [threading.Thread(target=load, args=(seed,)) for seed in range(4)]
    for thread in clients:
        thread.start()
    time.sleep(2)
    fleet.part("stop", "postgres")
    time.sleep(3)
    fleet.part("start", "postgres")
    restarted = len(answers)
    time.sleep(4)
    stop.set()
    for thread in clients:
        thread.join()
    assert dropped == []
    statuses = [answer.status_code for answer in answers]
    assert 503 in statuses, "no request met the restart"
    assert set(statuses) <= {200, 207, 503}, sorted(set(statuses))
    for answer in answers:
        if answer.status_code == 503:
            assert is_custom_vision_error(answer) and answer.headers.get("Retry-After"), answer.text
        if answer.status_code == 207:  # a batch whose commits failed: each image says so, none half-stored
            assert {image["status"] for image in answer.json()["images"]} <= {"OK", "ErrorStorage"}
    assert [answer.status_code for answer in answers[restarted:]][-8:] == [200] * 8, "requests after the restart fail"
    audit(fleet, store, project_id)
    # The workers outlived the outage: a training queued after it completes.
    with fleet.client() as client:
        after = train(client, classifier_project)
        assert wait_until_trained(client, classifier_project, after, timeout=180)["status"] == "Completed"


def test_redis_stopped_training_answers_503_and_queued_work_goes_on(fleet: Fleet, classifier_project: str) -> None:
    with fleet.client() as client:
        before = len(client.get(f"/projects/{classifier_project}/iterations").json())
        fleet.part("stop", "redis")
        try:
            refused = client.post(f"/projects/{classifier_project}/train", params={"forceTrain": "true"})
            assert refused.status_code == 503 and is_custom_vision_error(refused, "ErrorProjectTrainingRequestFailed"), refused.text
            assert len(client.get(f"/projects/{classifier_project}/iterations").json()) == before  # nothing queued
        finally:
            fleet.part("start", "redis")
        # A job queued while no worker ran, whose message a Redis restart then lost, still runs once workers return.
        fleet.part("stop", "worker1")
        fleet.part("stop", "worker2")
        try:
            queued = train(client, classifier_project)
            fleet.part("stop", "redis")
            fleet.part("start", "redis")
        finally:
            fleet.part("start", "worker1")
            fleet.part("start", "worker2")
        assert wait_until_trained(client, classifier_project, queued, timeout=180)["status"] == "Completed"


def test_seaweedfs_stopped_upload_answers_503_and_nothing_is_half_written(fleet: Fleet, store: FleetStore) -> None:
    project_id = new_project(fleet, "fleet-s3")
    with fleet.client() as client:
        assert client.post(f"/projects/{project_id}/images/files", json=files_body([photo(50_000)])).status_code == 200
        stored = listed_images(fleet, project_id)[0]
        fleet.part("stop", "seaweedfs")
        try:
            refused = client.post(f"/projects/{project_id}/images/files", json=files_body([photo(50_001), photo(50_002)]))
            assert refused.status_code == 503 and is_custom_vision_error(refused, "ErrorStorage"), refused.text
            unreadable = httpx.get(stored["originalImageUri"], timeout=30)
            assert unreadable.status_code == 503 and is_custom_vision_error(unreadable, "ErrorStorage")
            assert [image["id"] for image in listed_images(fleet, project_id)] == [stored["id"]]
        finally:
            fleet.part("start", "seaweedfs")
        retried = client.post(f"/projects/{project_id}/images/files", json=files_body([photo(50_001), photo(50_002)]))
        assert retried.status_code == 200, retried.text
    assert len(audit(fleet, store, project_id)) == 3


def test_a_replica_sees_publish_unpublish_and_delete_of_the_other_within_a_second(fleet: Fleet, classifier_project: str) -> None:
    name = f"fleet-{uuid.uuid4().hex[:6]}"
    image = tinted((220, 120, 40), 3)

    def predict_on_two() -> int:
        return httpx.post(f"{fleet.replica(2)}/customvision/v3.0/prediction/{classifier_project}/classify/iterations/{name}/image/nostore",
                          headers={"Prediction-Key": fleet.prediction_key}, content=image, timeout=30).status_code

    def seen_within(expected: int) -> None:
        started = time.monotonic()
        while (status := predict_on_two()) != expected:
            assert time.monotonic() - started < 1.0, f"replica 2 still answers {status} after 1 s"

    with fleet.client(fleet.replica(1)) as one, fleet.client(fleet.replica(2)) as two:
        iteration_id = next((it["id"] for it in one.get(f"/projects/{classifier_project}/iterations").json()
                             if it["status"] == "Completed" and not it.get("publishName")), None)
        if iteration_id is None:  # run alone, without the tests that train
            iteration_id = train(one, classifier_project)
            assert wait_until_trained(one, classifier_project, iteration_id)["status"] == "Completed"
        publish = {"publishName": name, "predictionId": fleet.prediction_resource_id}
        assert predict_on_two() == 404
        assert one.post(f"/projects/{classifier_project}/iterations/{iteration_id}/publish", params=publish).status_code == 200
        deadline = time.monotonic() + 60
        while predict_on_two() != 200:  # the first prediction loads the backbone and the model: not what is timed
            assert time.monotonic() < deadline
        assert one.delete(f"/projects/{classifier_project}/iterations/{iteration_id}/publish").status_code == 204
        seen_within(404)
        assert one.post(f"/projects/{classifier_project}/iterations/{iteration_id}/publish", params=publish).status_code == 200
        seen_within(200)
        assert one.delete(f"/projects/{classifier_project}/iterations/{iteration_id}/publish").status_code == 204
        assert one.delete(f"/projects/{classifier_project}/iterations/{iteration_id}").status_code == 204
        seen_within(404)
        assert two.get(f"/projects/{classifier_project}/iterations/{iteration_id}").status_code == 404


def test_trainings_of_two_projects_run_at_once_on_the_two_workers(fleet: Fleet, store: FleetStore) -> None:
    projects = []
    with fleet.client() as client:
        for n in range(2):
            project_id = new_project(fleet, f"fleet-parallel-{n}")
            for tag_name, offset in (("a", 0), ("b", 100)):
                tag = client.post(f"/projects/{project_id}/tags", params={"name": tag_name}).json()["id"]
                pictures = [photo(60_000 + 1000 * n + offset + i) for i in range(12)]
                assert client.post(f"/projects/{project_id}/images/files", json=files_body(pictures, [tag])).status_code == 200
            projects.append(project_id)
        iterations = [train(client, project_id) for project_id in projects]
        for project_id, iteration_id in zip(projects, iterations):
            assert wait_until_trained(client, project_id, iteration_id)["status"] == "Completed"
    first, second = (store.job(TRAINING_JOB, iteration_id) for iteration_id in iterations)
    assert first is not None and second is not None
    assert first.worker_id != second.worker_id
    assert first.started < second.finished and second.started < first.finished  # the two ran at the same time
