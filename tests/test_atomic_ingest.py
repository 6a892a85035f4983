"""Each image is stored whole or not at all, even when storage fails in the middle of a batch."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select

from opencustomvision.domain.images import ImageInput, create_images
from opencustomvision.domain.projects import create_project
from opencustomvision.domain.resources import create_resource
from opencustomvision.storage.blobs import LocalBlobStore
from opencustomvision.storage.db import create_db_engine, migrate, session_factory
from opencustomvision.storage.models import Image, Resource


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
    engine = create_db_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    migrate(engine)
    with session_factory(engine)() as session:
        create_resource(session, "atomic")
        resource = session.scalars(select(Resource)).one()
        yield session, create_project(session, resource.id, name="atomic")


@pytest.mark.parametrize("fail_on", [2, 4, 6])
def test_storage_failure_mid_batch_leaves_no_orphans(tmp_path: Path, project_session, fail_on: int) -> None:  # type: ignore[no-untyped-def]
    session, project = project_session
    blobs = FailingBlobStore(tmp_path / "blobs", fail_on)
    outcomes = create_images(session, blobs, project, [ImageInput(data=jpeg(red)) for red in (50, 120, 200)])
    statuses = [outcome.status for outcome in outcomes]
    failed = (fail_on - 1) // 3
    assert statuses == ["ErrorStorage" if index == failed else "OK" for index in range(3)]
    stored = list(session.scalars(select(Image)))
    assert len(stored) == 2
    files = {str(path.relative_to(tmp_path / "blobs")) for path in (tmp_path / "blobs").rglob("*") if path.is_file()}
    expected = {key for image in stored for key in (image.original_key, image.resized_key, image.thumbnail_key)}
    assert files == expected
    assert session.scalar(select(func.count()).select_from(Image)) == 2
