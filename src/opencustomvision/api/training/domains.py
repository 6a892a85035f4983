from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from starlette.responses import Response

from opencustomvision.api import schemas
from opencustomvision.api.deps import TrainingResource
from opencustomvision.api.negotiation import render
from opencustomvision.api.presenters import present_domain
from opencustomvision.domain.catalog import DOMAINS, find_domain
from opencustomvision.domain.errors import not_found

router = APIRouter()


@router.get("/domains")
def get_domains(request: Request, _: TrainingResource) -> Response:
    return render(request, [present_domain(domain) for domain in DOMAINS], items=schemas.Domain)


@router.get("/domains/{domain_id:uuid}")
def get_domain(request: Request, domain_id: uuid.UUID, _: TrainingResource) -> Response:
    domain = find_domain(str(domain_id))
    if domain is None:
        raise not_found("NotFoundDomain", "Domain", domain_id)
    return render(request, present_domain(domain))
