"""TensorFlow, TensorFlow Lite and TensorFlow.js packages, converted from the exported ONNX graph.

``onnx2tf`` translates the ONNX graph once into a Keras model (NCHW becomes NHWC); every TensorFlow
flavour is then that same model behind a thin ``tf.function`` with Azure's interface:

* the input is ``Placeholder`` (1, S, S, 3) float32, 0-255, BGR (RGB for the detection flavours whose
  Azure programs feed RGB: TensorFlow Lite and TensorFlow.js);
* a classifier answers ``loss`` (1, tags); a detector answers ``detected_boxes`` (K, 4),
  ``detected_classes`` (K,) and ``detected_scores`` (K,), without the batch dimension, as Azure's
  TensorFlow exports do.

Runs in the export child process only: TensorFlow never loads into the server.
"""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np

from opencustomvision.ml.export.graph import CLASSIFIER_OUTPUT, DETECTION_OUTPUTS

__all__ = [
    "CLASSIFIER_TF_OUTPUT",
    "TF_INPUT",
    "TensorFlowGraph",
    "convert_onnx",
    "write_frozen_graph",
    "write_saved_model",
    "write_tensorflow_js",
    "write_tflite",
]

TF_INPUT = "Placeholder"
CLASSIFIER_TF_OUTPUT = "loss"
# onnx2tf validates its conversion on a sample of images it downloads unless this file is in its
# working directory. Offline, we write it: deterministic smooth pictures in Azure's 0-1 layout.
_CALIBRATION_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"


def _calibration_images() -> np.ndarray:
    rng = np.random.default_rng(0)
    grid = np.linspace(0.0, 1.0, 128, dtype=np.float32)
    images = np.empty((20, 128, 128, 3), np.float32)
    for index in range(20):
        phase = rng.uniform(0, 2 * np.pi, size=3)
        frequency = rng.uniform(1, 6, size=3)
        for channel in range(3):
            wave = np.sin(frequency[channel] * np.pi * (grid[:, None] + grid[None, :] * (channel + 1)) + phase[channel])
            images[index, :, :, channel] = 0.5 + 0.5 * wave
    return images


class TensorFlowGraph:
    """The exported ONNX graph as a frozen TensorFlow graph (weights as constants): input ``data``
    (1, S, S, 3) BGR 0-255, outputs named as the ONNX graph's. Every flavour wraps it."""

    def __init__(self, graph_def: bytes, output_names: list[str], input_size: int, detection: bool) -> None:
        import tensorflow as tf

        self.graph_def = graph_def
        self.output_names = output_names
        self.input_size = input_size
        self.detection = detection
        definition = tf.compat.v1.GraphDef()
        definition.ParseFromString(graph_def)

        def imported(image: Any) -> list[Any]:
            return tf.graph_util.import_graph_def(definition, input_map={f"{_CANONICAL_INPUT}:0": image},
                                                  return_elements=[f"{name}:0" for name in output_names], name="model")

        self.imported = tf.compat.v1.wrap_function(imported, [self._spec(_CANONICAL_INPUT)])

    def output_shape(self, name: str) -> list[int | None]:
        return list(self.imported.outputs[self.output_names.index(name)].shape)

    def _spec(self, name: str) -> Any:
        import tensorflow as tf

        return tf.TensorSpec([1, self.input_size, self.input_size, 3], tf.float32, name=name)

    def function(self, *, rgb_input: bool) -> Any:
        """A ``tf.function`` with Azure's TensorFlow interface (see the module docstring)."""
        import tensorflow as tf

        imported, names, detection = self.imported, self.output_names, self.detection

        @tf.function(input_signature=[self._spec(TF_INPUT)])
        def serve(image: Any) -> dict[str, Any]:
            bgr = tf.reverse(image, axis=[-1]) if rgb_input else image
            outputs = dict(zip(names, imported(bgr), strict=True))
            if not detection:
                return {CLASSIFIER_TF_OUTPUT: tf.identity(outputs[CLASSIFIER_OUTPUT])}
            return {name: tf.squeeze(outputs[name], axis=0) for name in DETECTION_OUTPUTS}

        return serve


