"""Resources (accounts) and their keys. Only hashes of keys are stored."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from opencustomvision.domain.keys import generate_key, hash_key
from opencustomvision.domain.scenario_keys import ScenarioKeys, generate_scenario_keys, set_scenario_keys
from opencustomvision.storage.models import Resource

DEFAULT_RESOURCE_NAME = "default"


@dataclass(frozen=True)
class ResourceCredentials:
    name: str
    training_key: str
    prediction_key: str
    prediction_resource_id: str
    # Scenario's API (HTTP Basic); None only when read from a file written before it existed.
    scenario_api_key: str | None = None
    scenario_api_secret: str | None = None


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
    scenario_keys: ScenarioKeys | None = None,
) -> ResourceCredentials:
    scenario_keys = scenario_keys or generate_scenario_keys()
    credentials = ResourceCredentials(
        name=name,
        training_key=training_key or generate_key(),
        prediction_key=prediction_key or generate_key(),
        prediction_resource_id=prediction_resource_id or prediction_resource_id_for(name),
        scenario_api_key=scenario_keys.api_key,
        scenario_api_secret=scenario_keys.api_secret,
    )
    resource = Resource(
        name=name,
        training_key_hash=hash_key(credentials.training_key),
        prediction_key_hash=hash_key(credentials.prediction_key),
        prediction_resource_id=credentials.prediction_resource_id,
    )
    session.add(resource)
    try:
        session.flush()
        set_scenario_keys(session, resource, scenario_keys)
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
                            prediction_resource_id: str | None, scenario_api_key: str | None = None,
                            scenario_api_secret: str | None = None) -> ResourceCredentials:
    """The default resource's keys: those fixed in the environment, else the ones generated the first time."""
    generated = generate_scenario_keys()
    scenario_keys = ScenarioKeys(
        api_key=scenario_api_key or (stored and stored.scenario_api_key) or generated.api_key,
        api_secret=scenario_api_secret or (stored and stored.scenario_api_secret) or generated.api_secret,
    )
    wanted = ResourceCredentials(
        name=DEFAULT_RESOURCE_NAME,
        training_key=training_key or (stored.training_key if stored else generate_key()),
        prediction_key=prediction_key or (stored.prediction_key if stored else generate_key()),
        prediction_resource_id=prediction_resource_id
        or (stored.prediction_resource_id if stored else prediction_resource_id_for(DEFAULT_RESOURCE_NAME)),
        scenario_api_key=scenario_keys.api_key,
        scenario_api_secret=scenario_keys.api_secret,
    )
    resource = session.scalars(select(Resource).where(Resource.name == DEFAULT_RESOURCE_NAME)).first()
    if resource is None:
        return create_resource(
            session,
            DEFAULT_RESOURCE_NAME,
            training_key=wanted.training_key,
            prediction_key=wanted.prediction_key,
            prediction_resource_id=wanted.prediction_resource_id,
            scenario_keys=scenario_keys,
        )
    resource.training_key_hash = hash_key(wanted.training_key)
    resource.prediction_key_hash = hash_key(wanted.prediction_key)
    resource.prediction_resource_id = wanted.prediction_resource_id
    set_scenario_keys(session, resource, scenario_keys)
    session.commit()
    return wanted
