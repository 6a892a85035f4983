"""CoreML (``model.mlmodel``), converted with coremltools from the frozen TensorFlow twin of the
exported ONNX graph (``tensorflow.TensorFlowGraph``), so it is the very graph checked numerically.

* the input is an image named ``data`` (BGR order into the graph, 0-255), of the exported size;
* a classifier is a CoreML classifier: ``classLabel`` (the most probable tag) and ``loss`` (tag ->
  probability), as Azure's CoreML classifiers;
* a detector is a pipeline: the network's per-point ``confidence`` (tags) and ``coordinates``
  (centre x, centre y, width, height, normalised), then CoreML's own per-class non-maximum
  suppression with the served model's thresholds, answering ``confidence`` and ``coordinates``
  as Apple's Vision framework expects.

CoreML runs only on Apple's systems: on Linux the model is built and inspected, not run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from opencustomvision.ml.detection import model as detection_model
from opencustomvision.ml.export.graph import CLASSIFIER_OUTPUT
from opencustomvision.ml.export.tensorflow import TensorFlowGraph

__all__ = ["write_coreml"]

INPUT_NAME = "data"
PROBABILITIES = "loss"
LABEL = "classLabel"


def write_coreml(graph: TensorFlowGraph, path: Path, *, labels: Sequence[str], metadata: Mapping[str, str],
                 float16: bool) -> Path:
    import coremltools as ct

    model = _detector(graph, labels) if graph.detection else _classifier(graph, labels)
    if float16:
        model = ct.models.neural_network.quantization_utils.quantize_weights(model, nbits=16)
    spec = model.get_spec()
    for key, value in metadata.items():
        spec.description.metadata.userDefined[key] = value
    spec.description.metadata.shortDescription = "OpenCustomVision export"
    ct.utils.save_spec(spec, str(path))
    return path


def _image_input(graph: TensorFlowGraph) -> Any:
    import coremltools as ct

    side = graph.input_size
    return ct.ImageType(name=INPUT_NAME, shape=(1, side, side, 3), channel_first=False, color_layout=ct.colorlayout.BGR)


def _classifier(graph: TensorFlowGraph, labels: Sequence[str]) -> Any:
    import coremltools as ct
    import tensorflow as tf

    imported, names = graph.imported, graph.output_names

    @tf.function(input_signature=[tf.TensorSpec([1, graph.input_size, graph.input_size, 3], tf.float32, name=INPUT_NAME)])
    def probabilities(image: Any) -> Any:
        return tf.identity(dict(zip(names, imported(image), strict=True))[CLASSIFIER_OUTPUT])

    model = ct.convert([probabilities.get_concrete_function()], source="tensorflow", convert_to="neuralnetwork",
                       inputs=[_image_input(graph)], classifier_config=ct.ClassifierConfig(list(labels), predicted_feature_name=LABEL))
    spec = model.get_spec()
    ct.utils.rename_feature(spec, spec.description.predictedProbabilitiesName, PROBABILITIES)
    return ct.models.MLModel(spec)


def _detector(graph: TensorFlowGraph, labels: Sequence[str]) -> Any:
    import coremltools as ct
    import tensorflow as tf
    from coremltools.models import datatypes
    from coremltools.models.pipeline import Pipeline

    imported, names = graph.imported, graph.output_names

    @tf.function(input_signature=[tf.TensorSpec([1, graph.input_size, graph.input_size, 3], tf.float32, name=INPUT_NAME)])
    def raw(image: Any) -> dict[str, Any]:
        outputs = dict(zip(names, imported(image), strict=True))
        return {"raw_confidence": outputs["raw_probs"][0, :, 1:], "raw_coordinates": outputs["raw_boxes"][0]}

    network = ct.convert([raw.get_concrete_function()], source="tensorflow", convert_to="neuralnetwork", inputs=[_image_input(graph)])
    network_spec = network.get_spec()
    points = int(graph.output_shape("raw_boxes")[1])
    for output in network_spec.description.output:  # NMS needs the shapes declared
        output.type.multiArrayType.shape[:] = [points, len(labels) if output.name == "raw_confidence" else 4]
        output.type.multiArrayType.dataType = ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32

    nms = ct.proto.Model_pb2.Model()
    nms.specificationVersion = network_spec.specificationVersion
    for name, width in (("raw_confidence", len(labels)), ("raw_coordinates", 4)):
        feature = nms.description.input.add()
        feature.name = name
        feature.type.multiArrayType.shape[:] = [points, width]
        feature.type.multiArrayType.dataType = ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32
    for name, width in (("confidence", len(labels)), ("coordinates", 4)):
        feature = nms.description.output.add()
        feature.name = name
        feature.type.multiArrayType.dataType = ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32
        feature.type.multiArrayType.shapeRange.sizeRanges.add(lowerBound=0, upperBound=-1)
        feature.type.multiArrayType.shapeRange.sizeRanges.add(lowerBound=width, upperBound=width)
    suppression = nms.nonMaximumSuppression
    suppression.confidenceInputFeatureName, suppression.coordinatesInputFeatureName = "raw_confidence", "raw_coordinates"
    suppression.confidenceOutputFeatureName, suppression.coordinatesOutputFeatureName = "confidence", "coordinates"
    suppression.iouThreshold = detection_model.NMS_IOU
    suppression.confidenceThreshold = detection_model.PROBABILITY_FLOOR
    suppression.pickTop.perClass = True
    suppression.stringClassLabels.vector.extend(labels)

    pipeline = Pipeline(input_features=[(INPUT_NAME, datatypes.Array(1))],
                        output_features=[("confidence", datatypes.Array(1)), ("coordinates", datatypes.Array(1))])
    pipeline.add_model(network_spec)
    pipeline.add_model(nms)
    spec = pipeline.spec
    spec.description.input[0].CopyFrom(network_spec.description.input[0])
    for index, output in enumerate(nms.description.output):
        spec.description.output[index].CopyFrom(output)
    spec.specificationVersion = max(network_spec.specificationVersion, 4)
    return ct.models.MLModel(spec)
