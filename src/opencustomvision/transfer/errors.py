"""Why an import or export cannot start."""

from __future__ import annotations

from opencustomvision.transfer.datasets.model import Problem


class Refused(Exception):
    """Nothing was done. ``usage``: the arguments are at fault (exit code 2); ``problems``: what is wrong
    in the dataset, each naming its file and field."""

    def __init__(self, message: str, *, usage: bool = False, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.usage = usage
        self.problems = problems or []
