"""Shared by the benchmarks: run ``ocv serve`` in a subprocess on a free loopback port, and measure it.

    with ocv_server(data_dir, log, training_key=key) as server:
        ...  # server.endpoint, server.pid, server.startup_seconds, server.peak_rss_kib()

The server gets the caller's environment minus every ``OCV_*`` variable, plus the keys given here,
so a developer's own settings never leak into a measurement.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

TRAINING_API = "/customvision/v3.3/training"

__all__ = ["TRAINING_API", "Server", "free_port", "ocv_command", "ocv_server", "peak_rss_kib", "percentile", "process_tree"]


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank value at ``fraction`` (0.95: p95) of ``values``."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ocv_command() -> list[str]:
    script = Path(sys.executable).with_name("ocv")
    if script.exists():
        return [str(script)]
    found = shutil.which("ocv")
    return [found] if found else [sys.executable, "-m", "opencustomvision.cli"]


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += children.get(current, [])
    return tree


def peak_rss_kib(pid: int) -> tuple[int, int]:
    """Sum of VmHWM (peak resident set) over the process and its children, and how many processes."""
    total = count = 0
    for member in process_tree(pid):
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
                    count += 1
        except OSError:
            pass
    return total, count


def wait_until_up(server: subprocess.Popen[bytes], endpoint: str, key: str, log: Path, timeout: float = 60) -> float:
    """Seconds until GET /domains answers 200; exits the benchmark if the server dies or never answers."""
    started = time.perf_counter()
    deadline = started + timeout
    while time.perf_counter() < deadline:
        if server.poll() is not None:
            sys.exit(f"bench: the server exited with code {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{endpoint}{TRAINING_API}/domains", headers={"Training-Key": key}, timeout=2).status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    sys.exit(f"bench: the server did not answer within {timeout:.0f}s:\n{log.read_text()[-3000:]}")


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    endpoint: str
    data_dir: Path
    log: Path
    startup_seconds: float
    started_at: float  # time.perf_counter() when the process was started

    @property
    def pid(self) -> int:
        return self.process.pid

    def peak_rss_kib(self) -> tuple[int, int]:
        return peak_rss_kib(self.process.pid)


@contextmanager
def ocv_server(
    data_dir: Path,
    log: Path,
    *,
    training_key: str,
    prediction_key: str | None = None,
    prediction_resource_id: str | None = None,
    database_url: str | None = None,
    log_level: str = "warning",
    timeout: float = 60,
    settings: dict[str, str] | None = None,
) -> Iterator[Server]:
    """``ocv serve`` on a free loopback port with ``data_dir``; stopped (SIGTERM, then SIGKILL) on exit.

    ``settings``: further ``OCV_*`` variables for this server (e.g. the decode budget under test)."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {name: value for name, value in os.environ.items() if not name.startswith("OCV_")}
    env["OCV_TRAINING_KEY"] = training_key
    if prediction_key:
        env["OCV_PREDICTION_KEY"] = prediction_key
    if prediction_resource_id:
        env["OCV_PREDICTION_RESOURCE_ID"] = prediction_resource_id
    if database_url:
        env["OCV_DATABASE_URL"] = database_url
    env.update(settings or {})
    command = [*ocv_command(), "serve", "--data-dir", str(data_dir), "--host", "127.0.0.1",
               "--port", str(port), "--log-level", log_level]
    with log.open("wb") as log_file:
        started_at = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        startup = wait_until_up(process, endpoint, training_key, log, timeout)
        yield Server(process=process, endpoint=endpoint, data_dir=data_dir, log=log, startup_seconds=startup, started_at=started_at)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
