"""The ``ocv`` command: run the service, manage resources (accounts) and their keys."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from opencustomvision.config import Settings
from opencustomvision.domain.resources import (
    ResourceCredentials,
    ResourceNameTaken,
    create_resource,
    ensure_default_resource,
    list_resources,
)
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
    print(f"  training key:           {credentials.training_key}")
    print(f"  prediction key:         {credentials.prediction_key}")
    print(f"  prediction resource id: {credentials.prediction_resource_id}", flush=True)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level)
    return 0


def resources_add(args: argparse.Namespace) -> int:
    settings = Settings.from_env(args.data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_db_engine(settings.database_url)
    migrate(engine)
    with session_factory(engine)() as session:
        try:
            credentials = create_resource(session, args.name)
        except ResourceNameTaken as error:
            print(f"ocv: {error}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps({
            "name": credentials.name,
            "trainingKey": credentials.training_key,
            "predictionKey": credentials.prediction_key,
            "predictionResourceId": credentials.prediction_resource_id,
        }))
    else:
        print(f"resource:               {credentials.name}")
        print(f"training key:           {credentials.training_key}")
        print(f"prediction key:         {credentials.prediction_key}")
        print(f"prediction resource id: {credentials.prediction_resource_id}")
        print("Keep the keys now: they are stored only as hashes and cannot be shown again.")
    return 0


def resources_list(args: argparse.Namespace) -> int:
    settings = Settings.from_env(args.data_dir)
    engine = create_db_engine(settings.database_url)
    migrate(engine)
    with session_factory(engine)() as session:
        for resource in list_resources(session):
            print(f"{resource.name}\t{resource.prediction_resource_id}\t{resource.created.isoformat()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ocv", description="OpenCustomVision: a self-hosted Custom Vision service.")
    commands = parser.add_subparsers(dest="command", required=True)

    data_dir = argparse.ArgumentParser(add_help=False)
    data_dir.add_argument("--data-dir", default=None, help="data folder (default: $OCV_DATA_DIR or ./ocv-data)")

    serve_parser = commands.add_parser("serve", parents=[data_dir], help="run the service")
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=8000)
    serve_parser.add_argument("--log-level", default="info")
    serve_parser.set_defaults(run=serve)

    resources = commands.add_parser("resources", help="manage resources (accounts) and their keys")
    resource_commands = resources.add_subparsers(dest="resource_command", required=True)
    add = resource_commands.add_parser("add", parents=[data_dir], help="create a resource and print its keys")
    add.add_argument("name")
    add.add_argument("--json", action="store_true", help="print one JSON object")
    add.set_defaults(run=resources_add)
    listing = resource_commands.add_parser("list", parents=[data_dir], help="list resources (keys are not shown)")
    listing.set_defaults(run=resources_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
