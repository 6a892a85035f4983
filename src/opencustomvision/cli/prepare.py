"""``ocv prepare``: export the backbones at install time, so that no new data folder waits for an export.

The files go to ``$OCV_PREPARED_MODELS`` (default: ``<prefix>/share/opencustomvision/models`` beside the
installed packages); a data folder's model cache links them when the service starts. Files already
there are kept, so running it again is quick.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from opencustomvision.ml.backbone import BackboneError, prepared_models_dir


def prepare(args: argparse.Namespace) -> int:
    from opencustomvision.app import BACKBONES_TO_PREPARE
    from opencustomvision.ml.registry import prepare_models

    directory = Path(args.models_dir) if args.models_dir else prepared_models_dir()
    started = time.perf_counter()
    try:
        paths = prepare_models(directory, BACKBONES_TO_PREPARE)
    except (BackboneError, OSError) as error:
        print(f"ocv prepare: {error}", file=sys.stderr)
        return 1
    for path in paths:
        print(f"  {path} ({path.stat().st_size / 1e6:.1f} MB)")
    print(f"backbones ready in {directory} ({time.perf_counter() - started:.1f} s)")
    return 0


def register(commands: argparse._SubParsersAction, data_dir: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("prepare", help="export the backbones once, at install time")
    parser.add_argument("--models-dir", default=None, help="where (default: $OCV_PREPARED_MODELS or <prefix>/share/opencustomvision/models)")
    parser.set_defaults(run=prepare)
