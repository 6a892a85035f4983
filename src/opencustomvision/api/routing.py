"""One set of routes for every API version, matched case-insensitively.

``/customvision/v2.0/Training/projects`` (a 2018 tutorial) and ``/customvision/v3.4-preview/training/projects``
(the SDK) reach the same handler: the version moves to ``scope["state"]["api_version"]`` and the path is
rewritten to ``/training/projects``.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, urlencode

from starlette.types import ASGIApp, Receive, Scope, Send

TRAINING_VERSIONS = ("v2.0", "v2.1", "v2.2", "v3.0", "v3.1", "v3.2", "v3.3", "v3.4-preview")
PREDICTION_VERSIONS = ("v3.0", "v3.1")
_API_PATH = re.compile(r"^/customvision/(?P<version>[^/]+)/(?P<api>training|prediction)(?P<rest>/.*)?$", re.IGNORECASE)
# In prediction paths the published iteration name is the user's own text; everything else is ours.
_PREDICTION_NAME_SEGMENT = 3
# Azure binds query parameters whatever their casing; clients written against it rely on that.
QUERY_NAMES = {
    name.lower(): name
    for name in (
        "name", "description", "domainId", "classificationType", "targetExportPlatforms", "type", "iterationId",
        "tagIds", "taggingStatus", "$filter", "orderBy", "take", "skip", "imageIds", "allImages", "allIterations",
        "regionIds", "trainingType", "reservedBudgetInHours", "forceTrain", "notificationEmailAddress", "publishName",
        "predictionId", "overwrite", "threshold", "overlapThreshold", "application", "store", "platform", "flavor",
        "token", "ids", "imageId", "iterationName", "tagName",
    )
}


def _canonical_query(query_string: bytes) -> bytes:
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    return urlencode([(QUERY_NAMES.get(key.lower(), key), value) for key, value in pairs]).encode("latin-1")


def _normalise(api: str, rest: str) -> str:
    segments = [segment for segment in rest.split("/") if segment]
    if api == "prediction":
        return "/" + "/".join(
            segment if index == _PREDICTION_NAME_SEGMENT else segment.lower() for index, segment in enumerate(segments)
        )
    return "/" + "/".join(segment.lower() for segment in segments)


class VersionedApiMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            match = _API_PATH.match(scope["path"])
            if match:
                version = match["version"].lower()
                api = match["api"].lower()
                known = TRAINING_VERSIONS if api == "training" else PREDICTION_VERSIONS
                if version in known:
                    path = f"/{api}{_normalise(api, match['rest'] or '')}".rstrip("/") or f"/{api}"
                    scope = dict(
                        scope,
                        path=path,
                        raw_path=quote(path).encode(),
                        query_string=_canonical_query(scope.get("query_string", b"")),
                    )
                    scope.setdefault("state", {})["api_version"] = version
        await self.app(scope, receive, send)
