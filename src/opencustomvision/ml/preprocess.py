"""Turn PIL images into the float32 tensors the EfficientNet-Lite backbones expect.

This reproduces the ImageNet evaluation pipeline of EfficientNet-Lite: resize so
the short side is ``size / 0.875`` with bicubic filtering, centre-crop
``size x size``, then map 0..255 to about -1..1 with ``(x - 127) / 128`` (the
Lite models' own normalisation, not the usual ImageNet mean/std).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

__all__ = [
    "CROP_FRACTION",
    "resized_short_side",
    "INPUT_MEAN",
    "INPUT_STD",
    "preprocess",
    "preprocess_batch",
    "resize_geometry",
]

CROP_FRACTION = 0.875  # the centre crop keeps 87.5 % of the resized short side
INPUT_MEAN = 127.0  # EfficientNet-Lite: MEAN_RGB = [127.0] * 3
INPUT_STD = 128.0  # EfficientNet-Lite: STDDEV_RGB = [128.0] * 3


def resized_short_side(size: int) -> int:
    """The short side an image is resized to before the ``size x size`` centre crop."""
    return round(size / CROP_FRACTION)


def resize_geometry(width: int, height: int, size: int) -> tuple[int, int]:
    """The (width, height) an image is resized to before the ``size x size`` centre crop."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image has no pixels: {width}x{height}")
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    short = resized_short_side(size)
    if width <= height:
        return short, round(height * short / width)
    return round(width * short / height), short


def preprocess(image: Image.Image, size: int) -> np.ndarray:
    """One image as a float32 (3, size, size) array, ready for ``Backbone.embed``."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    width, height = resize_geometry(rgb.width, rgb.height, size)
    left = (width - size) // 2
    top = (height - size) // 2
    # Resizing only the source box that lands in the crop samples exactly the same
    # grid as "resize the whole image, then crop", without ever materialising the
    # resized image (which, for a 10000x1 strip, would be gigabytes).
    sx = rgb.width / width
    sy = rgb.height / height
    box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
    cropped = rgb.resize((size, size), Image.Resampling.BICUBIC, box=box)
    pixels = np.asarray(cropped, dtype=np.float32)  # (size, size, 3)
    pixels = (pixels - INPUT_MEAN) / INPUT_STD
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def preprocess_batch(images: Sequence[Image.Image], size: int) -> np.ndarray:
    """Several images as one float32 (N, 3, size, size) array."""
    batch = np.empty((len(images), 3, size, size), dtype=np.float32)
    for i, image in enumerate(images):
        batch[i] = preprocess(image, size)
    return batch
