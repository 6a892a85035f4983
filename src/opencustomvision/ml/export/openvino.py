"""OpenVINO IR (``model.xml`` + ``model.bin``), converted from the exported ONNX graph.

Azure's OpenVINO programs feed NCHW **RGB 0-1**: OpenVINO's own pre-processing (built into the IR)
reverses the channels and scales to the graph's BGR 0-255. Weights stay float32
(``compress_to_fp16=False``); note that OpenVINO then computes in bf16 on CPUs that have it unless the
caller asks for ``INFERENCE_PRECISION_HINT=f32``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["write_openvino"]


def write_openvino(onnx_path: Path, xml_path: Path, *, outputs: Sequence[str]) -> list[Path]:
    """``xml_path`` and its ``.bin``, answering only ``outputs`` (the ONNX graph's names)."""
    import openvino as ov

    model = ov.convert_model(str(onnx_path), output=list(outputs))
    steps = ov.preprocess.PrePostProcessor(model)
    steps.input().tensor().set_layout(ov.Layout("NCHW"))
    steps.input().model().set_layout(ov.Layout("NCHW"))
    steps.input().preprocess().reverse_channels()  # RGB in, the graph's BGR
    steps.input().preprocess().scale(1.0 / 255.0)  # divides: 0-1 in, the graph's 0-255
    ov.save_model(steps.build(), str(xml_path), compress_to_fp16=False)
    return [xml_path, xml_path.with_suffix(".bin")]
