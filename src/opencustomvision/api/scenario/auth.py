"""HTTP Basic ``api_key:api_secret``, as Scenario's SDK sends it, resolved to the caller's resource."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import Depends, Request

from opencustomvision.api.deps import SessionDep
from opencustomvision.domain.errors import DomainError
from opencustomvision.domain.scenario_keys import resource_for_scenario_keys
from opencustomvision.storage.models import Resource

_REFUSAL = "Unauthorized: send your Scenario API key and secret with HTTP Basic authentication (api_key:api_secret)."


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    key, separator, secret = decoded.partition(":")
    return (key, secret) if separator and key and secret else None


def get_scenario_resource(request: Request, session: SessionDep) -> Resource:
    credentials = _basic_credentials(request.headers.get("authorization"))
    resource = resource_for_scenario_keys(session, *credentials) if credentials else None
    if resource is None:
        raise DomainError("NotFoundApimSubscription", _REFUSAL)
    return resource


ScenarioResource = Annotated[Resource, Depends(get_scenario_resource)]
