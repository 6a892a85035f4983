"""``ocv dataset import|export``: labelled datasets (COCO, Pascal VOC, YOLO, folders, Custom Vision JSON) in and out."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from opencustomvision.cli.remote import (
    EXIT_FAILED, EXIT_OK, EXIT_USAGE, BarProgress, LineProgress, UsageError, add_endpoint_arguments, client, progress_display,
)
from opencustomvision.transfer.client import ApiError, CustomVisionClient
from opencustomvision.transfer.datasets import FORMATS
from opencustomvision.transfer.datasets.model import DatasetError
from opencustomvision.transfer.errors import Refused
from opencustomvision.transfer.exporter import ExportReport, export_dataset
from opencustomvision.transfer.importer import ImportOptions, ImportReport, import_dataset
from opencustomvision.transfer.progress import Progress


def _fail(command: str, message: str, code: int) -> int:
    print(f"ocv dataset {command}: {message}", file=sys.stderr)
    return code


Report = TypeVar("Report", ImportReport, ExportReport)


def _against_server(command: str, args: argparse.Namespace,
                    work: Callable[[CustomVisionClient, Progress], Report]) -> Report | int:
    """``work`` against the server the arguments name, with a progress display; an exit code if it could not run."""
    progress: BarProgress | LineProgress | None = None
    try:
        with client(args.endpoint, args.training_key, args.data_dir) as server:
            progress = progress_display()
            return work(server, progress)
    except UsageError as error:
        return _fail(command, str(error), EXIT_USAGE)
    except Refused as error:
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return _fail(command, str(error), EXIT_USAGE if error.usage else EXIT_FAILED)
    except ApiError as error:
        return _fail(command, f"{error.method} {error.url}: HTTP {error.status} {error}", EXIT_FAILED)
    finally:
        if progress is not None:
            progress.close()


def dataset_import(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if not path.exists():
        return _fail("import", f"{path}: no such file or folder", EXIT_USAGE)
    try:
        dataset = FORMATS[args.format].read(path)
    except DatasetError as error:
        return _fail("import", str(error), EXIT_FAILED)
    options = ImportOptions(project_id=args.project, name=args.name, domain_id=args.domain, skip_invalid=args.skip_invalid)

    def work(server: CustomVisionClient, progress: Progress) -> ImportReport:
        for problem in dataset.problems if args.skip_invalid else []:
            progress.log(f"skipped: {problem}")
        return import_dataset(server, dataset, options, progress)

    report = _against_server("import", args, work)
    if isinstance(report, int):
        return report
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        images = report.images
        print(f"{images.stored} images imported, {images.present} already there, {len(images.failed)} failed, "
              f"{len(report.skipped_invalid)} problems skipped, {len(report.merged)} files merged into others; "
              f"{images.regions} regions; {report.tags_created} tags created", file=sys.stderr)
        for note in report.merged:
            print(f"  {note}", file=sys.stderr)
        for failure in images.failures("file"):
            print(f"  {failure['file']}: {failure['status']}: {failure['message']}", file=sys.stderr)
        print(report.project_id)
    return EXIT_OK if report.ok else EXIT_FAILED


def dataset_export(args: argparse.Namespace) -> int:
    def work(server: CustomVisionClient, progress: Progress) -> ExportReport:
        return export_dataset(server, args.project, args.format, FORMATS[args.format], Path(args.path),
                              iteration_id=args.iteration, progress=progress)

    report = _against_server("export", args, work)
    if isinstance(report, int):
        return report
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        print(f"{report.images_exported} images, {report.regions_exported} regions written to {report.path}"
              f"{f'; {report.images_failed} failed' if report.images_failed else ''}")
        for failure in report.failures:
            print(f"  image {failure['image']}: {failure['message']}")
    return EXIT_OK if report.ok else EXIT_FAILED


def register(commands: argparse._SubParsersAction, data_dir: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("dataset", help="import or export a labelled dataset (COCO, VOC, YOLO, folders, customvision)")
    actions = parser.add_subparsers(dest="dataset_command", required=True)
    formats = sorted(FORMATS)

    importing = actions.add_parser(
        "import", parents=[data_dir], help="import a dataset into a new or existing project; prints the project id",
        description="Exit code 0: every image imported (or already there); 1: something failed (listed); 2: bad arguments.")
    importing.add_argument("format", choices=formats)
    importing.add_argument("path", help="the dataset folder (or its annotation file, for coco and customvision)")
    target = importing.add_mutually_exclusive_group()
    target.add_argument("--project", metavar="ID", help="import into this existing project (tags matched by name)")
    target.add_argument("--name", help="name of the new project (default: the dataset folder's name)")
    importing.add_argument("--domain", metavar="ID", help="domain of the new project (default: General of its type)")
    importing.add_argument("--skip-invalid", action="store_true",
                           help="leave out images with a bad annotation (listed) instead of refusing the dataset")
    importing.add_argument("--json", action="store_true", help="print a JSON report instead of the project id")
    add_endpoint_arguments(importing)
    importing.set_defaults(run=dataset_import)

    exporting = actions.add_parser(
        "export", parents=[data_dir], help="export a project's images, tags and boxes",
        description="Exit code 0: every image exported; 1: something failed (listed); 2: bad arguments.")
    exporting.add_argument("format", choices=formats)
    exporting.add_argument("path", help="a new (or empty) folder to write")
    exporting.add_argument("--project", metavar="ID", required=True)
    exporting.add_argument("--iteration", metavar="ID", help="export the images this iteration trained on")
    exporting.add_argument("--json", action="store_true", help="print a JSON report")
    add_endpoint_arguments(exporting)
    exporting.set_defaults(run=dataset_export)
