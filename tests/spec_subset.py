"""The parts of the Training v3.3 and Prediction v3.1 specs that the schemathesis test runs, loaded and trimmed
in memory.

The shared spec files are never modified: each is read, the operations outside ``OPERATIONS`` (Training) or
``PREDICTION_OPERATIONS`` (Prediction) are dropped, and the result is handed to schemathesis as a dict.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

OPERATIONS = (
    "GetDomains", "GetDomain",
    "GetProjects", "CreateProject", "GetProject", "UpdateProject", "DeleteProject",
    "GetTags", "CreateTag", "GetTag", "UpdateTag", "DeleteTag",
    "GetImages", "GetImagesByIds", "GetImageCount", "GetTaggedImages", "GetTaggedImageCount",
    "GetUntaggedImages", "GetUntaggedImageCount",
    "CreateImagesFromData", "CreateImagesFromFiles", "CreateImagesFromUrls", "DeleteImages",
    "CreateImageTags", "DeleteImageTags", "CreateImageRegions", "DeleteImageRegions", "UpdateImageMetadata",
    "GetImageRegionProposals",
    # Training, iterations and their evaluation.
    "TrainProject", "GetIterations", "GetIteration", "UpdateIteration", "DeleteIteration",
    "PublishIteration", "UnpublishIteration",
    "GetIterationPerformance", "GetImagePerformances", "GetImagePerformanceCount",
    # Predictions made from the Training API, and the stored ones.
    "QuickTestImage", "QuickTestImageUrl", "QueryPredictions", "DeletePrediction", "CreateImagesFromPredictions",
)
# Prediction v3.1: classification and object detection.
PREDICTION_OPERATIONS = (
    "ClassifyImage", "ClassifyImageWithNoStore", "ClassifyImageUrl", "ClassifyImageUrlWithNoStore",
    "DetectImage", "DetectImageWithNoStore", "DetectImageUrl", "DetectImageUrlWithNoStore",
)
_METHODS = {"get", "put", "post", "delete", "options", "head", "patch"}


def load_subset(path: Path, operations: tuple[str, ...] = OPERATIONS) -> dict[str, Any]:
    raw = json.loads(path.read_text(encoding="utf-8-sig"))
    spec = copy.deepcopy(raw)
    wanted = set(operations)
    paths: dict[str, Any] = {}
    for route, item in spec["paths"].items():
        kept = {key: value for key, value in item.items() if key not in _METHODS or value.get("operationId") in wanted}
        if any(key in _METHODS for key in kept):
            paths[route] = kept
    spec["paths"] = paths
    found = {op["operationId"] for item in paths.values() for key, op in item.items() if key in _METHODS}
    missing = wanted - found
    if missing:
        raise LookupError(f"operations absent from {path}: {sorted(missing)}")
    # The host is Azure's (an ``{Endpoint}`` template); the test passes the live server's base URL on each call.
    spec.pop("x-ms-parameterized-host", None)
    return spec
