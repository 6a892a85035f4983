"""The ``ocv`` command. Each subcommand lives in its own module and registers itself here."""

from __future__ import annotations

import argparse

from opencustomvision.cli import dataset, migrate, prepare, resources, serve, worker
from opencustomvision.cli.serve import prepare_default_resource
from opencustomvision.imaging.memory import return_large_buffers_to_the_system

__all__ = ["build_parser", "main", "prepare_default_resource"]

# Each module's register(commands, data_dir) adds its subcommand(s); run(args) -> exit code is set as a default.
COMMAND_MODULES = (serve, prepare, resources, worker, migrate, dataset)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ocv", description="OpenCustomVision: a self-hosted Custom Vision service.")
    commands = parser.add_subparsers(dest="command", required=True)
    data_dir = argparse.ArgumentParser(add_help=False)
    data_dir.add_argument("--data-dir", default=None, help="data folder (default: $OCV_DATA_DIR or ./ocv-data)")
    for module in COMMAND_MODULES:
        module.register(commands, data_dir)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return_large_buffers_to_the_system()  # before any thread starts: serve, worker and import all decode pictures
    return int(args.run(args))

