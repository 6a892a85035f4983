"""The ASGI application: routes for every API version, the shared services, error mapping."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from opencustomvision.api import blobs, health
from opencustomvision.api.body import RequestBodyMiddleware, body_limits
from opencustomvision.api.deps import Services
from opencustomvision.api.errors import UnexpectedErrorMiddleware, install_error_handlers
from opencustomvision.api.routing import VersionedApiMiddleware
from opencustomvision.api import prediction
from opencustomvision.api.scenario import PREFIX as SCENARIO_PREFIX, create_scenario_app
from opencustomvision.api.training import (
    domains,
    exports,
    images,
    iterations,
    predictions,
    projects,
    suggestions,
    tags,
)
from opencustomvision.captioning import BackgroundCaptioner, Labeler
from opencustomvision.config import Settings
from opencustomvision.domain.catalog import ACCURATE_BACKBONE, COMPACT_BACKBONE, DETECTION_BACKBONE
from opencustomvision.imaging.budget import DecodeBudget, set_decode_budget
from opencustomvision.imaging.fetch import FetchPolicy
from opencustomvision.embeddings import EmbeddingCache
from opencustomvision.inference import Predictor, StoredImageScorer
from opencustomvision.jobs.notify import TrainingNotifier
from opencustomvision.domain.exports import EXPORT_JOB
from opencustomvision.domain.jobs import TRAINING_JOB
from opencustomvision.jobs.maintenance import Maintenance
from opencustomvision.jobs.queue import JobQueue, new_worker_id
from opencustomvision.jobs.runner import JobHandler, JobRunner
from opencustomvision.jobs.exports import ExportJob
from opencustomvision.jobs.training import TrainingJob
from opencustomvision.jobs.worker import InProcessWorker
from opencustomvision.ml.heads import import_solvers
from opencustomvision.ml.registry import CLASSIFICATION, DETECTION, BackboneRegistry
from opencustomvision.portal import PREFIX as PORTAL_PREFIX, Portal
from opencustomvision.storage.blobs import BlobStore, open_blob_store
from opencustomvision.storage.db import create_db_engine, migrate, session_factory
from opencustomvision.storage.models import ServiceSecret
from opencustomvision.storage.signing import BlobLinkSigner

BLOB_LINK_SECRET = "blob-link-key"
# Made ready when the service starts, most wanted first: General (the default domain), detection, the compact domains.
BACKBONES_TO_PREPARE = ((CLASSIFICATION, ACCURATE_BACKBONE), (DETECTION, DETECTION_BACKBONE), (CLASSIFICATION, COMPACT_BACKBONE))


def shared_secret(session: Session, name: str) -> str:
    """A secret every replica reads from the database, created by whichever starts first."""
    stored = session.get(ServiceSecret, name)
    if stored is not None:
        return stored.value
    session.add(ServiceSecret(name=name, value=secrets.token_hex(32)))
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
    return session.get(ServiceSecret, name).value  # type: ignore[union-attr]


@dataclass(frozen=True)
class Core:
    """What both an API replica and an ``ocv worker`` are built on."""

    engine: Engine
    sessions: sessionmaker[Session]
    blobs: BlobStore
    backbones: BackboneRegistry
    embeddings: EmbeddingCache
    handlers: dict[str, JobHandler]

    def maintenance(self, settings: Settings) -> Maintenance:
        return Maintenance(self.sessions, self.blobs, grace_seconds=settings.orphan_blob_grace_seconds)


def build_core(settings: Settings) -> Core:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_db_engine(settings.database_url)
    migrate(engine)
    sessions = session_factory(engine)
    blobs = open_blob_store(settings.blob_url, settings.blob_dir)
    backbones = BackboneRegistry(settings.data_dir / "models")
    embeddings = EmbeddingCache(blobs)
    handlers: dict[str, JobHandler] = {
        TRAINING_JOB: TrainingJob(sessions, blobs, backbones, embeddings, TrainingNotifier(settings.smtp),
                                  advanced_max_seconds=settings.advanced_training_max_seconds),
        EXPORT_JOB: ExportJob(sessions, blobs, backbones),
    }
    return Core(engine, sessions, blobs, backbones, embeddings, handlers)


def build_services(settings: Settings) -> Services:
    set_decode_budget(DecodeBudget(settings.decode_budget_pixels, settings.decode_wait_seconds))
    core = build_core(settings)
    with core.sessions() as session:
        secret = shared_secret(session, BLOB_LINK_SECRET)
    predictor = Predictor(core.blobs, core.backbones)
    scorer = StoredImageScorer(predictor, core.embeddings, core.blobs)
    queue: JobQueue
    if settings.queue_url:
        from opencustomvision.jobs.rq_queue import RqJobQueue  # rq only where Redis is used

        queue = RqJobQueue(settings.queue_url)  # `ocv worker` processes run the jobs
    else:
        runner = JobRunner(core.sessions, core.handlers, worker_id=new_worker_id("in-process"))
        queue = InProcessWorker(core.sessions, runner, maintenance=core.maintenance(settings))
    return Services(
        settings=settings,
        engine=core.engine,
        sessions=core.sessions,
        blobs=core.blobs,
        signer=BlobLinkSigner(bytes.fromhex(secret), settings.signed_url_ttl_seconds),
        fetch_policy=FetchPolicy(allowed_hosts=settings.url_allowlist),
        predictor=predictor,
        scorer=scorer,
        jobs=queue,
        captioner=BackgroundCaptioner(core.sessions, Labeler(core.backbones, core.embeddings, scorer)),
    )


def create_app(settings: Settings, services: Services | None = None) -> FastAPI:
    services = services or build_services(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # In the background: the first answers never wait for it, a training that arrives first waits for what is left.
        services.predictor.backbones.prepare(BACKBONES_TO_PREPARE, warm_up=(import_solvers,))
        services.jobs.start()
        services.captioner.start()
        yield
        services.captioner.stop()
        services.jobs.stop()

    app = FastAPI(title="OpenCustomVision", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.services = services
    for router in (domains.router, exports.router, projects.router, tags.router, images.router, iterations.router, predictions.router, suggestions.router):
        app.include_router(router, prefix="/training")
    app.include_router(prediction.router, prefix="/prediction")
    app.include_router(blobs.router)
    app.include_router(health.router)
    app.mount(SCENARIO_PREFIX, create_scenario_app(services))
    # After the API, so its paths never reach the portal; the portal calls that API like any other client.
    portal = Portal()
    app.add_route("/", portal.index, methods=["GET", "HEAD"], include_in_schema=False)
    app.mount(PORTAL_PREFIX, portal.files)
    install_error_handlers(app)
    app.add_middleware(VersionedApiMiddleware)
    # Scenario's room (/v1) reads its own bodies and answers its own errors, in its own error body.
    rooms = (SCENARIO_PREFIX,)
    app.add_middleware(RequestBodyMiddleware, **body_limits(settings), skip=rooms)
    # Outermost, so the body reader answers its own refusals before anything counts them as bugs.
    app.add_middleware(UnexpectedErrorMiddleware, skip=rooms)
    return app
