"""``ocv migrate``: copy a Custom Vision resource's projects (from Azure or another server) to this one."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from opencustomvision.cli.remote import (
    EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError, client, data_dir_of, local_endpoint, progress_display,
)
from opencustomvision.transfer.client import ApiError
from opencustomvision.transfer.migration import Migration, MigrationOptions, MigrationReport
from opencustomvision.transfer.state import MigrationState, default_state_path


def migrate(args: argparse.Namespace) -> int:
    try:
        source = client(args.from_endpoint, args.from_training_key, args.data_dir)
        target = client(args.to_endpoint, args.to_training_key, args.data_dir)
    except UsageError as error:
        print(f"ocv migrate: {error}", file=sys.stderr)
        return EXIT_USAGE
    state_path = Path(args.state) if args.state else default_state_path(data_dir_of(args), source.endpoint, source.training_key,
                                                  target.endpoint, target.training_key)
    options = MigrationOptions(project_ids=args.project, train=args.train, adopt_existing=args.adopt_existing)
    progress = progress_display()
    try:
        with source, target, MigrationState(state_path) as state:
            report = Migration(source, target, state, progress).run(options)
    except ApiError as error:
        progress.close()
        print(f"ocv migrate: {error.method} {error.url}: HTTP {error.status} {error}", file=sys.stderr)
        return EXIT_FAILED
    progress.close()
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        _summary(report)
    return EXIT_OK if report.ok else EXIT_FAILED


def _summary(report: MigrationReport) -> None:
    for project in report.projects:
        counts = project.counts()
        line = (f"{project.name or project.source_id}: -> {project.target_id or '-'}  tags {counts['tags']['copied']} copied "
                f"{counts['tags']['skipped']} there  images {counts['images']['copied']} copied "
                f"{counts['images']['skipped']} there {counts['images']['failed']} failed  "
                f"regions {counts['regions']['copied']} copied")
        if project.training:
            line += f"  training {project.training.get('status')}"
        print(line)
        if project.error:
            print(f"  failed: {project.error}")
        for failure in project.images.failures("image"):
            print(f"  image {failure['image']}: {failure['status']}: {failure['message']}")
    print(f"progress recorded in {report.state_file}")


def register(commands: argparse._SubParsersAction, data_dir: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "migrate", parents=[data_dir], help="copy projects from Custom Vision (Azure or another server) here",
        description="Copy projects, tags, images (original bytes), regions and metadata from any server of the Custom "
                    "Vision Training API v3.3. Safe to run again: only what is missing is copied. Exit code 0: all "
                    "copied; 1: something failed (listed); 2: bad arguments.")
    parser.add_argument("--from-endpoint", required=True, help="the source, e.g. https://NAME.cognitiveservices.azure.com")
    parser.add_argument("--from-training-key", required=True, help="the source resource's training key")
    parser.add_argument("--project", action="extend", nargs="+", metavar="ID",
                        help="copy only these source projects (default: all)")
    parser.add_argument("--to-endpoint", help=f"the target (default: $OCV_ENDPOINT or the local server, {local_endpoint()})")
    parser.add_argument("--to-training-key", help="the target's training key (default: the local server's default resource)")
    parser.add_argument("--train", action="store_true", help="train each copied project and wait for it")
    parser.add_argument("--adopt-existing", action="store_true",
                        help="copy into a target project of the same name that this state file does not know "
                             "(after losing the state file); images already there are not duplicated")
    parser.add_argument("--state", help="the progress file (default: <data dir>/migrations/<source and target digest>.sqlite3)")
    parser.add_argument("--json", action="store_true", help="print a JSON report at the end")
    parser.set_defaults(run=migrate)
