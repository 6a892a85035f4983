"""Backbones loaded once per process and shared by training and prediction."""

from __future__ import annotations

import threading
from pathlib import Path

from opencustomvision.ml.backbone import Backbone


class BackboneRegistry:
    def __init__(self, cache_dir: Path, *, threads: int | None = None) -> None:
        self.cache_dir = cache_dir
        self._threads = threads
        self._loaded: dict[str, Backbone] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Backbone:
        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = Backbone.load(name, self.cache_dir, threads=self._threads)
            return self._loaded[name]

    def fine_tuned(self, base: str, onnx: bytes, identity: str) -> Backbone:
        """A fine-tuned copy of ``base``; not kept here (its owner, a loaded model, keeps it)."""
        return Backbone.from_onnx_bytes(base, onnx, identity=identity, threads=self._threads)
