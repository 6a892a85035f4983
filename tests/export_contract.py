"""The contract of the programs people run Azure's exported packages with, re-implemented here.

Like Azure's sample programs (Azure-Samples/customvision-export-samples, microsoft/customvision-tfjs), a runner
reads the model's single input and its size from the model itself, the colour order and range from the
metadata (``metadata_properties.json``, or the model's own metadata where the format has it), resizes the image,
and reads the outputs by Azure's names. ``Package.run`` takes pixels already in the model's layout;
``Package.pixels`` makes them from an image file following the declared pre-processing.

Every runner answers the same shape: a classifier ``{"probabilities": (tags,)}``, a detector
``{"boxes": (K, 4) x1 y1 x2 y2, "classes": (K,), "scores": (K,)}`` (or, for OpenVINO ``NoPostProcess``,
``{"raw_boxes": (L, 4) centre/size, "raw_probs": (L, 1 + tags)}``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

TFJS_DIR = Path(__file__).resolve().parent / "tfjs"


class Package:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.manifest = json.loads((directory / "cvexport.manifest").read_text())
        self.properties = json.loads((directory / "metadata_properties.json").read_text())
        self.labels = (directory / "labels.txt").read_text().splitlines()
        self.detection = self.manifest["DomainType"] == "ObjectDetection"
        self.platform, self.flavor = self.manifest["Platform"], self.manifest["Flavor"]
        self.layout = "NCHW"  # set by each runner from the model itself
        self.input_size = 0

    @classmethod
    def unzip(cls, archive: Path, directory: Path) -> Package:
        with zipfile.ZipFile(archive) as package:
            package.extractall(directory)
        manifest = json.loads((directory / "cvexport.manifest").read_text()) if (directory / "cvexport.manifest").exists() else None
        if manifest is None:  # Docker: the package's files sit beside the app
            return DockerPackage(directory)
        return RUNNERS[(manifest["Platform"], manifest["Flavor"])](directory)

    @property
    def bgr(self) -> bool:
        return self.properties["Image.BitmapPixelFormat"] == "Bgr8"

    @property
    def unit_range(self) -> bool:
        return self.properties["Image.NominalPixelRange"] == "Normalized_0_1"

    def resized(self, image: Image.Image) -> Image.Image:
        """The pre-processing ``metadata_properties.json`` declares: crop and resize to the target size."""
        image = ImageOps.exif_transpose(image).convert("RGB")
        size = int(self.properties["CustomVision.Preprocess.TargetWidth"])
        assert size == int(self.properties["CustomVision.Preprocess.TargetHeight"]) == self.input_size
        if self.properties["CustomVision.Preprocess.CropMethod"] == "CenterCrop":
            assert self.properties["CustomVision.Preprocess.ResizeFilter"] == "Bicubic"
            short = int(self.properties["CustomVision.Preprocess.MinDimension"])
            scale = short / min(image.size)
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
            left, top = (image.width - size) // 2, (image.height - size) // 2
            return image.crop((left, top, left + size, top + size))
        assert self.properties["CustomVision.Preprocess.ResizeMethod"] == "Stretch"
        return image.resize((size, size), Image.Resampling.BILINEAR)

    def from_rgb(self, rgb_hwc: np.ndarray) -> np.ndarray:
        """(S, S, 3) RGB 0-255 as this model's input: colour order, range, layout, batch of one."""
        array = np.asarray(rgb_hwc, np.float32)
        if self.bgr:
            array = array[:, :, ::-1]
        if self.unit_range:
            array = array / 255.0
        if self.layout == "NCHW":
            array = array.transpose(2, 0, 1)
        return np.ascontiguousarray(array[None], dtype=np.float32)

    def pixels(self, image_path: Path) -> np.ndarray:
        with Image.open(image_path) as image:
            return self.from_rgb(np.asarray(self.resized(image), np.float32))

    def run(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def run_many(self, images: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        return [self.run(pixels) for pixels in images]

    def _answer(self, named: dict[str, np.ndarray], *, batched: bool) -> dict[str, np.ndarray]:
        """Azure's output names to this module's common answer (dropping the batch dimension where there is one)."""
        def unbatched(value: np.ndarray) -> np.ndarray:
            value = np.asarray(value)
            if batched:
                assert value.shape[0] == 1, value.shape
                return value[0]
            return value

        if not self.detection:
            (probabilities,) = named.values()  # Azure's programs take the single output
            return {"probabilities": unbatched(probabilities).astype(np.float64).reshape(-1)}
        if set(named) == {"raw_boxes", "raw_probs"}:
            return {name: unbatched(value).astype(np.float64) for name, value in named.items()}
        assert set(named) == {"detected_boxes", "detected_classes", "detected_scores"}, sorted(named)
        return {"boxes": unbatched(named["detected_boxes"]).astype(np.float64).reshape(-1, 4),
                "classes": unbatched(named["detected_classes"]).astype(np.int64).reshape(-1),
                "scores": unbatched(named["detected_scores"]).astype(np.float64).reshape(-1)}


class OnnxPackage(Package):
    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        import onnx
        import onnxruntime

        path = directory / "model.onnx"
        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (model_input,) = self.session.get_inputs()
        self.input_name, self.input_size = model_input.name, int(model_input.shape[2])
        self.input_type = {"tensor(float)": np.float32, "tensor(float16)": np.float16}[model_input.type]
        # The ONNX model's own metadata_props, as Azure's ONNX programs read them.
        self.model_properties = {entry.key: entry.value for entry in onnx.load(str(path), load_external_data=False).metadata_props}
        self.properties = {**self.properties, **self.model_properties}

    def run(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        names = [output.name for output in self.session.get_outputs()]
        outputs = self.session.run(names, {self.input_name: pixels.astype(self.input_type)})
        return self._answer(dict(zip(names, outputs, strict=True)), batched=True)


class FrozenGraphPackage(Package):
    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        import tensorflow as tf

        self.graph_def = tf.compat.v1.GraphDef()
        self.graph_def.ParseFromString((directory / "model.pb").read_bytes())
        inputs = [node for node in self.graph_def.node if node.op == "Placeholder"]
        consumed = {name.split(":")[0].lstrip("^") for node in self.graph_def.node for name in node.input}
        self.output_names = sorted({node.name for node in self.graph_def.node} - consumed)
        assert len(inputs) == 1
        self.input_name = inputs[0].name
        self.input_size = [dim.size for dim in inputs[0].attr["shape"].shape.dim][1]
        self.layout = "NHWC"

        graph = tf.Graph()
        with graph.as_default():
            tf.import_graph_def(self.graph_def, name="")
        self.session = tf.compat.v1.Session(graph=graph)
        self.tensors = [graph.get_tensor_by_name(name + ":0") for name in self.output_names]

    def run(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self.session.run(self.tensors, {self.input_name + ":0": pixels})
        return self._answer(dict(zip(self.output_names, outputs, strict=True)), batched=not self.detection)


class SavedModelPackage(Package):
    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        import tensorflow as tf

        self.serve = tf.saved_model.load(str(directory)).signatures["serving_default"]
        self.input_size = int(self.serve.inputs[0].shape[1])
        self.layout = "NHWC"

    def run(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        import tensorflow as tf

        outputs = {name: value.numpy() for name, value in self.serve(tf.convert_to_tensor(pixels)).items()}
        return self._answer(outputs, batched=not self.detection)


class TFLitePackage(Package):
    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(directory / "model.tflite"))
        self.interpreter.allocate_tensors()
        (self.input_detail,) = self.interpreter.get_input_details()
        self.input_size = int(self.input_detail["shape"][1])
        self.layout = "NHWC"

    def run(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        self.interpreter.set_tensor(self.input_detail["index"], pixels)
        self.interpreter.invoke()
        outputs = {detail["name"]: self.interpreter.get_tensor(detail["index"]) for detail in self.interpreter.get_output_details()}
        return self._answer(outputs, batched=not self.detection)


class TensorFlowJsPackage(Package):
    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        model = json.loads((directory / "model.json").read_text())
        # customvision-tfjs: the pixel format comes from the model's own metadata; the size from its first input.
        self.model_metadata = model["userDefinedMetadata"]
        self.properties = {**self.properties, **self.model_metadata}
        placeholder = next(node for node in model["modelTopology"]["node"] if node["op"] == "Placeholder")
        self.input_size = int(placeholder["attr"]["shape"]["shape"]["dim"][1]["size"])
        self.layout = "NHWC"

    def run(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        return self.run_many([pixels])[0]

    def run_many(self, images: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """One node process for many images (starting node and loading the model dominate)."""
        names = ["detected_boxes", "detected_scores", "detected_classes"] if self.detection else ["loss"]
        input_file = self.directory / "input.bin"
        np.concatenate(images).astype(np.float32).tofile(input_file)
        result = subprocess.run(["node", str(TFJS_DIR / "run_model.js"), str(self.directory), str(input_file), ",".join(names)],
                                capture_output=True, text=True, timeout=600, check=False)
        assert result.returncode == 0, result.stderr[-3000:]
        answer = json.loads(result.stdout)
        assert answer["inputShape"][1] == self.input_size and answer["metadata"] == self.model_metadata
        return [self._answer({name: np.asarray(value["data"]).reshape(value["shape"]) for name, value in outputs.items()},
                             batched=not self.detection) for outputs in answer["outputs"]]


class OpenVinoPackage(Package):
    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(directory / "model.xml"), str(directory / "model.bin"))
        (model_input,) = model.inputs
        self.input_size = int(model_input.get_partial_shape()[2].get_length())
        # OpenVINO computes in bf16 on CPUs that have it unless asked for f32.
        self.compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})

    def run(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        results = self.compiled(pixels)
        outputs = {output.get_any_name(): results[output] for output in self.compiled.outputs}
        return self._answer(outputs, batched=True)


class DockerPackage(Package):
    """The Docker package's app, imported from its folder and run directly with Python (Docker cannot run here)."""

    def __init__(self, directory: Path) -> None:
        app_dir = directory / "app"
        super().__init__(app_dir)
        self.root = directory
        self.app = _import_app(app_dir)
        self.model = self.app.Model(app_dir)
        self.input_size = self.model.size
        self.dockerfile = (directory / "Dockerfile").read_text()

    def run(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        return self._answer(self.model.run(pixels), batched=True)


def _import_app(app_dir: Path) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"exported_app_{abs(hash(str(app_dir)))}", app_dir / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


RUNNERS: dict[tuple[str, str | None], type[Package]] = {
    ("ONNX", None): OnnxPackage, ("ONNX", "ONNX10"): OnnxPackage, ("ONNX", "ONNX12"): OnnxPackage,
    ("ONNX", "OnnxFloat16"): OnnxPackage,
    ("TensorFlow", None): FrozenGraphPackage, ("TensorFlow", "TensorFlowNormal"): FrozenGraphPackage,
    ("TensorFlow", "TensorFlowSavedModel"): SavedModelPackage,
    ("TensorFlow", "TensorFlowLite"): TFLitePackage, ("TensorFlow", "TensorFlowLiteFloat16"): TFLitePackage,
    ("TensorFlow", "TensorFlowJs"): TensorFlowJsPackage,
    ("OpenVino", None): OpenVinoPackage, ("OpenVino", "NoPostProcess"): OpenVinoPackage,
}