_CANONICAL_INPUT = "data"


def convert_onnx(onnx_path: Path, workdir: Path, *, input_size: int, detection: bool) -> TensorFlowGraph:
    """Translate the exported ONNX graph with onnx2tf (in ``workdir``, offline) and freeze it."""
    import onnx
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    workdir.mkdir(parents=True, exist_ok=True)
    np.save(workdir / _CALIBRATION_FILE, _calibration_images())
    names = [output.name for output in onnx.load(str(onnx_path), load_external_data=False).graph.output]
    previous = Path.cwd()
    os.chdir(workdir)
    try:
        import onnx2tf

        model = onnx2tf.convert(
            input_onnx_file_path=str(onnx_path),
            not_use_onnxsim=True,  # onnxsim is not installed; the graph is already optimised
            output_nms_with_dynamic_tensor=True,  # as many boxes as NMS keeps, not padded to the maximum
            disable_model_save=True,  # each flavour is written below, from the frozen graph
            # Grouped convolutions (the detector head's depthwise ones) as depthwise / separable operations:
            # TensorFlow.js and TensorFlow Lite have no grouped Conv2D.
            disable_group_convolution=True,
            non_verbose=True,
        )
    finally:
        os.chdir(previous)

    spec = tf.TensorSpec([1, input_size, input_size, 3], tf.float32, name=_CANONICAL_INPUT)

    @tf.function(input_signature=[spec])
    def canonical(image: Any) -> list[Any]:
        outputs = model(image)
        return list(outputs) if isinstance(outputs, list | tuple) else [outputs]

    frozen = convert_variables_to_constants_v2(canonical.get_concrete_function())
    definition = frozen.graph.as_graph_def()
    tensors = tf.nest.flatten(frozen.structured_outputs)
    renamed = {tensor.name.split(":")[0]: name for tensor, name in zip(tensors, names, strict=True)}
    taken = {node.name for node in definition.node} - set(renamed)
    if taken & set(names):
        raise RuntimeError(f"the converted graph already has nodes named {sorted(taken & set(names))}")
    _rename_nodes(definition, renamed)
    definition = tf.compat.v1.graph_util.extract_sub_graph(definition, names)
    return TensorFlowGraph(definition.SerializeToString(), names, input_size, detection)


def _rename_nodes(definition: Any, renamed: dict[str, str]) -> None:
    """Rename nodes, and drop control dependencies: a frozen graph of pure operations needs none, and
    they would keep ``NoOp`` nodes that programs reading Azure's graphs would take for outputs."""
    for node in definition.node:
        node.name = renamed.get(node.name, node.name)
        node.input[:] = [_renamed_input(name, renamed) for name in node.input if not name.startswith("^")]


def _renamed_input(name: str, renamed: dict[str, str]) -> str:
    base, _, port = name.partition(":")
    return renamed.get(base, base) + (f":{port}" if port else "")


def write_saved_model(graph: TensorFlowGraph, directory: Path, *, rgb_input: bool) -> list[Path]:
    """``saved_model.pb`` and ``variables/``: signature ``serving_default`` with Azure's names."""
    import tensorflow as tf

    holder = tf.Module()
    holder.serve = graph.function(rgb_input=rgb_input)
    tf.saved_model.save(holder, str(directory), signatures={"serving_default": holder.serve.get_concrete_function()})
    return [path for path in sorted(directory.rglob("*")) if path.is_file()]


