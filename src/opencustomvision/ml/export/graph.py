"""The exported model as ONE ONNX graph, composed from the very graphs and parameters the service runs.

A served classifier is the backbone's ONNX export (pretrained, or the fine-tuned copy an Advanced
iteration stores) followed by a ``TagClassifier`` head (L2 normalisation, a linear map, softmax or
sigmoid). A served detector is the multi-scale backbone export, the trained head's ONNX
(``DetectionModel``'s ``head.onnx``) and numpy decoding with per-class non-maximum suppression.
This module splices those graphs, unchanged, into one model and writes the head and the decoding as
ONNX operators, so the exported model computes what the prediction endpoint computes:

* the input is one image, NCHW float32, **BGR 0-255** (Azure's ``data`` contract); the graph itself
  reverses the channels and applies the backbone's normalisation (``preprocess.INPUT_MEAN`` /
  ``INPUT_STD``). Resizing and cropping stay outside (declared in the package's metadata).
* a classifier answers ``model_output`` (1, tags): the probability of each tag, in label order.
* a detector answers ``detected_boxes`` (1, K, 4: x1, y1, x2, y2 normalised), ``detected_classes``
  (1, K) and ``detected_scores`` (1, K), most probable first, with the decoding and NMS inside the
  graph (ONNX ``NonMaxSuppression``), and ``raw_boxes`` (1, L, 4: centre x, centre y, width,
  height) / ``raw_probs`` (1, L, 1 + tags, background first) before NMS, for the formats that
  ship the undecoded outputs (OpenVINO ``NoPostProcess``, CoreML).

The detector's anchor points come from ``targets.anchor_points`` and its thresholds from
``detection.model`` (not copies), so the export follows any change of the detector's training.

Arrays and bytes in, an ``onnx.ModelProto`` out; nothing here knows about the database.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from opencustomvision.ml.detection import model as detection_model
from opencustomvision.ml.detection.features import FEATURE_NAMES
from opencustomvision.ml.detection.features import INPUT_NAME as MULTISCALE_INPUT
from opencustomvision.ml.detection.targets import anchor_points
from opencustomvision.ml.backbone import INPUT_NAME as BACKBONE_INPUT
from opencustomvision.ml.preprocess import INPUT_MEAN, INPUT_STD

__all__ = [
    "CLASSIFIER_OUTPUT",
    "DETECTION_OUTPUTS",
    "INPUT_NAME",
    "RAW_OUTPUTS",
    "ClassifierParts",
    "DetectorParts",
    "classifier_graph",
    "detector_graph",
    "select_outputs",
]

INPUT_NAME = "data"
CLASSIFIER_OUTPUT = "model_output"
DETECTION_OUTPUTS = ("detected_boxes", "detected_classes", "detected_scores")
RAW_OUTPUTS = ("raw_boxes", "raw_probs")
# A tag the head could not learn has an infinite intercept (probability exactly 0 or 1). Converters and
# float16 handle a large finite logit better than infinity, and the probability is the same.
_LOGIT_LIMIT = 1e4


@dataclass(frozen=True)
class ClassifierParts:
    """What a served classifier is made of."""

    backbone_onnx: bytes  # the backbone's export: input (N, 3, S, S) -> "embedding", "logits"
    input_size: int
    mode: str  # "Multiclass" (softmax) or "Multilabel" (sigmoid per tag)
    coef: np.ndarray  # (tags, embedding) over L2-normalised embeddings
    intercept: np.ndarray  # (tags,)


@dataclass(frozen=True)
class DetectorParts:
    """What a served detector is made of."""

    backbone_onnx: bytes  # the multi-scale export: input -> FEATURE_NAMES maps
    head_onnx: bytes  # FEATURE_NAMES -> per-point "scores" (1, L, tags) and "distances" (1, L, 4)
    input_size: int
    strides: tuple[int, ...]
    tag_count: int


def classifier_graph(parts: ClassifierParts, metadata: Mapping[str, str]) -> onnx.ModelProto:
    """One model: BGR 0-255 image -> backbone -> the head's probabilities (``model_output``)."""
    backbone = _prefixed(onnx.load_from_string(parts.backbone_onnx), "backbone/")
    builder = _Builder(backbone)
    size = parts.input_size
    builder.graph_input(INPUT_NAME, [1, 3, size, size])
    builder.normalised_rgb(INPUT_NAME, "backbone/" + BACKBONE_INPUT)

    embedding = "backbone/embedding"
    # sqrt(sum(x * x)) rather than ReduceL2, which onnx2tf mistranslates.
    squares = builder.node("ReduceSum", [builder.node("Mul", [embedding, embedding]),
                                         builder.constant("axes_last", np.array([-1], np.int64))], keepdims=1)
    safe = builder.node("Max", [builder.node("Sqrt", [squares]), builder.constant("tiny", np.array(1e-12, np.float32))])
    unit = builder.node("Div", [embedding, safe])
    weights = builder.constant("head_weights", np.asarray(parts.coef, np.float64).T.astype(np.float32))
    bias = np.clip(np.asarray(parts.intercept, np.float64), -_LOGIT_LIMIT, _LOGIT_LIMIT).astype(np.float32)
    logits = builder.node("Add", [builder.node("MatMul", [unit, weights]), builder.constant("head_bias", bias)])
    if parts.mode == "Multiclass":
        builder.node("Softmax", [logits], outputs=[CLASSIFIER_OUTPUT], axis=-1)
    elif parts.mode == "Multilabel":
        builder.node("Sigmoid", [logits], outputs=[CLASSIFIER_OUTPUT])
    else:
        raise ValueError(f"unknown classification mode {parts.mode!r}")
    builder.graph_output(CLASSIFIER_OUTPUT, TensorProto.FLOAT, [1, len(bias)])
    # The backbone's ImageNet logits are not part of the export.
    return select_outputs(builder.model("opencustomvision_classifier", metadata), [CLASSIFIER_OUTPUT])


