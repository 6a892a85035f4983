"""What the transfer engines tell whoever watches them: the CLI draws bars or prints lines."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def log(self, message: str) -> None:
        """One step done, or a problem worth a line of its own."""

    def start(self, title: str, total: int, done: int = 0) -> None:
        """A counted task begins (one project's images): ``done`` of ``total`` are already there."""

    def advance(self, count: int) -> None:
        """``count`` more of the current task are done."""

    def finish(self) -> None:
        """The current task ended."""


class Silent:
    """Progress for callers that only want the report."""

    def log(self, message: str) -> None:
        pass

    def start(self, title: str, total: int, done: int = 0) -> None:
        pass

    def advance(self, count: int) -> None:
        pass

    def finish(self) -> None:
        pass
