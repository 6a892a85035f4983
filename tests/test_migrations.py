"""The Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from opencustomvision.storage.db import create_db_engine, migrate
from opencustomvision.storage.models import Base
from tests.conftest import _database_url


def test_migrations_build_the_models_schema(tmp_path: Path) -> None:
    engine = create_db_engine(_database_url(tmp_path))
    migrate(engine)
    migrate(engine)  # idempotent
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == [], differences
