"""Resources (accounts) and their keys. Only hashes of keys are stored."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from opencustomvision.storage.models import Resource

DEFAULT_RESOURCE_NAME = "default"


@dataclass(frozen=True)
class ResourceCredentials:
    name: str
    training_key: str
    prediction_key: str
    prediction_resource_id: str


def hash_key(key: str) -> str:
    # Keys are 128-bit random strings, so a fast unsalted hash is enough; looking up a hash
    # instead of comparing keys also keeps the comparison time independent of the key's content.
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> str:
    return secrets.token_hex(16)


def prediction_resource_id_for(name: str) -> str:
    # Same shape as Azure's ARM ids, which clients pass to PublishIteration unchanged.
    return (
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/opencustomvision"
        f"/providers/Microsoft.CognitiveServices/accounts/{name}-Prediction"
    )


class ResourceNameTaken(ValueError):
    pass


def create_resource(
    session: Session,
    name: str,
    *,
    training_key: str | None = None,
    prediction_key: str | None = None,
    prediction_resource_id: str | None = None,
) -> ResourceCredentials:
    credentials = ResourceCredentials(
        name=name,
        training_key=training_key or generate_key(),
        prediction_key=prediction_key or generate_key(),
        prediction_resource_id=prediction_resource_id or prediction_resource_id_for(name),
    )
    session.add(
        Resource(
            name=name,
            training_key_hash=hash_key(credentials.training_key),
            prediction_key_hash=hash_key(credentials.prediction_key),
            prediction_resource_id=credentials.prediction_resource_id,
        )
    )
    try:
        session.commit()
    except IntegrityError as error:
        session.rollback()
        raise ResourceNameTaken(f"a resource named {name!r} or with these keys already exists") from error
    return credentials


def list_resources(session: Session) -> list[Resource]:
    return list(session.scalars(select(Resource).order_by(Resource.created)))


def resource_for_training_key(session: Session, key: str) -> Resource | None:
    return session.scalars(select(Resource).where(Resource.training_key_hash == hash_key(key))).first()


def resource_for_prediction_key(session: Session, key: str) -> Resource | None:
    return session.scalars(select(Resource).where(Resource.prediction_key_hash == hash_key(key))).first()


def ensure_default_resource(session: Session, stored: ResourceCredentials | None, *,
                            training_key: str | None, prediction_key: str | None,
                            prediction_resource_id: str | None) -> ResourceCredentials:
    """The default resource's keys: those fixed in the environment, else the ones generated the first time."""
    wanted = ResourceCredentials(
        name=DEFAULT_RESOURCE_NAME,
        training_key=training_key or (stored.training_key if stored else generate_key()),
        prediction_key=prediction_key or (stored.prediction_key if stored else generate_key()),
        prediction_resource_id=prediction_resource_id
        or (stored.prediction_resource_id if stored else prediction_resource_id_for(DEFAULT_RESOURCE_NAME)),
    )
    resource = session.scalars(select(Resource).where(Resource.name == DEFAULT_RESOURCE_NAME)).first()
    if resource is None:
        return create_resource(
            session,
            DEFAULT_RESOURCE_NAME,
            training_key=wanted.training_key,
            prediction_key=wanted.prediction_key,
            prediction_resource_id=wanted.prediction_resource_id,
        )
    resource.training_key_hash = hash_key(wanted.training_key)
    resource.prediction_key_hash = hash_key(wanted.prediction_key)
    resource.prediction_resource_id = wanted.prediction_resource_id
    session.commit()
    return wanted
