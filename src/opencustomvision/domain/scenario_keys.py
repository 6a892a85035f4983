"""Scenario key pairs: each resource's HTTP Basic ``api_key:api_secret`` for Scenario's API, kept as hashes."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from opencustomvision.domain.keys import hash_key
from opencustomvision.storage.models import Resource, ScenarioKeyPair

KEY_PREFIX = "api_"


@dataclass(frozen=True)
class ScenarioKeys:
    api_key: str
    api_secret: str


def generate_scenario_keys() -> ScenarioKeys:
    # The key names the pair (Scenario's keys read "api_..."); the secret is what proves it.
    return ScenarioKeys(api_key=KEY_PREFIX + secrets.token_urlsafe(18), api_secret=secrets.token_urlsafe(24))


def set_scenario_keys(session: Session, resource: Resource, keys: ScenarioKeys) -> None:
    """Give ``resource`` this pair, replacing any it had; the caller commits."""
    pair = session.get(ScenarioKeyPair, resource.id)
    if pair is None:
        pair = ScenarioKeyPair(resource_id=resource.id)
        session.add(pair)
    pair.key_hash = hash_key(keys.api_key)
    pair.secret_hash = hash_key(keys.api_secret)


def resource_for_scenario_keys(session: Session, api_key: str, api_secret: str) -> Resource | None:
    """The resource this pair belongs to, or None: an unknown key and a wrong secret look the same."""
    pair = session.scalars(select(ScenarioKeyPair).where(ScenarioKeyPair.key_hash == hash_key(api_key))).first()
    # Compare the secret's hash in constant time even when the key is unknown, so timing tells nothing.
    expected = pair.secret_hash if pair is not None else hash_key(secrets.token_hex(16))
    if not hmac.compare_digest(expected, hash_key(api_secret)) or pair is None:
        return None
    return session.get(Resource, pair.resource_id)
