"""What a handler needs: the shared services, a database session, the caller's resource."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from opencustomvision.config import Settings
from opencustomvision.domain.errors import DomainError
from opencustomvision.domain.resources import resource_for_training_key
from opencustomvision.imaging.fetch import FetchPolicy
from opencustomvision.inference import Predictor, StoredImageScorer
from opencustomvision.jobs.worker import InProcessWorker
from opencustomvision.storage.blobs import BlobStore
from opencustomvision.storage.models import Resource
from opencustomvision.storage.signing import BlobLinkSigner

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
    worker: InProcessWorker


def get_services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def get_session(services: Annotated[Services, Depends(get_services)]) -> Iterator[Session]:
    with services.sessions() as session:
        yield session


def key_from(request: Request, header_names: tuple[str, ...]) -> str | None:
    for name in header_names:
        value = request.headers.get(name)
        if value:
            return value.strip()
    return None


def get_training_resource(request: Request, session: Annotated[Session, Depends(get_session)]) -> Resource:
    key = key_from(request, TRAINING_KEY_HEADERS)
    resource = resource_for_training_key(session, key) if key else None
    if resource is None:
        raise DomainError("NotFoundApimSubscription", "Access denied: send a valid key in the Training-Key header.")
    return resource


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
