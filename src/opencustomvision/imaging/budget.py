"""A budget of pixels being decoded at once, shared by every thread of the process.

A small file can decode into a large picture (a 51 KB PNG of 10240 x 5120 takes ~250 MB while it is decoded,
resized and encoded); without a bound, memory follows whatever arrives concurrently. Each decode reserves its
picture's pixels before any is decoded and waits, briefly, for room; past the wait it gives up with DecodeBusy,
which the API answers with 503, so memory stays bounded whatever arrives.
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["DecodeBudget", "DecodeBusy", "decode_budget", "set_decode_budget"]


class DecodeBusy(Exception):
    """The process is decoding as many pixels as its budget allows, and no room came free in time."""


def default_concurrency() -> int:
    return 2 * (os.cpu_count() or 1)


class DecodeBudget:
    def __init__(self, max_pixels: int, wait_seconds: float, max_concurrent: int | None = None) -> None:
        if max_pixels <= 0:
            raise ValueError("the decode budget needs room for at least one pixel")
        self.max_pixels = max_pixels
        self.wait_seconds = wait_seconds
        # Decoding is CPU-bound: more decodes at once than cores only adds memory in flight.
        self.max_concurrent = max_concurrent or default_concurrency()
        self.in_use = 0
        self.active = 0
        self._changed = threading.Condition()
        # Room is handed out in arrival order: under overload the requests that came first finish (their images
        # decode one after another) instead of every request losing some image to a later one and all answering 503.
        self._waiting: collections.deque[object] = collections.deque()

    @contextmanager
    def reserve(self, pixels: int, wait_seconds: float | None = None) -> Iterator[None]:
        """Hold room for ``pixels`` while the block runs; wait at most ``wait_seconds`` (default: the budget's)."""
        # A picture larger than the whole budget may still be decoded: alone.
        amount = max(1, min(pixels, self.max_pixels))
        patience = self.wait_seconds if wait_seconds is None else wait_seconds
        turn = object()
        with self._changed:
            self._waiting.append(turn)
            room = lambda: (self._waiting[0] is turn and self.in_use + amount <= self.max_pixels  # noqa: E731
                            and self.active < self.max_concurrent)
            granted = self._changed.wait_for(room, timeout=patience)
            self._waiting.remove(turn)
            self._changed.notify_all()  # the next in line may fit now
            if not granted:
                raise DecodeBusy(f"{self.active} decodes of {self.in_use} of {self.max_pixels} pixels are under way; "
                                 f"no room for {amount} came free within {patience:.0f} s")
            self.in_use += amount
            self.active += 1
        try:
            yield
        finally:
            with self._changed:
                self.in_use -= amount
                self.active -= 1
                self._changed.notify_all()


# 200 megapixels: 20 concurrent uploads of maximal PNGs peak at ~1.2 GB of server RSS (tests/test_decode_budget.py;
# that needs large buffers returned to the system when freed: imaging/memory.py).
_budget = DecodeBudget(max_pixels=200_000_000, wait_seconds=30.0)


def decode_budget() -> DecodeBudget:
    return _budget


def set_decode_budget(budget: DecodeBudget) -> None:
    """Set once at start-up from the settings (OCV_DECODE_BUDGET_MEGAPIXELS)."""
    global _budget
    _budget = budget
