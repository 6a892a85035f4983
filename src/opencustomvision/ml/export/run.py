"""One export, in a child process: compose the graph, convert it for the target, write Azure's package.

The export job writes a work directory and runs ``python -m opencustomvision.ml.export.run WORKDIR``,
so no converter (TensorFlow, coremltools, OpenVINO) ever loads into the server:

    WORKDIR/request.json     {"platform", "flavor", "detection", "mode", "input_size", "strides", "tag_count",
                              "labels", "tag_ids", "project_id", "iteration_id"}
    WORKDIR/backbone.onnx    the served backbone (classification) or multi-scale backbone (detection)
    WORKDIR/head.npz         a classifier's head: coef, intercept
    WORKDIR/head.onnx        a detector's head graph
    WORKDIR/tensorflow.pb    optional: the frozen TensorFlow twin made by an earlier export of this model

It writes ``package.zip``, ``tensorflow.pb`` when it made one (the job keeps it for the next TensorFlow
or CoreML export of the same model: onnx2tf is the slow step), and ``report.json``.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

from opencustomvision.ml.child import exit_with_parent, run_module
from opencustomvision.ml.export import package
from opencustomvision.ml.export.graph import (
    CLASSIFIER_OUTPUT,
    DETECTION_OUTPUTS,
    RAW_OUTPUTS,
    ClassifierParts,
    DetectorParts,
    classifier_graph,
    detector_graph,
    select_outputs,
)
from opencustomvision.ml.export.package import BGR_255, RGB_01, RGB_255, ExportInfo, PixelConvention
from opencustomvision.ml.export.platforms import COREML, DOCKER, EXPORTER_VERSION, ONNX, OPENVINO, TENSORFLOW, resolve

__all__ = ["run_in_child"]

TENSORFLOW_CACHE = "tensorflow.pb"
DOCKER_FILES = Path(__file__).resolve().parent / "docker"
DOCKERFILES = {None: "Dockerfile.linux", "Linux": "Dockerfile.linux", "ARM": "Dockerfile.arm", "Windows": "Dockerfile.windows"}


def run_in_child(workdir: Path, *, timeout_seconds: float, should_stop: Callable[[], bool] | None = None) -> dict[str, object]:
    return run_module("opencustomvision.ml.export.run", workdir, timeout_seconds=timeout_seconds, what="export", should_stop=should_stop)


class _Export:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        request = json.loads((workdir / "request.json").read_text())
        self.request = request
        self.target = resolve(request["platform"], request.get("flavor"))
        self.info = ExportInfo(
            detection=bool(request["detection"]), mode=request.get("mode"), input_size=int(request["input_size"]),
            labels=list(request["labels"]), tag_ids=list(request["tag_ids"]), project_id=request["project_id"],
            iteration_id=request["iteration_id"], platform=self.target.platform, flavor=self.target.flavor,
            exporter_version=EXPORTER_VERSION,
        )
        self.build = workdir / "build"
        self.build.mkdir(exist_ok=True)

    def metadata(self, pixels: PixelConvention) -> dict[str, str]:
        return package.metadata_properties(self.info, pixels)

    def canonical(self) -> onnx.ModelProto:
        """The whole model, BGR 0-255 NCHW in, every output (detection: with the raw ones)."""
        backbone = (self.workdir / "backbone.onnx").read_bytes()
        metadata = self.metadata(BGR_255)
        if not self.info.detection:
            with np.load(self.workdir / "head.npz", allow_pickle=False) as head:
                parts = ClassifierParts(backbone, self.info.input_size, str(self.info.mode), head["coef"], head["intercept"])
            return classifier_graph(parts, metadata)
        parts = DetectorParts(backbone, (self.workdir / "head.onnx").read_bytes(), self.info.input_size,
                              tuple(int(s) for s in self.request["strides"]), int(self.request["tag_count"]))
        return detector_graph(parts, metadata)

    @property
    def served_outputs(self) -> list[str]:
        return list(DETECTION_OUTPUTS) if self.info.detection else [CLASSIFIER_OUTPUT]

    def zip(self, pixels: PixelConvention, model_file: str, files: dict[str, Path | bytes], *, prefix: str = "") -> Path:
        return package.write_zip(self.workdir / "package.zip", self.info, pixels, model_file, files, prefix=prefix)

    def run(self) -> None:
        model = self.canonical()
        canonical_path = self.build / "canonical.onnx"
        onnx.save(model, str(canonical_path))
        platform, flavor = self.target.platform, self.target.flavor
        if platform == ONNX:
            self.onnx(model, float16=flavor == "OnnxFloat16")
        elif platform == DOCKER:
            self.docker(model, flavor)
        elif platform == OPENVINO:
            # NoPostProcess leaves a detector's decoding and NMS to the caller; a classifier has none to leave.
            self.openvino(canonical_path, raw=flavor == "NoPostProcess" and self.info.detection)
        elif platform in (TENSORFLOW, COREML):
            self.tensorflow_family(canonical_path, platform, flavor)
        else:  # resolve() refuses the rest
            raise ValueError(f"no exporter for {self.target.key}")

    def onnx(self, model: onnx.ModelProto, *, float16: bool) -> None:
        served = select_outputs(model, self.served_outputs)
        if float16:
            from onnxconverter_common import float16 as half

            # ONNX Runtime's CPU kernels for these take float32 only; they keep it, with casts around them.
            blocked = [*half.DEFAULT_OP_BLOCK_LIST, "NonMaxSuppression", "TopK", "Resize"]
            served = half.convert_float_to_float16(served, keep_io_types=False, op_block_list=blocked)
        self.zip(BGR_255, "model.onnx", {"model.onnx": served.SerializeToString()})

    def docker(self, model: onnx.ModelProto, flavor: str | None) -> None:
        served = select_outputs(model, self.served_outputs).SerializeToString()
        versions = {name: importlib.metadata.version(name) for name in ("onnxruntime", "numpy", "pillow")}
        files: dict[str, Path | bytes] = {
            "Dockerfile": DOCKER_FILES / DOCKERFILES[flavor],
            "requirements.txt": "".join(f"{name}=={version}\n" for name, version in versions.items()).encode(),
            "app/app.py": DOCKER_FILES / "app.py",
            "app/model.onnx": served,
        }
        self.zip(BGR_255, "model.onnx", files, prefix="app/")

    def openvino(self, canonical_path: Path, *, raw: bool) -> None:
        from opencustomvision.ml.export.openvino import write_openvino

        outputs = list(RAW_OUTPUTS) if raw else self.served_outputs
        xml, weights = write_openvino(canonical_path, self.build / "model.xml", outputs=outputs)
        self.zip(RGB_01, "model.xml", {"model.xml": xml, "model.bin": weights})

    def tensorflow_family(self, canonical_path: Path, platform: str, flavor: str | None) -> None:
        from opencustomvision.ml.export import tensorflow as tf_export

        names = [output.name for output in onnx.load(str(canonical_path), load_external_data=False).graph.output]
        cached = self.workdir / TENSORFLOW_CACHE
        if cached.is_file():
            graph = tf_export.TensorFlowGraph(cached.read_bytes(), names, self.info.input_size, self.info.detection)
        else:
            graph = tf_export.convert_onnx(canonical_path, self.build / "onnx2tf", input_size=self.info.input_size,
                                           detection=self.info.detection)
            cached.write_bytes(graph.graph_def)
        if platform == COREML:
            from opencustomvision.ml.export.coreml import write_coreml

            path = write_coreml(graph, self.build / "model.mlmodel", labels=self.info.labels,
                                metadata=self.metadata(BGR_255), float16=flavor == "CoreMLFloat16")
            self.zip(BGR_255, "model.mlmodel", {"model.mlmodel": path})
            return
        # Azure's TensorFlow Lite and TF.js detection programs feed RGB; every other TensorFlow program BGR.
        rgb = self.info.detection and flavor in ("TensorFlowLite", "TensorFlowLiteFloat16", "TensorFlowJs")
        pixels = RGB_255 if rgb else BGR_255
        if flavor in (None, "TensorFlowNormal"):
            path = tf_export.write_frozen_graph(graph, self.build / "model.pb", rgb_input=rgb)
            self.zip(pixels, "model.pb", {"model.pb": path})
        elif flavor == "TensorFlowSavedModel":
            directory = self.build / "saved_model"
            files = tf_export.write_saved_model(graph, directory, rgb_input=rgb)
            self.zip(pixels, "saved_model.pb", {str(path.relative_to(directory)): path for path in files})
        elif flavor in ("TensorFlowLite", "TensorFlowLiteFloat16"):
            path = tf_export.write_tflite(graph, self.build / "model.tflite", rgb_input=rgb, float16=flavor == "TensorFlowLiteFloat16")
            self.zip(pixels, "model.tflite", {"model.tflite": path})
        elif flavor == "TensorFlowJs":
            directory = self.build / "tfjs"
            files = tf_export.write_tensorflow_js(graph, directory, rgb_input=rgb, metadata=self.metadata(pixels))
            self.zip(pixels, "model.json", {path.name: path for path in files})
        else:
            raise ValueError(f"no exporter for {self.target.key}")


def main(workdir: Path) -> None:
    exit_with_parent()
    started = time.monotonic()
    export = _Export(workdir)
    export.run()
    shutil.rmtree(export.build, ignore_errors=True)
    report = {"seconds": time.monotonic() - started, "bytes": (workdir / "package.zip").stat().st_size, "target": export.target.key}
    (workdir / "report.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
