"""Each image is stored whole or not at all, even when storage fails in the middle of a batch."""

from __future__ import annotations

import io
import sqlite3
import uuid
from pathlib import Path

import pytest
from PIL import Image as PILImage
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError

from opencustomvision.domain.images import ImageInput, create_images
from opencustomvision.domain.projects import create_project
from opencustomvision.domain.resources import create_resource
from opencustomvision.storage.blobs import LocalBlobStore
from opencustomvision.storage.db import create_db_engine, migrate, session_factory
from opencustomvision.storage.models import Image, Resource
from tests.conftest import _database_url


def jpeg(red: int) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (32, 24), (red, 10, 10)).save(buffer, "JPEG")
    return buffer.getvalue()


class FailingBlobStore(LocalBlobStore):
    """Fails the n-th write, as a full disk or a dropped bucket connection would."""

    def __init__(self, root: Path, fail_on: int) -> None:
        super().__init__(root)
        self.writes = 0
        self.fail_on = fail_on

    def put(self, key: str, data: bytes) -> None:
        self.writes += 1
        if self.writes == self.fail_on:
            raise OSError("disk full")
        super().put(key, data)


@pytest.fixture
def project_session(tmp_path: Path):  # type: ignore[no-untyped-def]
    engine = create_db_engine(_database_url(tmp_path))
    migrate(engine)
    name = f"atomic-{uuid.uuid4().hex[:8]}"  # PostgreSQL is shared by the whole run
    with session_factory(engine)() as session:
        create_resource(session, name)
        resource = session.scalars(select(Resource).where(Resource.name == name)).one()
        yield session, create_project(session, resource.id, name="atomic")
    engine.dispose()


@pytest.mark.parametrize("fail_on", [2, 4, 6])
def test_storage_failure_mid_batch_leaves_no_orphans(tmp_path: Path, project_session, fail_on: int) -> None:  # type: ignore[no-untyped-def]
    session, project = project_session
    blobs = FailingBlobStore(tmp_path / "blobs", fail_on)
    outcomes = create_images(session, blobs, project, [ImageInput(data=jpeg(red)) for red in (50, 120, 200)])
    statuses = [outcome.status for outcome in outcomes]
    failed = (fail_on - 1) // 3
    assert statuses == ["ErrorStorage" if index == failed else "OK" for index in range(3)]
    stored = list(session.scalars(select(Image).where(Image.project_id == project.id)))
    assert len(stored) == 2
    files = {str(path.relative_to(tmp_path / "blobs")) for path in (tmp_path / "blobs").rglob("*") if path.is_file()}
    expected = {key for image in stored for key in (image.original_key, image.resized_key, image.thumbnail_key)}
    assert files == expected
    assert session.scalar(select(func.count()).select_from(Image).where(Image.project_id == project.id)) == 2


class FailingCommits:
    """Makes the n-th commit of a session fail, as 'database is locked' after its timeout or a full disk would."""

    def __init__(self, session, fail_on: set[int], *, at: str) -> None:  # type: ignore[no-untyped-def]
        self.count = 0
        self.fail_on = fail_on
        event.listen(session, at, self)

    def __call__(self, *args) -> None:  # type: ignore[no-untyped-def]
        self.count += 1
        if self.count in self.fail_on:
            raise OperationalError("COMMIT", {}, sqlite3.OperationalError("database is locked"))


def audit(session, project, blob_root: Path) -> list[Image]:  # type: ignore[no-untyped-def]
    """Every stored image has its three blobs, and no blob is without its image."""
    stored = list(session.scalars(select(Image).where(Image.project_id == project.id)))
    files = {str(path.relative_to(blob_root)) for path in blob_root.rglob("*") if path.is_file()}
    assert files == {key for image in stored for key in (image.original_key, image.resized_key, image.thumbnail_key)}
    return stored


@pytest.mark.parametrize("at", ["before_flush", "before_commit"])
def test_a_failing_row_insert_or_commit_loses_that_image_alone(tmp_path: Path, project_session, at: str) -> None:  # type: ignore[no-untyped-def]
    session, project = project_session
    blobs = LocalBlobStore(tmp_path / "blobs")
    FailingCommits(session, {2}, at=at)
    outcomes = create_images(session, blobs, project, [ImageInput(data=jpeg(red)) for red in (50, 120, 200)])
    assert [outcome.status for outcome in outcomes] == ["OK", "ErrorStorage", "OK"]
    assert len(audit(session, project, tmp_path / "blobs")) == 2
    # The lost image was not half-stored: sending it again stores it (it is not taken for a duplicate).
    again = create_images(session, blobs, project, [ImageInput(data=jpeg(120))])
    assert [outcome.status for outcome in again] == ["OK"]
    assert len(audit(session, project, tmp_path / "blobs")) == 3


def test_a_failing_final_commit_leaves_no_row_without_blobs(tmp_path: Path, project_session) -> None:  # type: ignore[no-untyped-def]
    """The case that broke images for good on SQLite: the batch's last commit fails."""
    session, project = project_session
    blobs = LocalBlobStore(tmp_path / "blobs")
    FailingCommits(session, {3}, at="before_commit")
    outcomes = create_images(session, blobs, project, [ImageInput(data=jpeg(red)) for red in (50, 120, 200)])
    assert [outcome.status for outcome in outcomes] == ["OK", "OK", "ErrorStorage"]
    stored = audit(session, project, tmp_path / "blobs")
    assert len(stored) == 2
    for image in stored:
        assert blobs.get(image.original_key)  # each listed image can be fetched
