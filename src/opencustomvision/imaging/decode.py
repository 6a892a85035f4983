"""Turn untrusted upload bytes into checked, normalised images.

Everything here treats the input as hostile: sizes are checked from the header
before any pixel is decoded, and whatever Pillow raises on a malformed file is
turned into one of the exceptions below, so callers handle exactly two cases.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import ExifTags, Image, UnidentifiedImageError

from opencustomvision.imaging.budget import decode_budget

__all__ = [
    "ImageFormatError",
    "ImageLimits",
    "ImageRejected",
    "ImageSizeError",
    "PreparedImage",
    "load_rgb",
    "prepare_image",
    "restore_prepared",
]


class ImageRejected(Exception):
    """The bytes are not an image this service accepts."""


class ImageFormatError(ImageRejected):
    """Not a decodable JPEG, PNG, BMP or GIF (unknown format, truncated, corrupt)."""


class ImageSizeError(ImageRejected):
    """Too many bytes, too many pixels, or a side longer than allowed."""


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 6 * 1024 * 1024  # Custom Vision training limit
    max_side: int = 10240  # Azure: at most 10240 px per side
    max_pixels: int = 10240 * 10240 // 2  # guard against decompression bombs before decoding


@dataclass(frozen=True)
class PreparedImage:
    width: int  # after EXIF orientation
    height: int
    format: str  # "JPEG" | "PNG" | "BMP" | "GIF"
    content_type: str
    sha256: str  # of the original bytes, for duplicate detection
    original: bytes
    resized: bytes
    resized_content_type: str
    thumbnail: bytes  # always JPEG


_CONTENT_TYPES: dict[str, str] = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "BMP": "image/bmp",
    "GIF": "image/gif",
}

# Restricting Image.open to these plugins keeps Pillow's long tail of rarely
# used (and rarely hardened) decoders away from untrusted input.
_PILLOW_FORMATS: tuple[str, ...] = tuple(_CONTENT_TYPES)

# Phone cameras write multi-picture JPEGs that Pillow reports as "MPO". They
# are ordinary JPEG files whose first picture is the photo, and every JPEG
# reader sees them that way, so they are accepted as JPEG.
_FORMAT_ALIASES: dict[str, str] = {"MPO": "JPEG"}

# Same table as PIL.ImageOps.exif_transpose. It is applied by hand so that the
# rotation can run on the downscaled copy instead of the full-size image.
_ORIENTATION_TRANSPOSE: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SIDEWAYS_ORIENTATIONS = frozenset({5, 6, 7, 8})

_SIXTEEN_BIT_GREY_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})

_RESIZED_JPEG_QUALITY = 90
_THUMBNAIL_JPEG_QUALITY = 85
_RESAMPLE = Image.Resampling.BICUBIC
# Pillow first shrinks by an integer factor with a cheap box filter, then
# finishes with BICUBIC; 2.0 is the value Image.thumbnail uses and is
# indistinguishable from a full BICUBIC at a fraction of the cost.
_REDUCING_GAP = 2.0
_TRANSPARENT_BACKGROUND = (255, 255, 255)
_PYTHON_OBJECT = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")


@dataclass(frozen=True)
class _Decoded:
    image: Image.Image  # RGB, or RGBA when the source has transparency; NOT yet oriented
    format: str
    width: int  # header size, before orientation
    height: int
    orientation: int  # 1..8


def prepare_image(
    data: bytes,
    limits: ImageLimits = ImageLimits(),
    *,
    resized_side: int = 1024,
    thumbnail_side: int = 200,
) -> PreparedImage:
    """Check and decode an upload, and produce the stored resized copy and thumbnail."""
    with _decoding(data, limits, wanted_side=resized_side) as decoded:
        resized = _shrink(decoded.image, _fit_within((decoded.width, decoded.height), resized_side))
        resized = _orient(resized, decoded.orientation)
        thumbnail = _shrink(resized, _fit_within(resized.size, thumbnail_side))

        if resized.mode == "RGBA":
            resized_bytes, resized_content_type = _encode_png(resized), "image/png"
        else:
            resized_bytes = _encode_jpeg(resized, _RESIZED_JPEG_QUALITY)
            resized_content_type = "image/jpeg"
        thumbnail_bytes = _encode_jpeg(_flatten(thumbnail), _THUMBNAIL_JPEG_QUALITY)

    width, height = decoded.width, decoded.height
    if decoded.orientation in _SIDEWAYS_ORIENTATIONS:
        width, height = height, width

    return PreparedImage(
        width=width,
        height=height,
        format=decoded.format,
        content_type=_CONTENT_TYPES[decoded.format],
        sha256=hashlib.sha256(data).hexdigest(),
        original=data,
        resized=resized_bytes,
        resized_content_type=resized_content_type,
        thumbnail=thumbnail_bytes,
    )


def restore_prepared(*, width: int, height: int, format: str, sha256: str, original: bytes, resized: bytes,
                     thumbnail: bytes) -> PreparedImage:
    """A PreparedImage rebuilt from what ``prepare_image`` produced and was stored, without decoding again."""
    resized_type = "image/png" if resized.startswith(b"\x89PNG") else "image/jpeg"
    return PreparedImage(width=width, height=height, format=format, content_type=_CONTENT_TYPES[format], sha256=sha256,
                         original=original, resized=resized, resized_content_type=resized_type, thumbnail=thumbnail)


def load_rgb(data: bytes, limits: ImageLimits = ImageLimits(), *, min_short_side: int | None = None,
             budget_wait_seconds: float | None = None) -> Image.Image:
    """Decode an upload, orientation applied, as an RGB image.

    ``min_short_side``: the caller will downscale to about this short side, so a JPEG may be decoded
    at a reduced scale (DCT scaling) as long as both sides stay at least this large.
    ``budget_wait_seconds``: how long to wait for room in the decode budget (background work waits longer
    than a request would).
    """
    draft = (min_short_side, min_short_side) if min_short_side else None
    with _decoding(data, limits, wanted_side=None, draft_size=draft, budget_wait_seconds=budget_wait_seconds) as decoded:
        return _flatten(_orient(decoded.image, decoded.orientation))


@contextmanager
def _decoding(
    data: bytes, limits: ImageLimits, *, wanted_side: int | None, draft_size: tuple[int, int] | None = None,
    budget_wait_seconds: float | None = None,
) -> Iterator[_Decoded]:
    """Run every check, then decode all pixels, within the process's decode budget (held until the block ends).

    `wanted_side` lets the JPEG decoder skip detail that a downscale to that
    long side would throw away anyway (DCT scaling: 2-8x faster for photos).
    """
    if len(data) > limits.max_bytes:
        raise ImageSizeError(f"image is {len(data)} bytes; the limit is {limits.max_bytes} bytes")
    if not data:
        raise ImageFormatError("image is empty")

    with _rejecting_bad_input():
        image = Image.open(io.BytesIO(data), formats=_PILLOW_FORMATS)
        image_format = _FORMAT_ALIASES.get(image.format or "", image.format or "")
        if image_format not in _CONTENT_TYPES:
            raise ImageFormatError(f"unsupported image format {image.format!r}")

        width, height = image.size
        _check_dimensions(width, height, limits)

        if image_format == "JPEG" and wanted_side is not None:
            image.draft(None, _fit_within((width, height), wanted_side))
        elif image_format == "JPEG" and draft_size is not None:
            image.draft(None, draft_size)
        decoded_width, decoded_height = image.size  # what the decoder will produce (a JPEG draft is smaller)
    with decode_budget().reserve(decoded_width * decoded_height, budget_wait_seconds):
        with _rejecting_bad_input():
            # Decoding everything now (Image.open is lazy) is what detects truncated
            # and corrupt files; ImageFile.LOAD_TRUNCATED_IMAGES stays off.
            image.load()
            decoded = _Decoded(
                image=_to_rgb_or_rgba(image),
                format=image_format,
                width=width,
                height=height,
                orientation=_orientation(image),
            )
        yield decoded


@contextmanager
def _rejecting_bad_input() -> Iterator[None]:
    """Turn anything Pillow raises on hostile bytes into ImageRejected.

    Pillow signals bad input with OSError, ValueError, SyntaxError, struct.error,
    EOFError, IndexError... depending on the plugin; the caller should not need
    to know which.
    """
    try:
        yield
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own guard (MAX_IMAGE_PIXELS) may fire before ours, e.g. when
        # someone lowered it or turned warnings into errors.
        raise ImageSizeError(f"image has too many pixels: {exc}") from exc
    except MemoryError as exc:
        raise ImageSizeError("image needs too much memory to decode") from exc
    except UnidentifiedImageError as exc:
        raise ImageFormatError("the bytes are not a JPEG, PNG, BMP or GIF image") from exc
    except Exception as exc:
        # Pillow's messages can name Python objects ("<_io.BytesIO object at 0x...>"): a client needs none of that.
        detail = _PYTHON_OBJECT.sub("the image", str(exc)).strip() or type(exc).__name__
        raise ImageFormatError(f"image could not be decoded: {detail}") from exc


def _check_dimensions(width: int, height: int, limits: ImageLimits) -> None:
    if width <= 0 or height <= 0:
        raise ImageFormatError(f"image header claims an empty size {width}x{height}")
    if width > limits.max_side or height > limits.max_side:
        raise ImageSizeError(f"image is {width}x{height}; sides are limited to {limits.max_side} px")
    if width * height > limits.max_pixels:
        raise ImageSizeError(
            f"image is {width}x{height} = {width * height} pixels; the limit is {limits.max_pixels}"
        )


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:
        # Cameras and editors write broken EXIF blocks often enough; the pixels
        # are fine, so fall back to "as stored" rather than reject the upload.
        return 1
    return value if value in _ORIENTATION_TRANSPOSE else 1


def _to_rgb_or_rgba(image: Image.Image) -> Image.Image:
    if image.mode in _SIXTEEN_BIT_GREY_MODES:
        # convert("L") clips 16-bit values at 255, which turns a 16-bit grey
        # PNG almost white; scale into 8 bits instead.
        image = image.point(lambda value: value / 256).convert("L")
    if image.has_transparency_data:
        return image if image.mode == "RGBA" else image.convert("RGBA")
    return image if image.mode == "RGB" else image.convert("RGB")


def _flatten(image: Image.Image) -> Image.Image:
    """RGBA → RGB over white: dropping alpha would expose whatever colour hides under it."""
    if image.mode != "RGBA":
        return image
    background = Image.new("RGB", image.size, _TRANSPARENT_BACKGROUND)
    background.paste(image, mask=image.getchannel("A"))
    return background


def _orient(image: Image.Image, orientation: int) -> Image.Image:
    method = _ORIENTATION_TRANSPOSE.get(orientation)
    return image if method is None else image.transpose(method)


def _fit_within(size: tuple[int, int], side: int) -> tuple[int, int]:
    """Largest size with the same aspect ratio and a long side of at most `side`; never larger."""
    width, height = size
    longest = max(width, height)
    if longest <= side:
        return size
    scale = side / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def _shrink(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    if image.size == size:
        return image
    return image.resize(size, _RESAMPLE, reducing_gap=_REDUCING_GAP)


def _encode_jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    # Level 6 costs several times level 1 on large RGBA images for a few percent less storage.
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()
