"""Azure's package layout: the model under Azure's file name, ``labels.txt``, ``metadata_properties.json``
and ``cvexport.manifest``, zipped.

``metadata_properties.json`` declares what a program must do to an image before the model sees it
(the same keys are in the ONNX model's ``metadata_props`` and the TF.js ``userDefinedMetadata``):

* classification: resize so the short side is ``CustomVision.Preprocess.MinDimension`` (bicubic),
  centre-crop ``TargetWidth`` x ``TargetHeight`` — the served model's own pre-processing;
* detection: stretch the whole image to ``TargetWidth`` x ``TargetHeight`` (bilinear);
* then hand the pixels over in ``Image.BitmapPixelFormat`` order (``Bgr8`` / ``Rgb8``) and
  ``Image.NominalPixelRange`` (``NominalRange_0_255`` or ``Normalized_0_1``). Normalisation to the
  backbone's range happens inside the model.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from opencustomvision.ml.preprocess import resized_short_side

__all__ = [
    "BGR_255",
    "LABELS_FILE",
    "MANIFEST_FILE",
    "METADATA_FILE",
    "RGB_01",
    "RGB_255",
    "ExportInfo",
    "PixelConvention",
    "metadata_properties",
    "write_zip",
]

LABELS_FILE = "labels.txt"
METADATA_FILE = "metadata_properties.json"
MANIFEST_FILE = "cvexport.manifest"


@dataclass(frozen=True)
class PixelConvention:
    pixel_format: str  # Image.BitmapPixelFormat
    pixel_range: str  # Image.NominalPixelRange


BGR_255 = PixelConvention("Bgr8", "NominalRange_0_255")
RGB_255 = PixelConvention("Rgb8", "NominalRange_0_255")
RGB_01 = PixelConvention("Rgb8", "Normalized_0_1")


@dataclass(frozen=True)
class ExportInfo:
    """What the package says about the model it carries."""

    detection: bool
    mode: str | None  # Multiclass / Multilabel for a classifier
    input_size: int
    labels: Sequence[str]  # tag names, in the model's class order
    tag_ids: Sequence[str]
    project_id: str
    iteration_id: str
    platform: str
    flavor: str | None
    exporter_version: str


def metadata_properties(info: ExportInfo, pixels: PixelConvention) -> dict[str, str]:
    from opencustomvision.ml.detection import model as detection_model

    size = str(info.input_size)
    properties = {
        "CustomVision.Metadata.AdditionalModelInfo": "OpenCustomVision export",
        "CustomVision.Metadata.Version": "1.2",
        "CustomVision.Preprocess.TargetWidth": size,
        "CustomVision.Preprocess.TargetHeight": size,
        "CustomVision.Preprocess.NormalizeMean": "[0.0, 0.0, 0.0]",
        "CustomVision.Preprocess.NormalizeStd": "[1.0, 1.0, 1.0]",
        "Image.BitmapPixelFormat": pixels.pixel_format,
        "Image.ColorSpaceGamma": "SRGB",
        "Image.NominalPixelRange": pixels.pixel_range,
    }
    if info.detection:
        properties.update({
            "CustomVision.Postprocess.Method": "NonMaxSuppressionPerClass",
            "CustomVision.Postprocess.NmsThreshold": str(detection_model.NMS_IOU),
            "CustomVision.Postprocess.ProbabilityThreshold": str(detection_model.PROBABILITY_FLOOR),
            "CustomVision.Preprocess.CropMethod": "NoCrop",
            "CustomVision.Preprocess.ResizeMethod": "Stretch",
            "CustomVision.Preprocess.ResizeFilter": "Bilinear",
            "CustomVision.Preprocess.MinDimension": "0",
        })
    else:
        properties.update({
            "CustomVision.Postprocess.Method": "ClassificationMultiLabel" if info.mode == "Multilabel" else "ClassificationMultiClass",
            "CustomVision.Preprocess.CropMethod": "CenterCrop",
            "CustomVision.Preprocess.ResizeMethod": "ShorterSide",
            "CustomVision.Preprocess.ResizeFilter": "Bicubic",
            "CustomVision.Preprocess.MinDimension": str(resized_short_side(info.input_size)),
        })
    return properties


def manifest(info: ExportInfo, model_file: str) -> dict[str, object]:
    return {
        "SchemaVersion": "1.0",
        "DomainType": "ObjectDetection" if info.detection else "Classification",
        "Platform": info.platform,
        "Flavor": info.flavor,
        "ExporterVersion": info.exporter_version,
        "ExportedDate": datetime.now(timezone.utc).isoformat(),
        "ProjectId": info.project_id,
        "IterationId": info.iteration_id,
        "ModelFileName": model_file,
        "LabelFileName": LABELS_FILE,
        "MetadataPropsFileName": METADATA_FILE,
        "TagIds": list(info.tag_ids),
    }


def write_zip(path: Path, info: ExportInfo, pixels: PixelConvention, model_file: str,
              files: Mapping[str, Path | bytes], *, prefix: str = "") -> Path:
    """The package: ``files`` (archive name -> file or bytes) plus labels, metadata and manifest under ``prefix``."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            if isinstance(content, Path):
                archive.write(content, name)
            else:
                archive.writestr(name, content)
        archive.writestr(prefix + LABELS_FILE, "".join(f"{label}\n" for label in info.labels))
        archive.writestr(prefix + METADATA_FILE, json.dumps(metadata_properties(info, pixels), indent=2, sort_keys=True))
        archive.writestr(prefix + MANIFEST_FILE, json.dumps(manifest(info, model_file), indent=2))
    return path
