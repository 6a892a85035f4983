"""``ocv serve``: run the service, printing the endpoint and the default resource's keys."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict
from pathlib import Path

from opencustomvision.config import Settings
from opencustomvision.domain.resources import ResourceCredentials, ensure_default_resource
from opencustomvision.storage.db import create_db_engine, migrate, session_factory

DEFAULT_CREDENTIALS_FILE = "default-resource.json"


def _read_stored(path: Path) -> ResourceCredentials | None:
    try:
        return ResourceCredentials(**json.loads(path.read_text()))
    except (FileNotFoundError, TypeError, ValueError):
        return None


def _write_private(path: Path, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


def prepare_default_resource(settings: Settings) -> ResourceCredentials:
    """Keys of the default resource: fixed by the environment, or generated once and kept in the data dir."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_db_engine(settings.database_url)
    migrate(engine)
    stored_path = settings.data_dir / DEFAULT_CREDENTIALS_FILE
    with session_factory(engine)() as session:
        credentials = ensure_default_resource(
            session,
            _read_stored(stored_path),
            training_key=settings.training_key,
            prediction_key=settings.prediction_key,
            prediction_resource_id=settings.prediction_resource_id,
            scenario_api_key=settings.scenario_api_key,
            scenario_api_secret=settings.scenario_api_secret,
        )
    engine.dispose()
    _write_private(stored_path, json.dumps(asdict(credentials), indent=2))
    return credentials


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from opencustomvision.app import create_app

    settings = Settings.from_env(args.data_dir)
    credentials = prepare_default_resource(settings)
    endpoint = f"http://{args.host}:{args.port}"
    print(f"OpenCustomVision on {endpoint}", flush=True)
    print(f"  data directory:         {settings.data_dir}")
    print(f"  endpoint:               {endpoint}")
    print(f"  web portal:             {endpoint}/  (sign in with the training key)")
    print(f"  training key:           {credentials.training_key}")
    print(f"  prediction key:         {credentials.prediction_key}")
    print(f"  prediction resource id: {credentials.prediction_resource_id}")
    print(f"  Scenario API:           {endpoint}/v1")
    print(f"  Scenario API key:       {credentials.scenario_api_key}")
    print(f"  Scenario API secret:    {credentials.scenario_api_secret}", flush=True)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level)
    return 0


def register(commands: argparse._SubParsersAction, data_dir: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("serve", parents=[data_dir], help="run the service")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--log-level", default="info")
    parser.set_defaults(run=serve)
