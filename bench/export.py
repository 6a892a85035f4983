"""Export benchmark: time to export each platform for a General classifier and a detector, the exported models'
latency (ONNX Runtime, TensorFlow Lite) against the served model in the same run, and package sizes.

    .venv/bin/python bench/export.py [--runs 30] [--detector-only | --classifier-only]

Starts ``ocv serve`` on a free loopback port with a temporary data folder, trains the quickstart classifier on
the General domain (EfficientNet-Lite2) and the fork / scissors detector, then exports each platform (default
flavour, plus TensorFlowLite) through the Training API, timing ExportIteration until GetExports says Done. The
first TensorFlow-family export pays for onnx2tf; the later ones reuse its frozen graph (printed as 'cold' / 'warm').

Latency, median of --runs after two warm-up runs, ONNX Runtime with the service's own session options:
  classifier: the model alone, on one photo already pre-processed (the served pipeline's crop): served =
              Backbone.embed + TagClassifier in this process; ONNX = the exported model.onnx; TFLite = model.tflite
              (ai-edge-litert), each fed that crop in its declared colour order and range;
  detector:   from one decoded photo, the stretch to 320 px included on both sides (the same PIL resize): served =
              DetectionModel.predict; ONNX / TFLite = resize as metadata_properties.json says, then the model, whose
              decoding and NMS are inside.
Ratios are exported / served. Needs the export extra (./scripts/dev-setup.sh). Exit status 0 whatever the numbers.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import secrets
import statistics
import sys
import tempfile
import time
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import TRAINING_API, ocv_server

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "customvision-samples"
PLATFORMS = [("ONNX", None), ("OpenVino", None), ("TensorFlow", None), ("TensorFlow", "TensorFlowLite"), ("CoreML", None), ("DockerFile", None)]


def train(client: httpx.Client, detection: bool) -> tuple[str, str]:
    domains = client.get(f"{TRAINING_API}/domains").json()
    kind = "ObjectDetection" if detection else "Classification"
    domain = next(d["id"] for d in domains if d["type"] == kind and d["name"] == "General")
    project = client.post(f"{TRAINING_API}/projects", params={"name": f"bench-export-{uuid.uuid4().hex[:6]}", "domainId": domain}).json()["id"]
    images = []
    if detection:
        regions = json.loads((DATA / "ObjectDetection" / "regions.json").read_text())
        for name in ("fork", "scissors"):
            tag = client.post(f"{TRAINING_API}/projects/{project}/tags", params={"name": name}).json()["id"]
            for stem, (left, top, width, height) in sorted(regions[name].items()):
                data = (DATA / "ObjectDetection" / "Images" / name / f"{stem}.jpg").read_bytes()
                images.append({"name": f"{stem}.jpg", "contents": base64.b64encode(data).decode(), "regions": [
                    {"tagId": tag, "left": left, "top": top, "width": width, "height": height}]})
    else:
        for name, folder in (("Hemlock", "Hemlock"), ("Japanese Cherry", "Japanese_Cherry")):
            tag = client.post(f"{TRAINING_API}/projects/{project}/tags", params={"name": name}).json()["id"]
            for path in sorted((DATA / "ImageClassification" / "Images" / folder).glob("*.jpg")):
                images.append({"name": path.name, "contents": base64.b64encode(path.read_bytes()).decode(), "tagIds": [tag]})
    for start in range(0, len(images), 64):
        answer = client.post(f"{TRAINING_API}/projects/{project}/images/files", json={"images": images[start:start + 64]})
        assert answer.status_code == 200, answer.text
    iteration = client.post(f"{TRAINING_API}/projects/{project}/train").json()
    while iteration["status"] == "Training":
        time.sleep(2)
        iteration = client.get(f"{TRAINING_API}/projects/{project}/iterations/{iteration['id']}").json()
    assert iteration["status"] == "Completed", iteration
    return project, iteration["id"]


def export(client: httpx.Client, project: str, iteration: str, platform: str, flavor: str | None) -> tuple[float, bytes]:
    started = time.perf_counter()
    params = {"platform": platform, **({"flavor": flavor} if flavor else {})}
    answer = client.post(f"{TRAINING_API}/projects/{project}/iterations/{iteration}/export", params=params)
    assert answer.status_code == 200, answer.text
    while True:
        found = next(e for e in client.get(f"{TRAINING_API}/projects/{project}/iterations/{iteration}/export").json()
                     if e["platform"] == platform and e.get("flavor") == flavor)
        if found["status"] != "Exporting":
            break
        time.sleep(0.5)
    seconds = time.perf_counter() - started
    assert found["status"] == "Done", found
    return seconds, httpx.get(found["downloadUri"], timeout=120).content


def median_ms(call: Callable[[], object], runs: int) -> float:
    for _ in range(2):
        call()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def convention(properties: dict[str, str], rgb: np.ndarray, layout: str) -> np.ndarray:
    """(S, S, 3) RGB 0-255 pixels in the package's declared colour order, range and layout."""
    array = np.asarray(rgb, np.float32)
    if properties["Image.BitmapPixelFormat"] == "Bgr8":
        array = array[:, :, ::-1]
    if properties["Image.NominalPixelRange"] == "Normalized_0_1":
        array = array / 255.0
    return np.ascontiguousarray((array.transpose(2, 0, 1) if layout == "NCHW" else array)[None], np.float32)


