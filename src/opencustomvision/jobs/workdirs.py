"""Work folders of jobs that run in child processes (training a detector, fine-tuning, exports).

Each process keeps its folders under ``<tmp>/ocv-work/<host>-<pid>/``, so a process killed with -9 leaves
folders that the next worker on this machine recognises as nobody's and removes.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)


def work_root() -> Path:
    return Path(tempfile.gettempdir()) / "ocv-work"


def _owner_folder(root: Path) -> Path:
    return root / f"{socket.gethostname()}-{os.getpid()}"


@contextmanager
def job_workdir(prefix: str, root: Path | None = None) -> Iterator[Path]:
    """A fresh folder for one job, removed when the job is done with it."""
    owner = _owner_folder(root or work_root())
    owner.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=prefix, dir=owner) as directory:
        yield Path(directory)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def sweep_stale_workdirs(root: Path | None = None) -> list[Path]:
    """Remove the work folders of processes of this machine that no longer run. Returns what was removed."""
    root = root or work_root()
    host = socket.gethostname()
    removed = []
    for owner in root.glob(f"{host}-*") if root.is_dir() else ():
        pid = owner.name.removeprefix(f"{host}-")
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(owner, ignore_errors=True)
            removed.append(owner)
    if removed:
        logger.info("removed %d work folders of processes that ended: %s", len(removed), ", ".join(p.name for p in removed))
    return removed