def frozen_graph_def(graph: TensorFlowGraph, *, rgb_input: bool) -> Any:
    """A GraphDef with one ``Placeholder`` and nothing but Azure's outputs."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    concrete = graph.function(rgb_input=rgb_input).get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete)
    definition = frozen.graph.as_graph_def()
    outputs = tf.nest.flatten(frozen.structured_outputs, expand_composites=True)
    keys = sorted(concrete.structured_outputs)  # tf.nest flattens a dict in key order
    _rename_nodes(definition, {tensor.name.split(":")[0]: key for tensor, key in zip(outputs, keys, strict=True)})
    # Programs written for Azure's graphs take every node that nothing consumes as an output.
    return tf.compat.v1.graph_util.extract_sub_graph(definition, list(keys))


def write_frozen_graph(graph: TensorFlowGraph, path: Path, *, rgb_input: bool) -> Path:
    path.write_bytes(frozen_graph_def(graph, rgb_input=rgb_input).SerializeToString())
    return path


def write_tflite(graph: TensorFlowGraph, path: Path, *, rgb_input: bool, float16: bool) -> Path:
    """A TensorFlow Lite flatbuffer; ``float16`` stores the weights as float16 (computation stays float32)."""
    import tensorflow as tf

    concrete = graph.function(rgb_input=rgb_input).get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    if float16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    path.write_bytes(_named_tensors(converter.convert(), sorted(concrete.structured_outputs)))
    return path


def _named_tensors(flatbuffer: bytes, output_names: list[str]) -> bytes:
    """The model's input and output tensors renamed after Azure's (``Placeholder``, ``loss``, ...).

    Azure's TensorFlow Lite programs key the outputs by tensor name; the converter names them
    ``Identity``, ``Identity_1``... in the order of the function's (sorted) output keys.
    """
    from tensorflow.lite.python import util

    model = util._convert_model_from_bytearray_to_object(flatbuffer)  # noqa: SLF001 - TF's own flatbuffer helpers
    subgraph = model.subgraphs[0]
    if len(subgraph.inputs) != 1 or len(subgraph.outputs) != len(output_names):
        raise RuntimeError(f"converted TensorFlow Lite model has {len(subgraph.inputs)} inputs and {len(subgraph.outputs)} outputs")
    subgraph.tensors[subgraph.inputs[0]].name = TF_INPUT.encode()
    for index, name in zip(subgraph.outputs, output_names, strict=True):
        subgraph.tensors[index].name = name.encode()
    for signature in model.signatureDefs or []:
        for entry in signature.inputs or []:
            entry.name = TF_INPUT.encode()
        by_tensor = dict(zip(subgraph.outputs, output_names, strict=True))
        for entry in signature.outputs or []:
            entry.name = by_tensor[entry.tensorIndex].encode()
    return bytes(util._convert_model_from_object_to_bytearray(model))  # noqa: SLF001


def write_tensorflow_js(graph: TensorFlowGraph, directory: Path, *, rgb_input: bool, metadata: dict[str, str]) -> list[Path]:
    """``model.json`` and its weight shards, converted from the frozen graph; ``metadata`` lands in
    ``userDefinedMetadata``, where Azure's ``customvision-tfjs`` reads the pixel format."""
    _without_decision_forests()
    from tensorflowjs.converters import tf_saved_model_conversion_v2

    directory.mkdir(parents=True, exist_ok=True)
    frozen = directory.parent / "tfjs-frozen.pb"
    definition = frozen_graph_def(graph, rgb_input=rgb_input)
    frozen.write_bytes(definition.SerializeToString())
    # customvision-tfjs asks for the detection outputs in this order.
    outputs = ["detected_boxes", "detected_scores", "detected_classes"] if graph.detection else [CLASSIFIER_TF_OUTPUT]
    tf_saved_model_conversion_v2.convert_tf_frozen_model(str(frozen), ",".join(outputs), str(directory), metadata=dict(metadata))
    frozen.unlink()
    model_json = json.loads((directory / "model.json").read_text())
    if model_json.get("userDefinedMetadata") != metadata:
        raise RuntimeError("tensorflowjs dropped the model's metadata")
    return [path for path in sorted(directory.iterdir()) if path.is_file()]


def _without_decision_forests() -> None:
    """tensorflowjs imports tensorflow_decision_forests at module level, yet uses it only to convert
    decision-forest SavedModels (never here). Its wheels are built against one TensorFlow release
    (2.19), which cannot coexist with this project's numpy; so when it is absent, the import finds
    an empty module instead."""
    if "tensorflow_decision_forests" in sys.modules:
        return
    import importlib.util

    if importlib.util.find_spec("tensorflow_decision_forests") is None:
        sys.modules["tensorflow_decision_forests"] = types.ModuleType("tensorflow_decision_forests")

