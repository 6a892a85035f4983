"""What ``ocv migrate`` and ``ocv dataset`` show while they work: a bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import pytest

import io

from rich.console import Console

from opencustomvision.cli.remote import BarProgress, LineProgress

pytestmark = pytest.mark.db_independent


def test_a_terminal_gets_a_bar_with_count_rate_and_time_left() -> None:
    screen = io.StringIO()
    progress = BarProgress(Console(file=screen, force_terminal=True, width=120))
    progress.start("fork and scissors", 40)
    progress.advance(16)
    progress.log("project 'fork and scissors': created")
    progress.finish()
    progress.close()
    shown = screen.getvalue()
    assert "fork and scissors" in shown and "16/40" in shown and "images/s" in shown
    assert "project 'fork and scissors': created" in shown


def test_a_pipe_gets_one_line_per_step() -> None:
    log = io.StringIO()
    progress = LineProgress(log)
    progress.start("trees", 25)
    progress.advance(10)
    progress.advance(15)
    lines = log.getvalue().splitlines()
    assert [line.split(" ", 1)[1].split(" (")[0] for line in lines] == ["trees: 0/25 images", "trees: 10/25 images",
                                                                      "trees: 25/25 images"]
    assert all("\x1b" not in line for line in lines)