def detector_graph(parts: DetectorParts, metadata: Mapping[str, str]) -> onnx.ModelProto:
    """One model: BGR 0-255 image -> backbone -> head -> decoding -> per-class NMS."""
    backbone = _prefixed(onnx.load_from_string(parts.backbone_onnx), "backbone/")
    head = _prefixed(onnx.load_from_string(parts.head_onnx), "head/")
    builder = _Builder(backbone, head)
    size = parts.input_size
    builder.graph_input(INPUT_NAME, [1, 3, size, size])
    builder.normalised_rgb(INPUT_NAME, "backbone/" + MULTISCALE_INPUT)
    for name in FEATURE_NAMES:  # the backbone's maps are the head's inputs
        builder.node("Identity", ["backbone/" + name], outputs=["head/" + name])

    points = anchor_points(size, parts.strides)
    scores = "head/" + detection_model.SCORES_OUTPUT  # (1, L, C)
    distances = "head/" + detection_model.DISTANCES_OUTPUT  # (1, L, 4) in strides
    scaled = builder.node("Mul", [distances, builder.constant("strides", points.strides[None, :, None].astype(np.float32))])
    centres = builder.constant("points", np.concatenate([points.xy, points.xy], axis=1)[None].astype(np.float32))
    signs = builder.constant("signs", np.array([-1, -1, 1, 1], np.float32))
    corners = builder.node("Add", [centres, builder.node("Mul", [scaled, signs])])
    pixels = builder.constant("input_side", np.array(float(size), np.float32))
    boxes = builder.node("Clip", [builder.node("Div", [corners, pixels]),
                                  builder.constant("zero", np.array(0.0, np.float32)),
                                  builder.constant("one", np.array(1.0, np.float32))])  # (1, L, 4) xyxy

    # The served model decodes at most CANDIDATES_BEFORE_NMS (point, tag) pairs: the most probable.
    flat = builder.node("Reshape", [scores, builder.constant("flat_shape", np.array([-1], np.int64))])
    # k from Shape (not a constant): onnx2tf cannot read a constant k under numpy 2.
    count = builder.node("Min", [builder.node("Shape", [flat]),
                                 builder.constant("candidates", np.array([detection_model.CANDIDATES_BEFORE_NMS], np.int64))])
    best, _ = builder.node("TopK", [flat, count], n_outputs=2)
    cut = builder.node("ReduceMin", [best, builder.constant("axis0", np.array([0], np.int64))], keepdims=0)
    kept_scores = builder.node("Where", [builder.node("GreaterOrEqual", [scores, cut]), scores, "zero"])

    per_class = builder.node("Transpose", [kept_scores], perm=[0, 2, 1])  # (1, C, L)
    selected = builder.node("NonMaxSuppression", [
        boxes, per_class,
        builder.constant("max_per_class", np.array([detection_model.MAX_DETECTIONS], np.int64)),
        builder.constant("iou", np.array([detection_model.NMS_IOU], np.float32)),
        builder.constant("floor", np.array([detection_model.PROBABILITY_FLOOR], np.float32)),
    ])  # (K, 3): batch, class, point
    pairs = builder.node("Slice", [selected, builder.constant("from1", np.array([1], np.int64)),
                                   builder.constant("to3", np.array([3], np.int64)),
                                   builder.constant("axis1", np.array([1], np.int64))])  # (K, 2)
    found_scores = builder.node("GatherND", [builder.node("Squeeze", [per_class, "axis0"]), pairs])
    point_index = builder.node("Gather", [pairs, builder.constant("one_index", np.array(1, np.int64))], axis=1)
    class_index = builder.node("Gather", [pairs, builder.constant("zero_index", np.array(0, np.int64))], axis=1)
    found_boxes = builder.node("Gather", [builder.node("Squeeze", [boxes, "axis0"]), point_index], axis=0)

    # Most probable first, at most MAX_DETECTIONS over all tags (as the served model sorts its kept boxes).
    found = builder.node("Shape", [found_scores])
    top = builder.node("Min", [found, builder.constant("max_detections", np.array([detection_model.MAX_DETECTIONS], np.int64))])
    ranked_scores, order = builder.node("TopK", [found_scores, top], n_outputs=2, axis=0, largest=1, sorted=1)
    builder.node("Unsqueeze", [builder.node("Gather", [found_boxes, order], axis=0), "axis0"], outputs=[DETECTION_OUTPUTS[0]])
    builder.node("Unsqueeze", [builder.node("Gather", [class_index, order], axis=0), "axis0"], outputs=[DETECTION_OUTPUTS[1]])
    builder.node("Unsqueeze", [ranked_scores, "axis0"], outputs=[DETECTION_OUTPUTS[2]])
    builder.graph_output(DETECTION_OUTPUTS[0], TensorProto.FLOAT, [1, "detections", 4])
    builder.graph_output(DETECTION_OUTPUTS[1], TensorProto.INT64, [1, "detections"])
    builder.graph_output(DETECTION_OUTPUTS[2], TensorProto.FLOAT, [1, "detections"])

    # Before NMS: every point's box (centre, size) and its tag scores behind a background column.
    first_corner, second_corner = builder.node("Split", [boxes, builder.constant("halves", np.array([2, 2], np.int64))], n_outputs=2, axis=2)
    extent = builder.node("Sub", [second_corner, first_corner])
    middle = builder.node("Add", [first_corner, builder.node("Mul", [extent, builder.constant("half", np.array(0.5, np.float32))])])
    builder.node("Concat", [middle, extent], outputs=[RAW_OUTPUTS[0]], axis=2)
    strongest = builder.node("ReduceMax", [scores, builder.constant("axes_last", np.array([-1], np.int64))], keepdims=1)
    background = builder.node("Sub", ["one", strongest])
    builder.node("Concat", [background, scores], outputs=[RAW_OUTPUTS[1]], axis=2)
    builder.graph_output(RAW_OUTPUTS[0], TensorProto.FLOAT, [1, len(points), 4])
    builder.graph_output(RAW_OUTPUTS[1], TensorProto.FLOAT, [1, len(points), parts.tag_count + 1])
    return builder.model("opencustomvision_detector", metadata)


