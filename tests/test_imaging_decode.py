"""Tests for opencustomvision.imaging.decode: checks, decoding and derived images."""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile, ImageOps

from opencustomvision.imaging.decode import (
    ImageFormatError,
    ImageLimits,
    ImageRejected,
    ImageSizeError,
    PreparedImage,
    load_rgb,
    prepare_image,
)

pytestmark = pytest.mark.db_independent

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


# --- helpers ----------------------------------------------------------------


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def two_colour_image(size: tuple[int, int] = (300, 100)) -> Image.Image:
    """Left half red, right half blue, white top-left corner: every rotation and flip looks different."""
    width, height = size
    image = Image.new("RGB", size, RED)
    image.paste(BLUE, (width // 2, 0, width, height))
    image.paste(WHITE, (0, 0, width // 6, height // 3))
    return image


def jpeg_with_orientation(orientation: int, size: tuple[int, int] = (300, 100)) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(two_colour_image(size), "JPEG", quality=95, exif=exif)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def one_bit_png(width: int, height: int, *, pixel_rows: bool = True) -> bytes:
    """A black 1-bit greyscale PNG, built by hand so a huge one costs almost nothing.

    With pixel_rows=False the IDAT is empty: only the header claims the size,
    which is all a decompression bomb needs to be dangerous to a naive decoder.
    """
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" + bytes((width + 7) // 8)  # filter byte + packed pixels
    pixels = zlib.compress(row * height, 9) if pixel_rows else zlib.compress(b"")
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", pixels)
        + png_chunk(b"IEND", b"")
    )


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def close_to(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 40) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected))


@pytest.fixture
def loads_spy(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Records every pixel decode Pillow starts, to prove a rejection happened before decoding."""
    started: list[str] = []
    original_load = ImageFile.ImageFile.load

    def recording_load(self: ImageFile.ImageFile):  # type: ignore[no-untyped-def]
        started.append(f"{self.format} {self.size}")
        return original_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", recording_load)
    yield started


# --- accepted formats ---------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("BMP", "image/bmp"), ("GIF", "image/gif")],
)
def test_each_supported_format_is_accepted(fmt: str, content_type: str) -> None:
    data = encode(two_colour_image((120, 80)), fmt)

    prepared = prepare_image(data)

    assert (prepared.format, prepared.content_type) == (fmt, content_type)
    assert (prepared.width, prepared.height) == (120, 80)
    assert prepared.original == data
    assert prepared.sha256 == hashlib.sha256(data).hexdigest()
    assert prepared.resized_content_type == "image/jpeg"
    resized = decoded(prepared.resized)
    assert (resized.format, resized.size) == ("JPEG", (120, 80))
    assert close_to(resized.getpixel((100, 60)), BLUE)
    assert decoded(prepared.thumbnail).format == "JPEG"


def test_multi_picture_jpeg_from_a_phone_camera_is_a_jpeg() -> None:
    # Pillow calls these "MPO"; they are JPEG files to everyone else.
    data = encode(Image.new("RGB", (64, 48), RED), "MPO", save_all=True, append_images=[Image.new("RGB", (64, 48), BLUE)])
    assert Image.open(io.BytesIO(data)).format == "MPO"

    prepared = prepare_image(data)

    assert (prepared.format, prepared.content_type) == ("JPEG", "image/jpeg")
    assert close_to(decoded(prepared.resized).getpixel((32, 24)), RED)


def test_sha256_is_of_the_original_bytes() -> None:
    data = encode(two_colour_image(), "PNG")
    assert prepare_image(data).sha256 == hashlib.sha256(data).hexdigest()


def test_animated_gif_uses_the_first_frame() -> None:
    frames = [Image.new("RGB", (40, 30), colour) for colour in (RED, BLUE, (0, 255, 0))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 3

    prepared = prepare_image(data)

    assert (prepared.format, prepared.width, prepared.height) == ("GIF", 40, 30)
    assert close_to(decoded(prepared.resized).getpixel((20, 15)), RED)
    assert close_to(load_rgb(data).getpixel((20, 15)), RED, tolerance=0)


# --- EXIF orientation ---------------------------------------------------------


def test_orientation_6_swaps_width_and_height() -> None:
    data = jpeg_with_orientation(6, size=(300, 100))

    prepared = prepare_image(data)

    assert (prepared.width, prepared.height) == (100, 300)
    resized = decoded(prepared.resized)
    assert resized.size == (100, 300)
    # Orientation 6 = rotate 90° clockwise to display: the raw left (red) half ends up on top.
    assert close_to(resized.getpixel((50, 100)), RED)
    assert close_to(resized.getpixel((50, 250)), BLUE)
    assert decoded(prepared.thumbnail).size == (67, 200)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_pillow_exif_transpose(orientation: int) -> None:
    data = jpeg_with_orientation(orientation)
    reference = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")

    prepared = prepare_image(data)
    full = load_rgb(data)

    assert (prepared.width, prepared.height) == reference.size
    assert decoded(prepared.resized).size == reference.size
    assert full.mode == "RGB"
    assert full.tobytes() == reference.tobytes()


def test_broken_orientation_value_is_ignored_not_rejected() -> None:
    data = jpeg_with_orientation(42)
    prepared = prepare_image(data)
    assert (prepared.width, prepared.height) == (300, 100)


# --- sizes of the derived images -------------------------------------------------


def test_large_image_is_resized_and_thumbnailed_keeping_aspect_ratio() -> None:
    data = encode(two_colour_image((1600, 900)), "JPEG", quality=90)

    prepared = prepare_image(data)

    assert (prepared.width, prepared.height) == (1600, 900)
    assert decoded(prepared.resized).size == (1024, 576)
    assert decoded(prepared.thumbnail).size == (200, 112)


def test_custom_sides_are_honoured() -> None:
    data = encode(two_colour_image((1000, 500)), "PNG")
    prepared = prepare_image(data, resized_side=300, thumbnail_side=50)
    assert decoded(prepared.resized).size == (300, 150)
    assert decoded(prepared.thumbnail).size == (50, 25)


def test_small_image_is_never_upscaled() -> None:
    data = encode(two_colour_image((50, 40)), "PNG")

    prepared = prepare_image(data)

    assert decoded(prepared.resized).size == (50, 40)
    assert decoded(prepared.thumbnail).size == (50, 40)


def test_jpeg_draft_decoding_still_gives_the_exact_resized_size() -> None:
    # 4000x3000 lets the JPEG decoder downscale by 2 before we resize.
    data = encode(two_colour_image((4000, 3000)), "JPEG", quality=80)
    prepared = prepare_image(data)
    assert (prepared.width, prepared.height) == (4000, 3000)
    resized = decoded(prepared.resized)
    assert resized.size == (1024, 768)
    assert close_to(resized.getpixel((900, 700)), BLUE)


# --- modes ------------------------------------------------------------------------


def test_transparent_png_keeps_alpha_in_resized_and_is_flattened_on_white_in_thumbnail() -> None:
    image = Image.new("RGBA", (60, 40), (0, 0, 0, 0))
    image.paste((255, 0, 0, 255), (0, 0, 30, 40))
    data = encode(image, "PNG")

    prepared = prepare_image(data)

    assert prepared.resized_content_type == "image/png"
    resized = decoded(prepared.resized)
    assert resized.mode == "RGBA"
    assert resized.getpixel((45, 20))[3] == 0
    thumbnail = decoded(prepared.thumbnail)
    assert thumbnail.format == "JPEG"
    assert close_to(thumbnail.getpixel((50, 20)), WHITE)
    assert close_to(thumbnail.getpixel((10, 20)), RED)
    assert close_to(load_rgb(data).getpixel((50, 20)), WHITE, tolerance=0)


def test_palette_gif_with_transparency_gets_an_alpha_resized_copy() -> None:
    image = Image.new("P", (20, 20), 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.paste(1, (10, 0, 20, 20))
    data = encode(image, "GIF", transparency=1)

    prepared = prepare_image(data)

    assert prepared.resized_content_type == "image/png"
    resized = decoded(prepared.resized).convert("RGBA")
    assert resized.getpixel((5, 5)) == (255, 0, 0, 255)
    assert resized.getpixel((15, 5))[3] == 0


@pytest.mark.parametrize(
    ("image", "fmt", "expected"),
    [
        (Image.new("L", (16, 16), 128), "PNG", (128, 128, 128)),
        (Image.new("LA", (16, 16), (128, 255)), "PNG", (128, 128, 128)),
        (Image.new("1", (16, 16), 1), "BMP", (255, 255, 255)),
        (Image.new("P", (16, 16), 3), "BMP", None),
        (Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", RED),
        (Image.new("I;16", (16, 16), 32768), "PNG", (128, 128, 128)),
    ],
    ids=["L", "LA", "1-bit", "palette", "CMYK", "16-bit-grey"],
)
def test_unusual_modes_become_sensible_rgb(image: Image.Image, fmt: str, expected: tuple[int, int, int] | None) -> None:
    data = encode(image, fmt)

    full = load_rgb(data)
    prepared = prepare_image(data)

    assert full.mode == "RGB"
    assert decoded(prepared.thumbnail).mode == "RGB"
    if expected is not None:
        # 16-bit grey must be scaled into 8 bits, not clipped to white.
        assert close_to(full.getpixel((8, 8)), expected, tolerance=12)


# --- rejections ---------------------------------------------------------------------


def test_text_named_jpg_is_a_format_error() -> None:
    with pytest.raises(ImageFormatError):
        prepare_image(b"<html><body>404 not found</body></html>\n")


def test_empty_bytes_are_a_format_error() -> None:
    with pytest.raises(ImageFormatError):
        prepare_image(b"")


@pytest.mark.parametrize("fmt", ["TIFF", "ICO", "PPM"])
def test_valid_images_in_other_formats_are_format_errors(fmt: str) -> None:
    data = encode(two_colour_image((32, 32)), fmt)
    with pytest.raises(ImageFormatError):
        prepare_image(data)
    with pytest.raises(ImageFormatError):
        load_rgb(data)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP"])
def test_truncated_file_is_a_format_error(fmt: str) -> None:
    data = encode(two_colour_image((400, 300)), fmt)
    with pytest.raises(ImageFormatError):
        prepare_image(data[: len(data) // 2])
    with pytest.raises(ImageFormatError):
        load_rgb(data[: len(data) // 2])


def test_truncation_is_detected_without_changing_pillow_globals() -> None:
    data = encode(two_colour_image((400, 300)), "JPEG")
    with pytest.raises(ImageFormatError):
        prepare_image(data[:-100])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_corrupt_png_checksum_is_a_format_error() -> None:
    data = bytearray(encode(two_colour_image((40, 40)), "PNG"))
    data[30] ^= 0xFF  # inside the IHDR chunk, so its CRC no longer matches
    with pytest.raises(ImageFormatError):
        prepare_image(bytes(data))


def test_seven_megabytes_is_a_size_error_before_anything_is_parsed(loads_spy: list[str]) -> None:
    data = b"\xff\xd8\xff\xe0" + bytes(7 * 1024 * 1024)
    with pytest.raises(ImageSizeError, match="bytes"):
        prepare_image(data)
    assert loads_spy == []


def test_byte_limit_is_configurable() -> None:
    data = encode(two_colour_image((64, 64)), "BMP")
    with pytest.raises(ImageSizeError):
        prepare_image(data, ImageLimits(max_bytes=len(data) - 1))
    assert prepare_image(data, ImageLimits(max_bytes=len(data))).width == 64


def test_decompression_bomb_header_is_rejected_before_decoding(
    monkeypatch: pytest.MonkeyPatch, loads_spy: list[str]
) -> None:
    data = one_bit_png(60000, 60000, pixel_rows=False)
    assert len(data) < 100
    # Prove that our own check fires, not Pillow's global guard.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)

    with pytest.raises(ImageSizeError):
        prepare_image(data)
    with pytest.raises(ImageSizeError):
        load_rgb(data)
    assert loads_spy == []


def test_decompression_bomb_is_rejected_with_pillow_defaults_too() -> None:
    with pytest.raises(ImageSizeError):
        prepare_image(one_bit_png(60000, 60000, pixel_rows=False))


def test_valid_image_over_the_pixel_limit_is_a_size_error_without_decoding(
    monkeypatch: pytest.MonkeyPatch, loads_spy: list[str]
) -> None:
    # 8000x8000 = 64 Mpx: each side is allowed, the area is not. A real,
    # complete PNG of ~8 KB that would need 64 MB+ once decoded.
    data = one_bit_png(8000, 8000)
    assert len(data) < 64 * 1024
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)

    with pytest.raises(ImageSizeError, match="pixels"):
        prepare_image(data)
    assert loads_spy == []


def test_side_over_10240_is_a_size_error() -> None:
    with pytest.raises(ImageSizeError, match="sides"):
        prepare_image(one_bit_png(10241, 1))
    assert prepare_image(one_bit_png(10240, 1)).width == 10240


def test_pillow_decompression_bomb_error_becomes_size_error(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode(two_colour_image((64, 64)), "PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 > 2 x 1000: Pillow raises
    with pytest.raises(ImageSizeError):
        prepare_image(data)


def test_pillow_decompression_bomb_warning_raised_as_error_becomes_size_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = encode(two_colour_image((64, 64)), "PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # 4096 > 3000: Pillow only warns
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageSizeError):
            prepare_image(data)


def _seed_images() -> list[bytes]:
    image = two_colour_image((24, 16))
    exif = Image.Exif()
    exif[0x0112] = 6
    return [
        encode(image, "JPEG", exif=exif),
        encode(image, "JPEG", progressive=True),
        encode(image, "PNG"),
        encode(image.convert("P"), "PNG", transparency=0),
        encode(image, "BMP"),
        encode(image.convert("P"), "BMP"),
        encode(image.convert("L"), "PNG"),
        encode(image, "GIF", save_all=True, append_images=[image.rotate(90)]),
    ]


SEEDS = _seed_images()


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about the corrupt EXIF we make
@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from(SEEDS),
    cut=st.integers(min_value=0, max_value=2000),
    flips=st.lists(st.tuples(st.integers(min_value=0, max_value=2000), st.integers(1, 255)), max_size=6),
)
def test_mangled_images_only_ever_raise_image_rejected(seed: bytes, cut: int, flips: list[tuple[int, int]]) -> None:
    data = bytearray(seed[: max(1, len(seed) - cut)] if cut % 3 == 0 else seed)
    for position, mask in flips:
        data[position % len(data)] ^= mask
    try:
        prepared = prepare_image(bytes(data))
    except ImageRejected:
        return
    assert isinstance(prepared, PreparedImage)
    assert prepared.width > 0 and prepared.height > 0


# --- real files from the shared data set ---------------------------------------------


def shared_file(relative: str) -> Path:
    path = SHARED_DATA / relative
    if not path.is_file():
        pytest.skip(f"shared data file {path} is absent (it lives next to the repository in shared/data)")
    return path


def test_real_phone_photo_with_orientation_3() -> None:
    data = shared_file("customvision-samples/ImageClassification/Images/Japanese_Cherry/japanese_cherry_8.jpg").read_bytes()
    assert Image.open(io.BytesIO(data)).getexif()[0x0112] == 3
    reference = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")

    prepared = prepare_image(data)

    assert (prepared.format, prepared.width, prepared.height) == ("JPEG", 1600, 900)
    assert decoded(prepared.resized).size == (1024, 576)
    assert load_rgb(data).tobytes() == reference.tobytes()


def test_real_placeholder_gif_decodes_as_what_it_is() -> None:
    # hymenoptera's imageNotFound.gif is a well-formed 300x300 GIF showing the
    # words "this image could not be found". It is "bad" as training data,
    # not as a file: no decoder-level rule can tell it from a real photo, so
    # rejecting it is the importer's job (it is the only .gif in a set of JPEGs).
    data = shared_file("cls_hymenoptera/train/ants/imageNotFound.gif").read_bytes()
    prepared = prepare_image(data)
    assert (prepared.format, prepared.width, prepared.height) == ("GIF", 300, 300)
