"""What the API versions document differently, for the few answers that differ by version.

Every version prefix reaches the same routes (routing.py); these rules keep an answer within what the caller's
version of the spec documents. Versions before v3.0 (v2.x) get v3.0's rules: they are older still.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection

# Error codes each Training CustomVisionError enum lists only from the version that added them. The Prediction
# API's enum is Training v3.0's less BadRequestIterationNotPublished in v3.0, and Training v3.3's in v3.1.
_TRAINING_CODES_SINCE = {
    "BadRequestProjectImagePreprocessingSettings": "v3.1",
    **dict.fromkeys((
        "BadRequestExportWhileTraining", "BadRequestInvalidImportToken", "BadRequestIterationValidationFailed",
        "BadRequestProjectDuplicated", "ErrorIterationCopyFailed", "ErrorPreparePerformanceMigrationFailed",
        "ErrorProjectImportRequestFailed"), "v3.2"),
    **dict.fromkeys((
        "BadRequestCustomerManagedKeyRevoked", "BadRequestImageDimensions", "BadRequestImageMetadataKey",
        "BadRequestImageMetadataValue", "BadRequestInvalidArtifactUri", "BadRequestMultipleGeneralProductTag",
        "BadRequestOperationNotSupported", "BadRequestUnsupportedDomain", "ErrorUnknownBaseModel"), "v3.3"),
}
_PREDICTION_CODES_SINCE_V31 = {"BadRequestIterationNotPublished"}
# What a code a version does not know becomes: the generic code of its family, which every version lists.
_GENERIC_CODES = (("BadRequest", "BadRequest"), ("NotFound", "NotFound"), ("Forbidden", "Forbidden"),
                  ("Conflict", "Conflict"), ("Error", "ErrorUnknown"))


def _number(version: str) -> tuple[int, int]:
    """``v3.4-preview`` -> (3, 4)."""
    major, _, minor = version.lstrip("v").split("-")[0].partition(".")
    return int(major), int(minor or 0)


def api_of(connection: HTTPConnection) -> tuple[str, str] | None:
    """(``training`` or ``prediction``, version) of a Custom Vision request; None for anything else."""
    version = connection.scope.get("state", {}).get("api_version")
    if version is None:
        return None
    return connection.url.path.split("/")[1], version


def is_before(connection: HTTPConnection, version: str) -> bool:
    """Whether the caller speaks a version of its API older than ``version``."""
    called = api_of(connection)
    return called is not None and _number(called[1]) < _number(version)


def _lists(api: str, version: str, code: str) -> bool:
    if api == "prediction" and _number(version) < (3, 1):
        return code not in _TRAINING_CODES_SINCE and code not in _PREDICTION_CODES_SINCE_V31
    since = _TRAINING_CODES_SINCE.get(code)
    return api == "prediction" or since is None or _number(version) >= _number(since)


def documented_code(connection: HTTPConnection, code: str) -> str:
    """``code`` where the caller's version lists it, else the generic code of its family."""
    called = api_of(connection)
    if called is None or _lists(*called, code):
        return code
    return next((generic for prefix, generic in _GENERIC_CODES if code.startswith(prefix)), "ErrorUnknown")


def batch_status(connection: HTTPConnection, *, complete: bool) -> int:
    """200 for a batch done whole; 207 for one done in part, which Training v3.3 added: older versions answer it
    with 200 too (the summary says which entries failed)."""
    return 200 if complete or is_before(connection, "v3.3") else 207
