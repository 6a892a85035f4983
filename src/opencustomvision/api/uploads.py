"""Image uploads: every part of a multipart body (file or plain field), or the raw request body.

The official SDK sends ``imageData`` as a file when given a stream but as a plain form field when given
bytes; both carry binary data, so parts are read as raw bytes with python-multipart rather than through
Starlette's form parser, which decodes plain fields as text and caps them at 1 MB.
"""

from __future__ import annotations

from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from opencustomvision.api.negotiation import media_type_of
from opencustomvision.domain import limits
from opencustomvision.domain.errors import DomainError

# Read one byte past the limit so an oversized image is reported as too large without holding it all.
_READ_CAP = limits.MAX_IMAGE_BYTES + 1


async def _raw_body(request: Request) -> list[bytes]:
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) >= _READ_CAP:
            break
    return [bytes(body)] if body else []


async def _multipart_parts(request: Request) -> list[bytes]:
    _, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if not boundary:
        # Azure's REST quickstart posts the image itself as the body with "Content-Type: multipart/form-data" and no
        # boundary; Azure takes it, so do we. A real multipart body (it starts with its "--" delimiter) needs one.
        parts = await _raw_body(request)
        if parts and parts[0].startswith(b"--"):
            raise DomainError("BadRequestImageStream", "A multipart body needs a boundary in its Content-Type.")
        return parts
    parts: list[bytearray] = []

    def on_part_begin() -> None:
        if len(parts) >= limits.MAX_IMAGES_PER_BATCH:
            raise DomainError("BadRequestImageBatch", f"A batch holds at most {limits.MAX_IMAGES_PER_BATCH} images.")
        parts.append(bytearray())

    def on_part_data(data: bytes, start: int, end: int) -> None:
        part = parts[-1]
        room = _READ_CAP - len(part)
        if room > 0:
            part.extend(data[start:min(end, start + room)])

    parser = MultipartParser(boundary, {"on_part_begin": on_part_begin, "on_part_data": on_part_data})
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as error:
        raise DomainError("BadRequestImageStream", f"The multipart body cannot be read: {error}") from error
    return [bytes(part) for part in parts if part]


async def uploaded_images(request: Request) -> list[bytes]:
    """The images of a CreateImagesFromData or prediction request, each cut one byte past the size limit."""
    if media_type_of(request) == "multipart/form-data":
        return await _multipart_parts(request)
    return await _raw_body(request)
