"""Multi-scale features of the pretrained EfficientNet-Lite, shared by every detector.

Detection heads need features at several strides, not the pooled embedding the
classification export returns. This module exports the same pretrained network
(``backbone.build_torch_model``: same weights, same checksum) a second time with three
outputs: the last block at stride 8, the last block at stride 16, and the 1280-channel
head convolution at stride 32. The file is cached once per cache directory and model,
like the classification backbone, so a stored detector only carries its small head.

The spatial input size is dynamic (any multiple of 32), so the detector's input
resolution is the detector's choice, not the cache's.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort
from PIL import Image

from opencustomvision.ml.backbone import (
    BackboneError,
    build_torch_model,
    ensure_exported,
    export_in_child,
    export_lock,
    export_module,
    get_spec,
    session_options,
)
from opencustomvision.ml.preprocess import INPUT_MEAN, INPUT_STD

if TYPE_CHECKING:  # torch is imported lazily, and only to export or train
    import torch

__all__ = [
    "FEATURE_NAMES",
    "FEATURE_STRIDES",
    "FeatureExtractor",
    "build_multiscale_torch_model",
    "ensure_multiscale_onnx",
    "normalise_pixels",
    "preprocess_stretched",
]

logger = logging.getLogger(__name__)

INPUT_NAME = "input"
FEATURE_NAMES = ("stride8", "stride16", "stride32")
FEATURE_STRIDES = (8, 16, 32)
SIZE_MULTIPLE = 32  # the coarsest stride: inputs must divide into whole stride-32 cells
# Bump when the exported graph changes (outputs, preprocessing contract): stale files are re-exported.
_FORMAT_VERSION = "1"
_META_FORMAT = "opencustomvision.multiscale_format"
_META_NAME = "opencustomvision.backbone"


def preprocess_stretched(image: Image.Image, size: int) -> np.ndarray:
    """One image resized (not cropped) to a float32 (3, size, size) array.

    Stretching keeps every pixel, so a box normalised to the image is the same box
    normalised to the input: detection needs no letterbox bookkeeping. Bilinear, not the
    classifier's bicubic: the per-image resize is on the prediction path, and the detector
    is trained on the same filter.
    """
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    return normalise_pixels(rgb.resize((size, size), Image.Resampling.BILINEAR))


def normalise_pixels(image: Image.Image) -> np.ndarray:
    """An RGB image, already at input size, as the backbone's float32 (3, H, W) input."""
    pixels = (np.asarray(image, dtype=np.float32) - INPUT_MEAN) / INPUT_STD
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def build_multiscale_torch_model(name: str) -> torch.nn.Module:
    """The pretrained network as a torch module returning the three FEATURE_NAMES maps."""
    import torch

    net = build_torch_model(name).net

    # The last block before each stride change: blocks downsample in their depthwise conv,
    # so a block with stride 2 starts a new level.
    level_ends: list[int] = []
    for index, block in enumerate(net._blocks):
        stride = block._block_args.stride
        stride = stride[0] if isinstance(stride, list | tuple) else stride
        if stride == 2 and index > 0:
            level_ends.append(index - 1)
    # Levels so far end at strides 2, 4, 8, 16 (the stem already halves): keep 8 and 16.
    stride8_end, stride16_end = level_ends[2], level_ends[3]

    class _MultiScale(torch.nn.Module):
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            net = self.net
            x = net._swish(net._bn0(net._conv_stem(x)))
            outputs = []
            for index, block in enumerate(net._blocks):
                x = block(x)  # drop-connect is off in eval mode, so no rate is passed
                if index in (stride8_end, stride16_end):
                    outputs.append(x)
            outputs.append(net._swish(net._bn1(net._conv_head(x))))
            return outputs[0], outputs[1], outputs[2]

    return _MultiScale(net).eval()


def multiscale_onnx_path(name: str, cache_dir: Path) -> Path:
    get_spec(name)
    return Path(cache_dir) / f"{name}-multiscale.onnx"


def export_multiscale_onnx(name: str, path: Path) -> Path:
    import torch

    model = build_multiscale_torch_model(name)
    side = torch.export.Dim("side32", min=2, max=64)  # 64 .. 2048 pixels
    batch = torch.export.Dim("batch")
    export_module(
        model,
        (torch.zeros(2, 3, 320, 320),),
        path,
        input_names=[INPUT_NAME],
        output_names=list(FEATURE_NAMES),
        dynamic_shapes=({0: batch, 2: SIZE_MULTIPLE * side, 3: SIZE_MULTIPLE * side},),
        metadata={_META_FORMAT: _FORMAT_VERSION, _META_NAME: name},
    )
    logger.info("exported multi-scale %s to %s (%d bytes)", name, path, Path(path).stat().st_size)
    return Path(path)


def _export_isolated(name: str, path: Path) -> Path:
    # A child process: torch's memory and import time never stay in a prediction server.
    return export_in_child("opencustomvision.ml.detection.features", name, path)


def ensure_multiscale_onnx(name: str, cache_dir: Path) -> Path:
    """The cached multi-scale ONNX file for ``name``, linked from the prepared models or exported first if missing."""
    return ensure_exported(multiscale_onnx_path(name, cache_dir), lambda path: _export_isolated(name, path))


class FeatureExtractor:
    """The multi-scale backbone behind an ONNX Runtime session (thread-safe, like the session)."""

    def __init__(self, name: str, session: ort.InferenceSession) -> None:
        self.name = name
        self._session = session
        self.channels: tuple[int, ...] = tuple(int(o.shape[1]) for o in session.get_outputs())

    @classmethod
    def load(cls, name: str, cache_dir: Path, *, threads: int | None = None) -> FeatureExtractor:
        path = ensure_multiscale_onnx(name, cache_dir)
        session = _open_checked(path, name, threads)
        if session is None:
            logger.warning("%s is stale; exporting it again", path)
            with export_lock(path.parent):
                _export_isolated(name, path)
            session = _open_checked(path, name, threads)
            if session is None:
                raise BackboneError(f"{path}: freshly exported, yet not a {name} multi-scale model")
        return cls(name, session)

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """The three feature maps of a preprocessed (N, 3, S, S) batch, S a multiple of 32."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1] != 3 or batch.shape[2] % SIZE_MULTIPLE or batch.shape[3] % SIZE_MULTIPLE:
            raise ValueError(f"expected (N, 3, H, W) with H, W multiples of {SIZE_MULTIPLE}, got {batch.shape}")
        return self._session.run(list(FEATURE_NAMES), {INPUT_NAME: batch})


def _open_checked(path: Path, name: str, threads: int | None) -> ort.InferenceSession | None:
    """A session on ``path``, or None when the file is unreadable or from another exporter version."""
    try:
        session = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own, unexported exception types
        logger.warning("%s: ONNX Runtime cannot open it (%s)", path, exc)
        return None
    meta: dict[str, Any] = session.get_modelmeta().custom_metadata_map
    if meta.get(_META_FORMAT) != _FORMAT_VERSION or meta.get(_META_NAME) != name:
        return None
    if [o.name for o in session.get_outputs()] != list(FEATURE_NAMES):
        return None
    return session


if __name__ == "__main__":
    export_multiscale_onnx(sys.argv[1], Path(sys.argv[2]))
