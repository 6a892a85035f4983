"""Secret keys: how they are made and the only form in which they are stored."""

from __future__ import annotations

import hashlib
import secrets


def hash_key(key: str) -> str:
    # Keys are 128-bit random strings, so a fast unsalted hash is enough; looking up a hash
    # instead of comparing keys also keeps the comparison time independent of the key's content.
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> str:
    return secrets.token_hex(16)
