"""``ocv resources add|list``: accounts and their keys."""

from __future__ import annotations

import argparse
import json
import sys

from opencustomvision.config import Settings
from opencustomvision.domain.resources import ResourceNameTaken, create_resource, list_resources
from opencustomvision.domain.scenario_keys import generate_scenario_keys, set_scenario_keys
from opencustomvision.storage.db import create_db_engine, migrate, session_factory


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
            "scenarioApiKey": credentials.scenario_api_key,
            "scenarioApiSecret": credentials.scenario_api_secret,
        }))
    else:
        print(f"resource:               {credentials.name}")
        print(f"training key:           {credentials.training_key}")
        print(f"prediction key:         {credentials.prediction_key}")
        print(f"prediction resource id: {credentials.prediction_resource_id}")
        print(f"Scenario API key:       {credentials.scenario_api_key}")
        print(f"Scenario API secret:    {credentials.scenario_api_secret}")
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


def resources_scenario_keys(args: argparse.Namespace) -> int:
    """A new Scenario key pair for an existing resource (one made before Scenario's API, or whose secret leaked)."""
    settings = Settings.from_env(args.data_dir)
    engine = create_db_engine(settings.database_url)
    migrate(engine)
    with session_factory(engine)() as session:
        resource = next((r for r in list_resources(session) if r.name == args.name), None)
        if resource is None:
            print(f"ocv: no resource named {args.name!r}", file=sys.stderr)
            return 1
        keys = generate_scenario_keys()
        set_scenario_keys(session, resource, keys)
        session.commit()
    if args.json:
        print(json.dumps({"name": args.name, "scenarioApiKey": keys.api_key, "scenarioApiSecret": keys.api_secret}))
    else:
        print(f"resource:               {args.name}")
        print(f"Scenario API key:       {keys.api_key}")
        print(f"Scenario API secret:    {keys.api_secret}")
        print("The resource's previous Scenario key pair no longer works. Keep these now: they are stored only as hashes.")
    return 0


def register(commands: argparse._SubParsersAction, data_dir: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    resources = commands.add_parser("resources", help="manage resources (accounts) and their keys")
    resource_commands = resources.add_subparsers(dest="resource_command", required=True)
    add = resource_commands.add_parser("add", parents=[data_dir], help="create a resource and print its keys")
    add.add_argument("name")
    add.add_argument("--json", action="store_true", help="print one JSON object")
    add.set_defaults(run=resources_add)
    scenario = resource_commands.add_parser("scenario-keys", parents=[data_dir],
                                            help="give a resource a new Scenario key pair and print it")
    scenario.add_argument("name")
    scenario.add_argument("--json", action="store_true", help="print one JSON object")
    scenario.set_defaults(run=resources_scenario_keys)
    listing = resource_commands.add_parser("list", parents=[data_dir], help="list resources (keys are not shown)")
    listing.set_defaults(run=resources_list)