def package_input(properties: dict[str, str], picture: Image.Image, layout: str) -> np.ndarray:
    size = int(properties["CustomVision.Preprocess.TargetWidth"])
    if properties["CustomVision.Preprocess.CropMethod"] == "CenterCrop":
        short = int(properties["CustomVision.Preprocess.MinDimension"])
        scale = short / min(picture.size)
        resized = picture.resize((round(picture.width * scale), round(picture.height * scale)), Image.Resampling.BICUBIC)
        left, top = (resized.width - size) // 2, (resized.height - size) // 2
        resized = resized.crop((left, top, left + size, top + size))
    else:
        resized = picture.resize((size, size), Image.Resampling.BILINEAR)
    return convention(properties, np.asarray(resized, np.float32), layout)


def latency(server_data: Path, project: str, iteration: str, detection: bool, packages: dict[str, bytes], runs: int) -> None:
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    from opencustomvision.jobs.training import detector_key, load_classifier, load_detector, model_key
    from opencustomvision.ml.backbone import Backbone, session_options
    from opencustomvision.ml.detection import DetectionModel
    from opencustomvision.ml.preprocess import preprocess

    models = server_data / "models"
    blobs = server_data / "blobs"
    photo = DATA / ("ObjectDetection/Images/test/test_image.jpg" if detection else "ImageClassification/Images/Test/test_image.jpg")
    picture = Image.open(photo).convert("RGB")
    if detection:
        model = DetectionModel.from_bytes(load_detector((blobs / detector_key(project, iteration)).read_bytes()).model, models)
        served = median_ms(lambda: model.predict(picture), runs)
        crop = None
    else:
        stored = load_classifier((blobs / model_key(project, iteration)).read_bytes())
        backbone = Backbone.load(stored.base_backbone, models)
        fixed = preprocess(picture, backbone.spec.input_size)[None]
        crop = fixed[0].transpose(1, 2, 0) * 128.0 + 127.0  # the same pixels, 0-255 RGB
        served = median_ms(lambda: stored.head.predict_proba(backbone.embed(fixed)), runs)
    print(f"  latency served model            {served:8.1f} ms")
    for name, file, layout in (("ONNX", "model.onnx", "NCHW"), ("TensorFlow/TensorFlowLite", "model.tflite", "NHWC")):
        with zipfile.ZipFile(io.BytesIO(packages[name])) as archive:
            properties = json.loads(archive.read("metadata_properties.json"))
            model_bytes = archive.read(file)

        def feed(properties: dict[str, str] = properties, layout: str = layout) -> np.ndarray:
            return package_input(properties, picture, layout) if crop is None else convention(properties, crop, layout)

        if file.endswith(".onnx"):
            session = ort.InferenceSession(model_bytes, session_options(None), providers=["CPUExecutionProvider"])
            input_name = session.get_inputs()[0].name
            fixed_input = None if crop is None else feed()
            run = lambda: session.run(None, {input_name: fixed_input if fixed_input is not None else feed()})  # noqa: E731
        else:
            interpreter = Interpreter(model_content=model_bytes)
            interpreter.allocate_tensors()
            index = interpreter.get_input_details()[0]["index"]
            fixed_tensor = None if crop is None else feed()

            def run() -> None:
                interpreter.set_tensor(index, fixed_tensor if fixed_tensor is not None else feed())
                interpreter.invoke()
        exported = median_ms(run, runs)
        print(f"  latency {name:<25} {exported:8.1f} ms   {exported / served:5.2f}x served")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--detector-only", action="store_true")
    which.add_argument("--classifier-only", action="store_true")
    arguments = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"bench: {DATA} is absent (the shared data sets, beside the repository)")
    key = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="ocv-bench-export-") as directory:
        data_dir = Path(directory) / "data"
        with ocv_server(data_dir, Path(directory) / "server.log", training_key=key) as server:
            client = httpx.Client(base_url=server.endpoint, headers={"Training-Key": key}, timeout=120)
            for detection in (False, True):
                if (detection and arguments.classifier_only) or (not detection and arguments.detector_only):
                    continue
                label = "detector (fork / scissors, EfficientNet-Lite0 320 px)" if detection else "General classifier (quickstart, EfficientNet-Lite2 260 px)"
                started = time.perf_counter()
                project, iteration = train(client, detection)
                print(f"{label}: trained in {time.perf_counter() - started:.0f} s")
                packages: dict[str, bytes] = {}
                tensorflow_seen = False
                for platform, flavor in PLATFORMS:
                    seconds, package = export(client, project, iteration, platform, flavor)
                    name = f"{platform}/{flavor}" if flavor else platform
                    packages[name] = package
                    note = ""
                    if platform in ("TensorFlow", "CoreML"):
                        note = "(warm: reuses the frozen TensorFlow graph)" if tensorflow_seen else "(cold: includes onnx2tf)"
                        tensorflow_seen = True
                    print(f"  export {name:<26} {seconds:7.1f} s   package {len(package) / 2**20:6.1f} MiB {note}")
                latency(data_dir, project, iteration, detection, packages, arguments.runs)


if __name__ == "__main__":
    main()
