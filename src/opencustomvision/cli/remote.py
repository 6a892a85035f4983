"""What ``ocv migrate`` and ``ocv dataset`` share: reaching a server, and showing progress.

Both are clients of the public Training API. Without ``--endpoint`` / ``--training-key`` they reach
the local server: ``$OCV_ENDPOINT`` or ``ocv serve``'s default address, and the default resource's
key from ``$OCV_TRAINING_KEY`` or ``<data dir>/default-resource.json`` (written by ``ocv serve``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress
from rich.text import Text

from opencustomvision.cli.serve import DEFAULT_CREDENTIALS_FILE
from opencustomvision.config import Settings
from opencustomvision.transfer.client import CustomVisionClient

LOCAL_ENDPOINT = "http://127.0.0.1:8000"  # ocv serve's default --host and --port
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad arguments: exit code 2."""


def local_endpoint() -> str:
    return os.environ.get("OCV_ENDPOINT") or LOCAL_ENDPOINT


def local_training_key(data_dir: str | None) -> str:
    key = os.environ.get("OCV_TRAINING_KEY")
    if key:
        return key
    settings = Settings.from_env(data_dir)
    stored = settings.data_dir / DEFAULT_CREDENTIALS_FILE
    try:
        return str(json.loads(stored.read_text())["training_key"])
    except (OSError, ValueError, KeyError, TypeError):
        raise UsageError(f"no training key given, and none in {stored} (start `ocv serve` once, or pass the key)") from None


def client(endpoint: str | None, training_key: str | None, data_dir: str | None) -> CustomVisionClient:
    if endpoint and not endpoint.startswith(("http://", "https://")):
        raise UsageError(f"the endpoint '{endpoint}' is not an http(s) URL")
    return CustomVisionClient(endpoint or local_endpoint(), training_key or local_training_key(data_dir))


def add_endpoint_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint", help=f"the server (default: $OCV_ENDPOINT or {LOCAL_ENDPOINT})")
    parser.add_argument("--training-key", help="its training key (default: the local server's default resource)")


def data_dir_of(args: argparse.Namespace) -> Path:
    return Settings.from_env(args.data_dir).data_dir


# ---------------------------------------------------------------------------------------------- progress


class _RateColumn(ProgressColumn):
    def render(self, task) -> Text:  # type: ignore[no-untyped-def]
        speed = task.finished_speed or task.speed
        return Text(f"{speed:6.1f} images/s" if speed else "    - images/s", style="progress.data.speed")


class BarProgress:
    """A bar per counted task (images copied / total, rate, time left), for a terminal."""

    def __init__(self, console: Console) -> None:
        self._bars = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _RateColumn(),
                                  TimeRemainingColumn(), console=console)
        self._task: int | None = None
        self._bars.start()

    def log(self, message: str) -> None:
        self._bars.console.print(message, markup=False, highlight=False)

    def start(self, title: str, total: int, done: int = 0) -> None:
        self._task = self._bars.add_task(title, total=total, completed=done)

    def advance(self, count: int) -> None:
        if self._task is not None:
            self._bars.advance(self._task, count)

    def finish(self) -> None:
        if self._task is not None:
            self._bars.stop_task(self._task)
            self._task = None

    def close(self) -> None:
        self._bars.stop()


class LineProgress:
    """A plain, timestamped line per step, for logs and pipes."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._title = ""
        self._total = self._done = 0
        self._started = time.monotonic()

    def _line(self, message: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {message}", file=self._stream, flush=True)

    def log(self, message: str) -> None:
        self._line(message)

    def start(self, title: str, total: int, done: int = 0) -> None:
        self._title, self._total, self._done, self._started = title, total, done, time.monotonic()
        self._line(f"{title}: {done}/{total} images")

    def advance(self, count: int) -> None:
        self._done += count
        rate = self._done / max(time.monotonic() - self._started, 1e-9)
        self._line(f"{self._title}: {self._done}/{self._total} images ({rate:.1f} images/s)")

    def finish(self) -> None:
        pass

    def close(self) -> None:
        pass


def progress_display() -> BarProgress | LineProgress:
    console = Console(stderr=True)
    return BarProgress(console) if console.is_terminal else LineProgress()

