"""Blob storage behind one small interface: a local folder (the embedded default) or an S3-compatible bucket
(storage/s3.py, ``OCV_BLOB_URL=s3://bucket/prefix``)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

_PARTIAL_PREFIX = ".incoming-"
_SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")


class BlobNotFound(KeyError):
    pass


class BlobStoreUnavailable(Exception):
    """The store did not answer (down, unreachable, refusing our credentials): retry later, not a bug. Requests
    answer 503; a job meeting it is taken up again later rather than failed."""


@dataclass(frozen=True)
class StoredBlob:
    key: str
    modified: float  # seconds since the epoch


class BlobStore(Protocol):
    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes: ...
    def delete(self, key: str) -> None: ...
    def delete_prefix(self, prefix: str) -> None: ...
    def list(self, prefix: str) -> Iterator[StoredBlob]:
        """Every blob whose key starts with ``prefix`` + "/" (in no particular order)."""
        ...

    def discard_partial_writes(self, older_than_seconds: float) -> int:
        """Remove what writes killed mid-way left (a store whose writes are atomic has none). Returns how many."""
        ...


def check_key(key: str) -> str:
    if not _SAFE_KEY.match(key) or ".." in key.split("/"):
        raise ValueError(f"unsafe blob key: {key!r}")
    return key


class LocalBlobStore:
    """Each blob is one file; writes go to a temporary file first so a reader never sees half a blob."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        for attempt in range(3):
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=_PARTIAL_PREFIX)
                break
            except FileNotFoundError:  # a delete removed the folder as it emptied: make it again
                if attempt == 2:
                    raise
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as error:
            raise BlobNotFound(key) from error

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        self._remove_emptied_folders(path)

    def _remove_emptied_folders(self, path: Path) -> None:
        """Folders emptied by a removal go too, so a deleted image leaves nothing behind."""
        for folder in path.parents:
            if folder == self.root or self.root not in folder.parents:
                break
            try:
                folder.rmdir()
            except OSError:  # not empty (or already gone)
                break

    def delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(self._path(prefix.rstrip("/")), ignore_errors=True)

    def list(self, prefix: str) -> Iterator[StoredBlob]:
        folder = self._path(prefix.rstrip("/"))
        for path in folder.rglob("*"):
            if path.name.startswith(_PARTIAL_PREFIX):
                continue  # a write under way, or one killed mid-way (discard_partial_writes)
            try:
                stat = path.stat()
            except FileNotFoundError:  # deleted while listing
                continue
            if path.is_file():
                yield StoredBlob(path.relative_to(self.root).as_posix(), stat.st_mtime)

    def discard_partial_writes(self, older_than_seconds: float) -> int:
        cutoff = time.time() - older_than_seconds
        removed = 0
        for path in list(self.root.rglob(f"{_PARTIAL_PREFIX}*")):  # listed first: removals empty folders
            try:
                if path.stat().st_mtime <= cutoff:
                    path.unlink()
                    removed += 1
                    self._remove_emptied_folders(path)
            except FileNotFoundError:  # renamed into place or removed meanwhile
                continue
        # A process killed between making a blob's folder and writing into it leaves the folder empty; a put under
        # way gives its folder a fresh time (and makes it again should it go meanwhile).
        for folder, _, files in os.walk(self.root, topdown=False):
            path = Path(folder)
            try:
                if path != self.root and not files and not any(path.iterdir()) and path.stat().st_mtime <= cutoff:
                    path.rmdir()
            except OSError:  # written into, or removed, meanwhile
                continue
        return removed


def open_blob_store(url: str | None, local_root: Path) -> BlobStore:
    """``s3://bucket/prefix`` -> an S3-compatible bucket (endpoint and credentials from ``AWS_*``); none -> the
    local folder."""
    if not url:
        return LocalBlobStore(local_root)
    from opencustomvision.storage.s3 import S3BlobStore  # boto3 only where S3 is used

    store = S3BlobStore.from_url(url)
    store.ensure_bucket()
    return store
