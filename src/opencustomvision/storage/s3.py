"""Blobs in an S3-compatible bucket (AWS S3, MinIO, SeaweedFS, Ceph RGW, R2 ...), selected by
``OCV_BLOB_URL=s3://bucket/prefix``; endpoint, region and credentials come from the standard ``AWS_*`` variables
(``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``) as boto3 reads them.

A PUT of an object is atomic in S3 (a reader sees the old object, the new one, or none), so there are no partial
writes to discard. Image links stay signed by the API and served through it (api/blobs.py): the bucket can stay
private and unreachable from clients, and a link works the same whatever the store.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from opencustomvision.storage.blobs import BlobNotFound, BlobStoreUnavailable, StoredBlob, check_key

_MISSING = {"NoSuchKey", "404", "NotFound"}
# S3's DeleteObjects takes at most this many keys a call.
_DELETE_BATCH = 1000


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (``bucket``, ``some/prefix``)."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"OCV_BLOB_URL must look like s3://bucket/prefix, not {url!r}")
    return parsed.netloc, parsed.path.strip("/")


class S3BlobStore:
    def __init__(self, bucket: str, prefix: str = "", *, client: object | None = None) -> None:
        self.bucket = bucket
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        # Few retries and short timeouts: a store that is away answers 503 quickly rather than holding requests.
        self._s3 = client or boto3.session.Session().client("s3", config=Config(
            connect_timeout=3, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"},
            max_pool_connections=64))

    @classmethod
    def from_url(cls, url: str) -> "S3BlobStore":
        bucket, prefix = parse_s3_url(url)
        return cls(bucket, prefix)

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def ensure_bucket(self) -> None:
        """Create the bucket if it is not there (for a fresh SeaweedFS or MinIO; managed buckets already exist)."""
        try:
            self._s3.head_bucket(Bucket=self.bucket)  # type: ignore[attr-defined]
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in _MISSING | {"NoSuchBucket"}:
                raise BlobStoreUnavailable(f"bucket {self.bucket}: {error}") from error
            try:
                self._s3.create_bucket(Bucket=self.bucket)  # type: ignore[attr-defined]
            except ClientError as created:  # another replica made it first
                if created.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise BlobStoreUnavailable(f"bucket {self.bucket}: {created}") from created
        except BotoCoreError as error:
            raise BlobStoreUnavailable(f"bucket {self.bucket}: {error}") from error

    def put(self, key: str, data: bytes) -> None:
        try:
            self._s3.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)  # type: ignore[attr-defined]
        except (BotoCoreError, ClientError) as error:
            raise BlobStoreUnavailable(f"writing {key}: {error}") from error

    def get(self, key: str) -> bytes:
        try:
            answer = self._s3.get_object(Bucket=self.bucket, Key=self._key(key))  # type: ignore[attr-defined]
            return answer["Body"].read()  # type: ignore[no-any-return]
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in _MISSING:
                raise BlobNotFound(key) from error
            raise BlobStoreUnavailable(f"reading {key}: {error}") from error
        except BotoCoreError as error:
            raise BlobStoreUnavailable(f"reading {key}: {error}") from error

    def delete(self, key: str) -> None:
        try:
            self._s3.delete_object(Bucket=self.bucket, Key=self._key(key))  # type: ignore[attr-defined]
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in _MISSING:
                raise BlobStoreUnavailable(f"deleting {key}: {error}") from error
        except BotoCoreError as error:
            raise BlobStoreUnavailable(f"deleting {key}: {error}") from error

    def _objects(self, prefix: str) -> Iterator[dict]:  # type: ignore[type-arg]
        folder = self.prefix + check_key(prefix.rstrip("/")) + "/"
        try:
            for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=folder):  # type: ignore[attr-defined]
                yield from page.get("Contents", ())
        except (BotoCoreError, ClientError) as error:
            raise BlobStoreUnavailable(f"listing {prefix}: {error}") from error

    def delete_prefix(self, prefix: str) -> None:
        keys = [entry["Key"] for entry in self._objects(prefix)]
        try:
            for start in range(0, len(keys), _DELETE_BATCH):
                batch = [{"Key": key} for key in keys[start:start + _DELETE_BATCH]]
                self._s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})  # type: ignore[attr-defined]
        except (BotoCoreError, ClientError) as error:
            raise BlobStoreUnavailable(f"deleting {prefix}: {error}") from error

    def list(self, prefix: str) -> Iterator[StoredBlob]:
        for entry in self._objects(prefix):
            yield StoredBlob(entry["Key"][len(self.prefix):], entry["LastModified"].timestamp())

    def discard_partial_writes(self, older_than_seconds: float) -> int:
        return 0  # an S3 PUT is atomic: nothing half-written is ever visible