def select_outputs(model: onnx.ModelProto, names: Sequence[str]) -> onnx.ModelProto:
    """The same model answering only ``names`` (in that order), without the nodes nothing needs any more."""
    known = {output.name: output for output in model.graph.output}
    missing = [name for name in names if name not in known]
    if missing:
        raise ValueError(f"the model has no output {missing}; it has {sorted(known)}")
    pruned = onnx.ModelProto()
    pruned.CopyFrom(model)
    del pruned.graph.output[:]
    pruned.graph.output.extend(known[name] for name in names)
    needed = set(names)
    kept = []
    for node in reversed(pruned.graph.node):
        if any(output in needed for output in node.output):
            kept.append(node)
            needed.update(name for name in node.input if name)
    del pruned.graph.node[:]
    pruned.graph.node.extend(reversed(kept))
    initializers = [tensor for tensor in pruned.graph.initializer if tensor.name in needed]
    del pruned.graph.initializer[:]
    pruned.graph.initializer.extend(initializers)
    return pruned


# --- composing graphs -----------------------------------------------------------------------------


def _prefixed(model: onnx.ModelProto, prefix: str) -> onnx.ModelProto:
    from onnx import compose

    return compose.add_prefix(model, prefix, rename_functions=True)


class _Builder:
    """Collects the nodes of the composed graph: the given graphs' nodes first, then ours."""

    def __init__(self, *parts: onnx.ModelProto) -> None:
        self._parts = parts
        self._nodes: list[onnx.NodeProto] = []
        self._initializers: list[onnx.TensorProto] = []
        self._inputs: list[onnx.ValueInfoProto] = []
        self._outputs: list[onnx.ValueInfoProto] = []
        self._counter = 0
        self._constants: set[str] = set()
        opsets: dict[str, int] = {}
        for part in parts:
            for opset in part.opset_import:
                opsets[opset.domain] = max(opsets.get(opset.domain, 0), opset.version)
        self.opsets = opsets
        self.ir_version = max(part.ir_version for part in parts)

    def graph_input(self, name: str, shape: list[int]) -> None:
        self._inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))

    def graph_output(self, name: str, element_type: int, shape: list[int | str]) -> None:
        self._outputs.append(helper.make_tensor_value_info(name, element_type, shape))

    def constant(self, name: str, value: np.ndarray) -> str:
        if name not in self._constants:
            self._constants.add(name)
            self._initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op_type: str, inputs: list[str], *, outputs: list[str] | None = None, n_outputs: int = 1,
             **attributes: object):  # type: ignore[no-untyped-def]
        if outputs is None:
            outputs = [f"export/{op_type.lower()}_{self._counter}_{i}" for i in range(n_outputs)]
        self._counter += 1
        self._nodes.append(helper.make_node(op_type, inputs, outputs, name=f"export/{op_type}_{self._counter}", **attributes))
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def normalised_rgb(self, bgr_255: str, target: str) -> None:
        """BGR 0-255 in, the backbone's RGB input ``(x - INPUT_MEAN) / INPUT_STD`` out."""
        rgb = self.node("Gather", [bgr_255, self.constant("bgr_to_rgb", np.array([2, 1, 0], np.int64))], axis=1)
        centred = self.node("Sub", [rgb, self.constant("input_mean", np.array(INPUT_MEAN, np.float32))])
        self.node("Div", [centred, self.constant("input_std", np.array(INPUT_STD, np.float32))], outputs=[target])

    def model(self, name: str, metadata: Mapping[str, str]) -> onnx.ModelProto:
        nodes: list[onnx.NodeProto] = []
        initializers: list[onnx.TensorProto] = []
        functions: list[onnx.FunctionProto] = []
        for part in self._parts:
            nodes.extend(part.graph.node)
            initializers.extend(part.graph.initializer)
            functions.extend(part.functions)
        graph = helper.make_graph(nodes + self._nodes, name, self._inputs, self._outputs, initializers + self._initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid(domain, version) for domain, version in self.opsets.items()],
                                  functions=functions, producer_name="opencustomvision")
        model.ir_version = self.ir_version
        helper.set_model_props(model, dict(metadata))
        # Nodes were appended after the parts' own: order them so every input is produced before use.
        return _topologically_sorted(model)


def _topologically_sorted(model: onnx.ModelProto) -> onnx.ModelProto:
    graph = model.graph
    available = {tensor.name for tensor in graph.initializer} | {value.name for value in graph.input} | {""}
    pending = list(graph.node)
    ordered: list[onnx.NodeProto] = []
    while pending:
        ready = [node for node in pending if all(name in available for name in node.input)]
        if not ready:
            missing = sorted({name for node in pending for name in node.input if name not in available})
            raise ValueError(f"the composed graph cannot be ordered: nothing produces {missing[:5]}")
        ready_ids = {id(node) for node in ready}
        pending = [node for node in pending if id(node) not in ready_ids]
        ordered.extend(ready)
        available.update(name for node in ready for name in node.output)
    del graph.node[:]
    graph.node.extend(ordered)
    onnx.checker.check_model(model)
    return model
