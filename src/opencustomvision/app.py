"""The ASGI application: routes for every API version, the shared services, error mapping."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as SqlAlchemyTimeout
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException

from opencustomvision.api import blobs, health
from opencustomvision.api.body import RequestBodyMiddleware
from opencustomvision.api.deps import Services
from opencustomvision.api.errors import (
    UnexpectedErrorMiddleware,
    database_unavailable_handler,
    decode_busy_handler,
    domain_error_handler,
    http_error_handler,
    validation_error_handler,
)
from opencustomvision.api.routing import VersionedApiMiddleware
from opencustomvision.api import prediction
from opencustomvision.api.training import (
    domains,
    images,
    iterations,
    predictions,
    projects,
    suggestions,
    tags,
    unavailable,
)
from opencustomvision.config import Settings
from opencustomvision.domain.catalog import ACCURATE_BACKBONE, COMPACT_BACKBONE, DETECTION_BACKBONE
from opencustomvision.domain.errors import DomainError
from opencustomvision.imaging.budget import DecodeBudget, DecodeBusy, set_decode_budget
from opencustomvision.imaging.fetch import FetchPolicy
from opencustomvision.embeddings import EmbeddingCache
from opencustomvision.inference import Predictor, StoredImageScorer
from opencustomvision.jobs.notify import TrainingNotifier
from opencustomvision.domain.jobs import TRAINING_JOB
from opencustomvision.jobs.maintenance import Maintenance
from opencustomvision.jobs.queue import new_worker_id
from opencustomvision.jobs.runner import JobHandler, JobRunner
from opencustomvision.jobs.training import TrainingJob
from opencustomvision.jobs.worker import InProcessWorker
from opencustomvision.ml.heads import import_solvers
from opencustomvision.ml.registry import CLASSIFICATION, DETECTION, BackboneRegistry
from opencustomvision.storage.blobs import LocalBlobStore
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


def build_services(settings: Settings) -> Services:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    set_decode_budget(DecodeBudget(settings.decode_budget_pixels, settings.decode_wait_seconds))
    engine = create_db_engine(settings.database_url)
    migrate(engine)
    sessions = session_factory(engine)
    with sessions() as session:
        secret = shared_secret(session, BLOB_LINK_SECRET)
    blobs = LocalBlobStore(settings.blob_dir)
    backbones = BackboneRegistry(settings.data_dir / "models")
    embeddings = EmbeddingCache(blobs)
    predictor = Predictor(blobs, backbones)
    handlers: dict[str, JobHandler] = {
        TRAINING_JOB: TrainingJob(sessions, blobs, backbones, embeddings, TrainingNotifier(settings.smtp),
                                  advanced_max_seconds=settings.advanced_training_max_seconds),
    }
    runner = JobRunner(sessions, handlers, worker_id=new_worker_id("in-process"))
    return Services(
        settings=settings,
        engine=engine,
        sessions=sessions,
        blobs=blobs,
        signer=BlobLinkSigner(bytes.fromhex(secret), settings.signed_url_ttl_seconds),
        fetch_policy=FetchPolicy(allowed_hosts=settings.url_allowlist),
        predictor=predictor,
        scorer=StoredImageScorer(predictor, embeddings, blobs),
        jobs=InProcessWorker(sessions, runner, maintenance=Maintenance(
            sessions, blobs, grace_seconds=settings.orphan_blob_grace_seconds)),
    )


def create_app(settings: Settings, services: Services | None = None) -> FastAPI:
    services = services or build_services(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # In the background: the first answers never wait for it, a training that arrives first waits for what is left.
        services.predictor.backbones.prepare(BACKBONES_TO_PREPARE, warm_up=(import_solvers,))
        services.jobs.start()
        yield
        services.jobs.stop()

    app = FastAPI(title="OpenCustomVision", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.services = services
    for router in (domains.router, projects.router, tags.router, images.router, iterations.router, predictions.router, suggestions.router, unavailable.router):
        app.include_router(router, prefix="/training")
    app.include_router(prediction.router, prefix="/prediction")
    app.include_router(blobs.router)
    app.include_router(health.router)
    app.add_exception_handler(DomainError, domain_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(ValidationError, validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(DecodeBusy, decode_busy_handler)
    # A database that is restarting, unreachable, or whose connections are all taken: retry, not a bug.
    app.add_exception_handler(OperationalError, database_unavailable_handler)
    app.add_exception_handler(SqlAlchemyTimeout, database_unavailable_handler)
    app.add_middleware(VersionedApiMiddleware)
    app.add_middleware(RequestBodyMiddleware, max_bytes=settings.max_request_bytes,
                       idle_timeout=settings.body_idle_timeout_seconds, min_bytes_per_second=settings.body_min_bytes_per_second)
    # Outermost, so the body reader answers its own refusals before anything counts them as bugs.
    app.add_middleware(UnexpectedErrorMiddleware)
    return app
