"""Where a migration records its progress: a small SQLite file beside the target's data.

One file per (source, target) pair. It maps each source project to the target project made for it
and each copied source image to its target image. Rows are written only after the target has
answered, so the file may lag behind the target, never run ahead of it: what a crash leaves
unrecorded is found again on the next run (the target answers ``OKDuplicate`` for the same bytes,
and a project created but not recorded is recognised by the pending row written before it).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS run (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS projects (
    source_project_id TEXT PRIMARY KEY,
    target_name TEXT NOT NULL,
    -- ids of the target's projects just before this one was created: a project named target_name
    -- outside this list was made by the migration, even if the process died before recording it.
    target_ids_before TEXT NOT NULL,
    target_project_id TEXT
);
CREATE TABLE IF NOT EXISTS images (
    source_project_id TEXT NOT NULL,
    source_image_id TEXT NOT NULL,
    target_image_id TEXT NOT NULL,
    PRIMARY KEY (source_project_id, source_image_id)
);
"""


def _key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def default_state_path(data_dir: Path, source_endpoint: str, source_key: str, target_endpoint: str, target_key: str) -> Path:
    """``<data dir>/migrations/<digest>.sqlite3``: the digest names the pair, never a key."""
    pair = "\n".join((source_endpoint.rstrip("/").lower(), _key_digest(source_key),
                      target_endpoint.rstrip("/").lower(), _key_digest(target_key)))
    return data_dir / "migrations" / f"{hashlib.sha256(pair.encode()).hexdigest()[:24]}.sqlite3"


@dataclass(frozen=True)
class ProjectRecord:
    source_project_id: str
    target_name: str
    target_ids_before: frozenset[str]
    target_project_id: str | None


class MigrationState:
    """The progress file. Used from one thread (the migration's coordinator)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> MigrationState:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def describe(self, source_endpoint: str, target_endpoint: str) -> None:
        """Note which endpoints this file is about, for a person who finds it later."""
        with self._db:
            for key, value in (("source_endpoint", source_endpoint), ("target_endpoint", target_endpoint)):
                self._db.execute("INSERT OR REPLACE INTO run (key, value) VALUES (?, ?)", (key, value))

    # ------------------------------------------------------------------ projects

    def project(self, source_project_id: str) -> ProjectRecord | None:
        row = self._db.execute(
            "SELECT source_project_id, target_name, target_ids_before, target_project_id FROM projects "
            "WHERE source_project_id = ?", (source_project_id,)).fetchone()
        if row is None:
            return None
        return ProjectRecord(row[0], row[1], frozenset(json.loads(row[2])), row[3])

    def project_pending(self, source_project_id: str, target_name: str, target_ids_before: set[str]) -> None:
        """Written just before CreateProject, so that a crash right after it is recognised."""
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO projects (source_project_id, target_name, target_ids_before, target_project_id) "
                "VALUES (?, ?, ?, NULL)", (source_project_id, target_name, json.dumps(sorted(target_ids_before))))

    def project_created(self, source_project_id: str, target_project_id: str) -> None:
        with self._db:
            self._db.execute("UPDATE projects SET target_project_id = ? WHERE source_project_id = ?",
                             (target_project_id, source_project_id))

    def forget_project(self, source_project_id: str) -> None:
        """The target project is gone (deleted by someone): start that project afresh."""
        with self._db:
            self._db.execute("DELETE FROM projects WHERE source_project_id = ?", (source_project_id,))
            self._db.execute("DELETE FROM images WHERE source_project_id = ?", (source_project_id,))

    # ------------------------------------------------------------------ images

    def copied_images(self, source_project_id: str) -> dict[str, str]:
        rows = self._db.execute("SELECT source_image_id, target_image_id FROM images WHERE source_project_id = ?",
                                (source_project_id,))
        return dict(rows.fetchall())

    def forget_images(self, source_project_id: str, source_image_ids: list[str]) -> None:
        """Their copies are gone from the target (deleted by someone): copy them again."""
        with self._db:
            self._db.executemany("DELETE FROM images WHERE source_project_id = ? AND source_image_id = ?",
                                 [(source_project_id, image_id) for image_id in source_image_ids])

    def images_copied(self, source_project_id: str, pairs: list[tuple[str, str]]) -> None:
        if not pairs:
            return
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO images (source_project_id, source_image_id, target_image_id) VALUES (?, ?, ?)",
                [(source_project_id, source, target) for source, target in pairs])
