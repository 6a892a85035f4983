"""Shared fixtures: a live server on loopback with two resources, and the shared data sets."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import create_engine, text
from aiosmtpd.controller import Controller

from bench.scale import CLUSTER as CLUSTER_SCRIPT
from bench.scale import Fleet as ClusterHandle
from bench.scale import attach as attach_cluster
from bench.scale import name_values
from opencustomvision.api.deps import Services
from opencustomvision.app import build_services, create_app
from opencustomvision.cli import prepare_default_resource
from opencustomvision.config import Settings
from opencustomvision.domain.resources import ResourceCredentials, create_resource
from opencustomvision.jobs.notify import SmtpSettings

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data set {path} is absent (expected beside the repository, as in CI)")
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class MailSink:
    """Keeps every message an SMTP client delivers, as a mail server on loopback would."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # type: ignore[no-untyped-def]  # noqa: N802 - aiosmtpd's hook name
        self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@dataclass
class LiveServer:
    endpoint: str
    settings: Settings
    default: ResourceCredentials
    other: ResourceCredentials
    mail: MailSink

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Training-Key": key if key is not None else self.default.training_key}
        return httpx.Client(base_url=self.endpoint, headers=headers, timeout=60)

    def training_url(self, path: str, version: str = "v3.3") -> str:
        return f"{self.endpoint}/customvision/{version}/training{path}"


def _database_url(data_dir: Path, *, shared: bool = False) -> str:
    """A database of the test's own: a SQLite file in ``data_dir``, or, where CI runs the suite on PostgreSQL
    (OCV_TEST_DATABASE_URL), a schema of its own there, so that no two servers' workers take each other's jobs.
    ``shared``: the database itself (the session-wide live server, whose rows CI checks for)."""
    base = os.environ.get("OCV_TEST_DATABASE_URL")
    if not base:
        return f"sqlite:///{data_dir / 'ocv.sqlite3'}"
    if shared:
        return base
    schema = "t_" + hashlib.sha1(str(data_dir).encode()).hexdigest()[:16]
    engine = create_engine(base)
    with engine.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    engine.dispose()
    return f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"


@contextmanager
def serving(settings: Settings, services: Services | None = None) -> Iterator[str]:
    """The service on a free loopback port in a thread of this process; yields its endpoint."""
    port = _free_port()
    app = create_app(settings, services or build_services(settings))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("ocv-data")
    mail = MailSink()
    smtp = Controller(mail, hostname="127.0.0.1", port=_free_port())
    smtp.start()
    settings = Settings(
        data_dir=data_dir,
        database_url=_database_url(data_dir, shared=True),
        url_allowlist=frozenset(),
        smtp=SmtpSettings(host="127.0.0.1", port=smtp.port, sender="ocv@test.invalid"),
        advanced_training_max_seconds=3600,  # off by default; the tests exercise it
    )
    default = prepare_default_resource(settings)
    services = build_services(settings)
    with services.sessions() as session:
        other = create_resource(session, f"other-{uuid.uuid4().hex[:8]}")
    with serving(settings, services) as endpoint:
        yield LiveServer(endpoint=endpoint, settings=settings, default=default, other=other, mail=mail)
    smtp.stop()


@pytest.fixture
def unique_name() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


# ---------------------------------------------------------------------------------------------------------------
# The fleet (scripts/cluster.sh): PostgreSQL, Redis, SeaweedFS, API replicas behind nginx, RQ workers.



@dataclass
class Fleet(ClusterHandle):
    """The parts of one ``scripts/cluster.sh up`` (a hand on each: stop, start, kill) and their settings."""

    env: dict[str, str] = field(default_factory=dict)  # what the fleet's processes run with (OCV_*, AWS_*)

    def redis_url(self, db: int = 0) -> str:
        return self.env["OCV_QUEUE_URL"].rsplit("/", 1)[0] + f"/{db}"

    @contextmanager
    def aws_env(self) -> Iterator[None]:
        """This process sees the fleet's S3 endpoint and credentials (as the fleet's processes do)."""
        saved = {name: os.environ.get(name) for name in self.env if name.startswith("AWS_")}
        os.environ.update({name: value for name, value in self.env.items() if name.startswith("AWS_")})
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """The whole fleet, once per test run, in the PostgreSQL pass only (it brings a PostgreSQL of its own, which the
    fault tests restart; CI's server stays untouched). Its parts are Debian's; CI installs them (.ci/run)."""
    if not os.environ.get("OCV_TEST_DATABASE_URL"):
        pytest.skip("fleet tests run in the PostgreSQL pass (OCV_TEST_DATABASE_URL set), once per CI run")
    missing = [name for name in ("redis-server", "nginx") if shutil.which(name) is None]
    missing += [] if Path("/usr/lib/postgresql").is_dir() else ["postgresql"]
    if missing:
        message = f"the fleet needs Debian's {', '.join(missing)} (apt-get install redis-server nginx postgresql)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    # OCV_TEST_FLEET_DIR: a cluster already up (scripts/cluster.sh up), reused and left running: for working on
    # these tests without paying for a start each run.
    existing = os.environ.get("OCV_TEST_FLEET_DIR")
    state = Path(existing) if existing else tmp_path_factory.mktemp("cluster")
    environment = dict(os.environ, OCV_CLUSTER_DIR=str(state))
    if not existing:
        up = subprocess.run([str(CLUSTER_SCRIPT), "up"], env=environment, capture_output=True, text=True, timeout=300)
        if up.returncode != 0:
            pytest.fail(f"scripts/cluster.sh up failed:\n{up.stderr[-3000:]}")
    handle = attach_cluster(state)
    settings = name_values(subprocess.run([str(CLUSTER_SCRIPT), "env"], env=environment, capture_output=True, text=True,
                                          check=True).stdout)
    try:
        yield Fleet(**vars(handle), env=settings)
    finally:
        if not existing:
            subprocess.run([str(CLUSTER_SCRIPT), "down"], env=environment, capture_output=True, timeout=300)
