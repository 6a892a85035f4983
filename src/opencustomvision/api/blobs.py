"""Image files behind signed, expiring links: fetchable without a key while the link is valid."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from opencustomvision.api.deps import ServicesDep
from opencustomvision.api.errors import error_response
from opencustomvision.storage.blobs import BlobNotFound

router = APIRouter()

_SIGNATURES = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG", "image/png"), (b"GIF8", "image/gif"), (b"BM", "image/bmp"),
               (b"PK\x03\x04", "application/zip"))


def content_type(data: bytes) -> str:
    return next((media for magic, media in _SIGNATURES if data.startswith(magic)), "application/octet-stream")


@router.get("/blobs/{key:path}")
def get_blob(request: Request, key: str, services: ServicesDep, expires: int = 0, signature: str = "") -> Response:
    if not services.signer.is_valid(key, expires, signature):
        return error_response(request, "Forbidden", "This link is invalid or has expired; list the image again for a fresh one.", 403)
    try:
        data = services.blobs.get(key)
    except (BlobNotFound, ValueError):
        return error_response(request, "NotFoundImage", "This image no longer exists.", 404)
    return Response(data, media_type=content_type(data), headers={"Cache-Control": "private, max-age=300"})
