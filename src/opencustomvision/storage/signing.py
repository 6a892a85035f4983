"""Signed, expiring links to blobs, so image URIs work without a key while valid and never after."""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class SignedBlobLink:
    key: str
    expires: int
    signature: str


class BlobLinkSigner:
    """Links made within the same step (``step_seconds``, at most the time to live) are the same link, each valid for
    at least ``ttl_seconds``: a browser's cache serves a thumbnail it has fetched instead of fetching it again under a
    new signature."""

    def __init__(self, secret: bytes, ttl_seconds: int, step_seconds: int = 300) -> None:
        self._secret = secret
        self.ttl_seconds = ttl_seconds
        self.step_seconds = max(1, min(step_seconds, ttl_seconds))

    def _digest(self, key: str, expires: int) -> str:
        message = f"{key}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def sign(self, key: str, now: float | None = None) -> SignedBlobLink:
        earliest = int(now if now is not None else time.time()) + self.ttl_seconds
        expires = -(-earliest // self.step_seconds) * self.step_seconds
        return SignedBlobLink(key=key, expires=expires, signature=self._digest(key, expires))

    def is_valid(self, key: str, expires: int, signature: str, now: float | None = None) -> bool:
        if expires < (now if now is not None else time.time()):
            return False
        return hmac.compare_digest(self._digest(key, expires), signature)
