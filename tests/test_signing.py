"""Signed blob links: valid for at least their time to live, never after, and the same link within a step (so a
browser's cache can serve a thumbnail again)."""

from __future__ import annotations

import pytest

from opencustomvision.storage.signing import BlobLinkSigner

pytestmark = pytest.mark.db_independent


def test_links_are_stable_within_a_step_and_valid_for_at_least_their_ttl() -> None:
    signer = BlobLinkSigner(b"secret", ttl_seconds=3600, step_seconds=300)
    now = 1_800_000_123.0
    first = signer.sign("projects/p/images/i/thumbnail", now=now)
    assert signer.sign("projects/p/images/i/thumbnail", now=now + 60) == first
    assert now + 3600 <= first.expires < now + 3600 + 300
    assert signer.is_valid(first.key, first.expires, first.signature, now=first.expires)
    assert not signer.is_valid(first.key, first.expires, first.signature, now=first.expires + 1)
    later = signer.sign(first.key, now=first.expires - 3600 + 1)  # the next step: a new link
    assert later.expires == first.expires + 300 and later.signature != first.signature


def test_a_link_is_bound_to_its_key_and_expiry_and_secret() -> None:
    signer = BlobLinkSigner(b"secret", ttl_seconds=60)
    link = signer.sign("projects/p/images/i/original", now=1000.0)
    assert not signer.is_valid("projects/p/images/other/original", link.expires, link.signature, now=1000.0)
    assert not signer.is_valid(link.key, link.expires + 300, link.signature, now=1000.0)
    assert not BlobLinkSigner(b"other", ttl_seconds=60).is_valid(link.key, link.expires, link.signature, now=1000.0)


def test_a_short_time_to_live_is_not_stretched_by_the_step() -> None:
    link = BlobLinkSigner(b"secret", ttl_seconds=5).sign("k", now=1000.0)
    assert 1005 <= link.expires < 1010
