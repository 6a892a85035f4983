"""The ASGI application: routes for every API version, the shared services, error mapping."""

from __future__ import annotations

import secrets

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from opencustomvision.api import blobs
from opencustomvision.api.body_limit import BodySizeLimitMiddleware
from opencustomvision.api.deps import Services
from opencustomvision.api.errors import domain_error_handler, error_response, http_error_handler, validation_error_handler
from opencustomvision.api.routing import VersionedApiMiddleware
from opencustomvision.api.training import domains, images, projects, tags, unavailable
from opencustomvision.config import Settings
from opencustomvision.domain.errors import DomainError
from opencustomvision.imaging.fetch import FetchPolicy
from opencustomvision.storage.blobs import LocalBlobStore
from opencustomvision.storage.db import create_db_engine, migrate, session_factory
from opencustomvision.storage.models import ServiceSecret
from opencustomvision.storage.signing import BlobLinkSigner

BLOB_LINK_SECRET = "blob-link-key"


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
    engine = create_db_engine(settings.database_url)
    migrate(engine)
    sessions = session_factory(engine)
    with sessions() as session:
        secret = shared_secret(session, BLOB_LINK_SECRET)
    return Services(
        settings=settings,
        engine=engine,
        sessions=sessions,
        blobs=LocalBlobStore(settings.blob_dir),
        signer=BlobLinkSigner(bytes.fromhex(secret), settings.signed_url_ttl_seconds),
        fetch_policy=FetchPolicy(allowed_hosts=settings.url_allowlist),
    )


async def unexpected_error_handler(request: Request, error: Exception) -> Response:
    return error_response(request, "ErrorUnknown", "The server failed to handle this request.", 500)


def create_app(settings: Settings, services: Services | None = None) -> FastAPI:
    app = FastAPI(title="OpenCustomVision", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.services = services or build_services(settings)
    for router in (domains.router, projects.router, tags.router, images.router, unavailable.router):
        app.include_router(router, prefix="/training")
    app.include_router(blobs.router)
    app.add_exception_handler(DomainError, domain_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(ValidationError, validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(Exception, unexpected_error_handler)
    app.add_middleware(VersionedApiMiddleware)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_bytes)
    return app
