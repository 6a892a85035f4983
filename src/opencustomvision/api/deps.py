"""What a handler needs: the shared services, a database session, the caller's resource."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from opencustomvision.captioning import BackgroundCaptioner
from opencustomvision.config import Settings
from opencustomvision.domain.errors import DomainError
from opencustomvision.domain.resources import resource_for_training_key
from opencustomvision.imaging.fetch import FetchPolicy
from opencustomvision.inference import Predictor, StoredImageScorer
from opencustomvision.jobs.queue import JobQueue
from opencustomvision.storage.blobs import BlobStore
from opencustomvision.storage.models import Resource
from opencustomvision.storage.signing import BlobLinkSigner

logger = logging.getLogger(__name__)

TRAINING_KEY_HEADERS = ("training-key", "ocp-apim-subscription-key")


@dataclass(frozen=True)
class Services:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    blobs: BlobStore
    signer: BlobLinkSigner
    fetch_policy: FetchPolicy
    predictor: Predictor
    scorer: StoredImageScorer
    jobs: JobQueue
    captioner: BackgroundCaptioner


def get_services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def get_session(services: Annotated[Services, Depends(get_services)]) -> Iterator[Session]:
    session = services.sessions()
    try:
        yield session
    finally:
        close_after_response(session)


def close_after_response(session: Session) -> None:
    """Close a request's session once its answer has gone out.

    A database that dropped the connection meanwhile (a restart) makes the closing rollback fail; raising then
    would not change the answer, but uvicorn would close the kept-alive connection that a proxy may already be
    reusing for the next request, which the proxy then answers with 502."""
    try:
        session.close()
    except DBAPIError as error:
        logger.warning("closing a session whose database connection was lost: %s", error.orig or error)
        session.invalidate()


def resource_for_headers(request: Request, session: Session, header_names: tuple[str, ...],
                         lookup: Callable[[Session, str], Resource | None]) -> Resource:
    """The resource whose key came in the first of ``header_names`` present; 401 otherwise."""
    key = next((value.strip() for name in header_names if (value := request.headers.get(name))), None)
    resource = lookup(session, key) if key else None
    if resource is None:
        raise DomainError("NotFoundApimSubscription", f"Access denied: send a valid key in the {header_names[0].title()} header.")
    return resource


def get_training_resource(request: Request, session: Annotated[Session, Depends(get_session)]) -> Resource:
    return resource_for_headers(request, session, TRAINING_KEY_HEADERS, resource_for_training_key)


class BlobLinks:
    """Absolute, signed URLs of blobs, served by this service under /blobs/."""

    def __init__(self, request: Request, signer: BlobLinkSigner) -> None:
        self._base = str(request.base_url).rstrip("/")
        self._signer = signer

    def url(self, key: str) -> str:
        link = self._signer.sign(key)
        return f"{self._base}/blobs/{link.key}?expires={link.expires}&signature={link.signature}"


def get_blob_links(request: Request, services: Annotated[Services, Depends(get_services)]) -> BlobLinks:
    return BlobLinks(request, services.signer)


SessionDep = Annotated[Session, Depends(get_session)]
ServicesDep = Annotated[Services, Depends(get_services)]
TrainingResource = Annotated[Resource, Depends(get_training_resource)]
Links = Annotated[BlobLinks, Depends(get_blob_links)]
