"""Machine learning: pretrained image backbones and their preprocessing.

Arrays and files in, arrays and files out: nothing here knows about the database
or HTTP. Importing this package imports ONNX Runtime but never torch (torch is
needed only to export a backbone to ONNX, once per cache directory).
"""

from opencustomvision.ml.backbone import (
    BACKBONES,
    DEFAULT_BACKBONE,
    Backbone,
    BackboneError,
    BackboneSpec,
)
from opencustomvision.ml.preprocess import preprocess, preprocess_batch

__all__ = [
    "BACKBONES",
    "DEFAULT_BACKBONE",
    "Backbone",
    "BackboneError",
    "BackboneSpec",
    "preprocess",
    "preprocess_batch",
]
