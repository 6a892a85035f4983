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

import json

import httpx
import pytest
import uvicorn
from sqlalchemy import create_engine, text
from aiosmtpd.controller import Controller
from scenario_sdk import Scenario
from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
from azure.cognitiveservices.vision.customvision.training.models import (
    CustomVisionErrorException,
    ImageFileCreateBatch,
    ImageFileCreateEntry,
    Region,
)
from msrest.authentication import ApiKeyCredentials

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

# The portal tests' browser fixtures (chromium, page), one Chromium for the whole session.
pytest_plugins = ("tests.portal_browser",)

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

    @property
    def scenario_url(self) -> str:
        return f"{self.endpoint}/v1"

    def scenario(self, credentials: ResourceCredentials | None = None, *, secret: str | None = None) -> Scenario:
        """The official Scenario SDK, with a resource's Scenario key pair (``secret`` overrides its secret)."""
        chosen = credentials or self.default
        return Scenario(api_key=chosen.scenario_api_key, api_secret=secret or chosen.scenario_api_secret,
                        base_url=self.scenario_url, max_retries=0, timeout=120)


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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On the PostgreSQL pass (OCV_TEST_DATABASE_URL), tests marked db_independent are skipped (the SQLite pass ran
    them, and a second run would only double CI's time), and so are those marked heavy (they train many models end
    to end through the same domain functions and queries that the API tests run on both databases), unless
    OCV_TEST_ALL_ON_POSTGRESQL is set."""
    if not os.environ.get("OCV_TEST_DATABASE_URL"):
        return
    independent = pytest.mark.skip(reason="db_independent: run in the SQLite pass")
    heavy = pytest.mark.skip(reason="heavy: run in the SQLite pass (OCV_TEST_ALL_ON_POSTGRESQL=1 runs it here too)")
    every_test = bool(os.environ.get("OCV_TEST_ALL_ON_POSTGRESQL"))
    for item in items:
        if item.get_closest_marker("db_independent"):
            item.add_marker(independent)
        elif item.get_closest_marker("heavy") and not every_test:
            item.add_marker(heavy)


def trained(trainer: CustomVisionTrainingClient, project_id: str):  # type: ignore[no-untyped-def]
    """TrainProject, then GetIteration until the worker is done; the iteration must be Completed."""
    iteration = trainer.train_project(project_id)
    assert iteration.status == "Training"
    deadline = time.monotonic() + 900
    while iteration.status == "Training":
        assert time.monotonic() < deadline, "training did not finish in time"
        time.sleep(1)
        iteration = trainer.get_iteration(project_id, iteration.id)
    assert iteration.status == "Completed", iteration
    return iteration


def error_code(call) -> str:  # type: ignore[no-untyped-def]
    """The CustomVisionError code an SDK call fails with."""
    with pytest.raises(CustomVisionErrorException) as caught:
        call()
    return caught.value.error.code


@pytest.fixture(scope="session")
def fork_scissors_detector(live_server: LiveServer):  # type: ignore[no-untyped-def]
    """The official object-detection quickstart's detector (fork / scissors), trained once per session: the
    detection SDK tests and the export tests share it. (trainer, project, iteration, tags, data folder)."""
    base = shared_data("customvision-samples", "ObjectDetection")
    trainer = CustomVisionTrainingClient(live_server.endpoint, ApiKeyCredentials(in_headers={"Training-key": live_server.default.training_key}))
    domain = next(d for d in trainer.get_domains() if d.type == "ObjectDetection" and d.name == "General")
    project = trainer.create_project(f"detection-{uuid.uuid4().hex[:8]}", domain_id=domain.id)
    tags = {name: trainer.create_tag(project.id, name) for name in ("fork", "scissors")}

    # Too few images: the spec's validation code, and no iteration.
    assert error_code(lambda: trainer.train_project(project.id)) == "BadRequestDetectionTrainingValidationFailed"

    boxes = json.loads((base / "regions.json").read_text())
    entries = []
    for name, tag in tags.items():
        for stem, (left, top, width, height) in sorted(boxes[name].items()):
            entries.append(ImageFileCreateEntry(
                name=f"{stem}.jpg", contents=(base / "Images" / name / f"{stem}.jpg").read_bytes(),
                regions=[Region(tag_id=tag.id, left=left, top=top, width=width, height=height)]))
    for start in range(0, len(entries), 64):
        assert trainer.create_images_from_files(project.id, ImageFileCreateBatch(images=entries[start:start + 64])).is_batch_successful

    assert error_code(lambda: trainer.train_project(project.id, training_type="Advanced")) == "BadRequestDomainNotSupportedForAdvancedTraining"
    iteration = trained(trainer, project.id)
    return trainer, project, iteration, tags, base
