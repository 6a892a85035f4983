"""Backbones loaded once per process and shared by training and prediction, and made ready before they are needed.

Each backbone is an ONNX export (``backbone.py`` for classification, ``detection/features.py`` for the
multi-scale detection one). ``prepare`` makes them in the background when the service starts: files
prepared at install (``ocv prepare``) are linked, the others exported in one low-priority child process
(one torch import for all; into the prepared models where they may be written, so that the next data folder
links them too), then the classification sessions are opened. Whatever asks for a backbone meanwhile waits
only for what is left: the exports hold the cache directory's lock and the prepared models' one, which
``ensure_*`` wait for (``backbone.ensure_exported``), in this process and in training child processes alike.

    python -m opencustomvision.ml.registry CACHE_DIR classification:efficientnet-lite2 detection:efficientnet-lite0 ...

exports the listed backbones into CACHE_DIR (what the background preparation runs).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from opencustomvision.ml.backbone import Backbone, BackboneError, ensure_exported, export_onnx, onnx_path, prepared_models_dir
from opencustomvision.ml.detection.features import export_multiscale_onnx, multiscale_onnx_path

__all__ = ["CLASSIFICATION", "DETECTION", "BackboneRegistry", "prepare_models"]

logger = logging.getLogger(__name__)

CLASSIFICATION = "classification"
DETECTION = "detection"
_PATHS = {CLASSIFICATION: onnx_path, DETECTION: multiscale_onnx_path}
_EXPORTERS = {CLASSIFICATION: export_onnx, DETECTION: export_multiscale_onnx}
# Exporting the three backbones takes ~40 s of CPU; on a small machine this must not starve requests.
_PREPARATION_NICENESS = 10
_PREPARATION_TIMEOUT_SECONDS = 1800
# One preparation at a time in a process: of several servers in one process (the test suite's) on an
# installation with nothing prepared, the first exports and the others link what it made.
_PREPARING = threading.Lock()


class BackboneRegistry:
    def __init__(self, cache_dir: Path, *, threads: int | None = None) -> None:
        self.cache_dir = cache_dir
        self._threads = threads
        self._loaded: dict[str, Backbone] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._preparation: threading.Thread | None = None

    def get(self, name: str) -> Backbone:
        with self._lock:
            if name in self._loaded:
                return self._loaded[name]
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:  # one load per name; loads of other names go on meanwhile
            if name not in self._loaded:
                backbone = Backbone.load(name, self.cache_dir, threads=self._threads)
                with self._lock:
                    self._loaded[name] = backbone
            return self._loaded[name]

    def fine_tuned(self, base: str, onnx: bytes, identity: str) -> Backbone:
        """A fine-tuned copy of ``base``; not kept here (its owner, a loaded model, keeps it)."""
        return Backbone.from_onnx_bytes(base, onnx, identity=identity, threads=self._threads)

    def prepare(self, models: Sequence[tuple[str, str]], warm_up: Sequence[Callable[[], object]] = ()) -> threading.Thread:
        """Start making ``models`` ((CLASSIFICATION | DETECTION, backbone name), most wanted first) ready in
        the background, then open the classification sessions. ``warm_up``: other one-time work of a first
        training, run once the prepared files are linked. Returns the thread; errors are logged only:
        whoever needs a backbone that could not be prepared tries again and gets the error."""
        with self._lock:
            if self._preparation is None:
                self._preparation = threading.Thread(target=self._prepare, args=(list(models), list(warm_up)),
                                                     name="backbone-preparation", daemon=True)
                self._preparation.start()
            return self._preparation

    def _prepare(self, models: list[tuple[str, str]], warm_up: list[Callable[[], object]]) -> None:
        with _PREPARING:
            missing = [(kind, name) for kind, name in models if not _link_prepared(kind, name, self.cache_dir)]
            for work in warm_up:
                try:
                    work()
                except Exception:  # a warm-up is an optimisation: whoever needs it does it again and fails there
                    logger.exception("warming up for the first training failed")
            if missing:
                _export_in_child(self.cache_dir, missing)
        for kind, name in models:
            if kind == CLASSIFICATION:
                try:
                    self.get(name)
                except BackboneError as error:
                    logger.warning("backbone %s is not available: %s", name, error)
        logger.info("backbones ready in %s", self.cache_dir)


def _export_in_child(directory: Path, models: Sequence[tuple[str, str]]) -> None:
    command = [sys.executable, "-m", __name__, str(directory), *(f"{kind}:{name}" for kind, name in models)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=_PREPARATION_TIMEOUT_SECONDS,
                                preexec_fn=lambda: os.nice(_PREPARATION_NICENESS), check=False)
        if result.returncode:
            logger.warning("preparing the backbones failed (exit %d): %s", result.returncode, result.stderr[-2000:])
    except (OSError, subprocess.SubprocessError) as error:
        logger.warning("preparing the backbones failed: %s", error)


def prepare_models(cache_dir: Path, models: Sequence[tuple[str, str]]) -> list[Path]:
    """Export (in this process, torch imported once) each of ``models`` missing from ``cache_dir``; their paths."""
    paths = []
    for kind, name in models:
        exporter = _EXPORTERS[kind]
        paths.append(ensure_exported(_PATHS[kind](name, cache_dir), lambda path, exporter=exporter, name=name: exporter(name, path)))
    return paths


def _link_prepared(kind: str, name: str, cache_dir: Path) -> bool:
    """Whether ``cache_dir`` has the model now: there already, or linked from the prepared models."""
    path = _PATHS[kind](name, cache_dir)
    if not path.is_file() and (prepared_models_dir() / path.name).is_file():
        ensure_exported(path, _not_exported)
    return path.is_file()


def _not_exported(path: Path) -> None:
    raise BackboneError(f"{path.name} vanished from the prepared models while it was being linked")


def _parse(argument: str) -> tuple[str, str]:
    kind, _, name = argument.partition(":")
    if kind not in _PATHS or not name:
        raise SystemExit(f"expected {CLASSIFICATION}:NAME or {DETECTION}:NAME, got {argument!r}")
    return kind, name


if __name__ == "__main__":
    from opencustomvision.ml.child import exit_with_parent

    exit_with_parent()
    logging.basicConfig(level=logging.INFO)
    prepare_models(Path(sys.argv[1]), [_parse(argument) for argument in sys.argv[2:]])
