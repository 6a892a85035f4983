"""The exported container's web service: Azure Custom Vision's exported-container API over the ONNX model
beside this file, with ONNX Runtime, Pillow and numpy only (not OpenCustomVision).

    POST /image                                   the image: application/octet-stream, or multipart field imageData
    POST /url                                     {"url": "https://..."}
    POST /{project}/classify/iterations/{name}/image|url[/nostore]
    POST /{project}/detect/iterations/{name}/image|url[/nostore]

Each answers {id, project, iteration, created, predictions: [{probability, tagId, tagName[, boundingBox]}]},
most probable first. Images are at most 4 MB, as on Azure. ``python app.py [--port 80]``.
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import io
import json
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import onnxruntime
from PIL import Image, ImageOps

HERE = Path(__file__).resolve().parent
MAX_IMAGE_BYTES = 4 * 1024 * 1024
URL_TIMEOUT_SECONDS = 10
Image.MAX_IMAGE_PIXELS = 100_000_000  # decompression-bomb guard


class BadRequest(Exception):
    pass


class Model:
    """The package's model and the pre-processing its ``metadata_properties.json`` declares."""

    def __init__(self, directory: Path = HERE) -> None:
        self.manifest = json.loads((directory / "cvexport.manifest").read_text())
        self.properties = json.loads((directory / "metadata_properties.json").read_text())
        self.labels = (directory / "labels.txt").read_text().splitlines()
        self.tag_ids = self.manifest.get("TagIds") or [""] * len(self.labels)
        self.detection = self.manifest["DomainType"] == "ObjectDetection"
        options = onnxruntime.SessionOptions()
        self.session = onnxruntime.InferenceSession(str(directory / self.manifest["ModelFileName"]), options,
                                                    providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.size = int(self.properties["CustomVision.Preprocess.TargetWidth"])

    def pixels(self, image: Image.Image) -> np.ndarray:
        """(1, 3, S, S) float32 in the model's pixel format and range."""
        image = ImageOps.exif_transpose(image).convert("RGB")
        if self.properties["CustomVision.Preprocess.CropMethod"] == "CenterCrop":
            short = int(self.properties["CustomVision.Preprocess.MinDimension"])
            scale = short / min(image.width, image.height)
            width, height = round(image.width * scale), round(image.height * scale)
            left, top = (width - self.size) // 2, (height - self.size) // 2
            box = (left / scale, top / scale, (left + self.size) / scale, (top + self.size) / scale)
            image = image.resize((self.size, self.size), Image.Resampling.BICUBIC, box=box)
        else:
            image = image.resize((self.size, self.size), Image.Resampling.BILINEAR)
        array = np.asarray(image, dtype=np.float32)
        if self.properties["Image.BitmapPixelFormat"] == "Bgr8":
            array = array[:, :, ::-1]
        if self.properties["Image.NominalPixelRange"] == "Normalized_0_1":
            array = array / 255.0
        return np.ascontiguousarray(array.transpose(2, 0, 1)[None], dtype=np.float32)

    def run(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        names = [output.name for output in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, {self.input_name: pixels})))

    def predictions(self, data: bytes) -> list[dict[str, object]]:
        try:
            image = Image.open(io.BytesIO(data))
            image.load()
        except Exception as error:  # Pillow raises many types for undecodable input
            raise BadRequest(f"the image could not be decoded: {error}") from error
        outputs = self.run(self.pixels(image))
        if not self.detection:
            probabilities = outputs["model_output"][0]
            order = np.argsort(-probabilities, kind="stable")
            return [{"probability": float(probabilities[i]), "tagId": self.tag_ids[i], "tagName": self.labels[i]} for i in order]
        found = []
        for box, tag, score in zip(outputs["detected_boxes"][0], outputs["detected_classes"][0], outputs["detected_scores"][0]):
            found.append({"probability": float(score), "tagId": self.tag_ids[int(tag)], "tagName": self.labels[int(tag)],
                          "boundingBox": {"left": float(box[0]), "top": float(box[1]),
                                          "width": float(box[2] - box[0]), "height": float(box[3] - box[1])}})
        return found


def fetch(url: str) -> bytes:
    """At most MAX_IMAGE_BYTES from an http(s) URL."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise BadRequest("the url must be http or https")
    try:
        with urllib.request.urlopen(url, timeout=URL_TIMEOUT_SECONDS) as response:  # noqa: S310 - scheme checked
            data = response.read(MAX_IMAGE_BYTES + 1)
    except (OSError, ValueError) as error:
        raise BadRequest(f"the url could not be read: {error}") from error
    if len(data) > MAX_IMAGE_BYTES:
        raise BadRequest("the image is larger than 4 MB")
    return data


def image_from_request(content_type: str, body: bytes) -> bytes:
    if content_type.lower().startswith("multipart/form-data"):
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body)
        for part in message.iter_parts():
            if part.get_param("name", header="content-disposition") == "imageData":
                return part.get_payload(decode=True) or b""
        raise BadRequest("the multipart body has no imageData field")
    return body


class Handler(BaseHTTPRequestHandler):
    model: Model

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        parts = [part for part in urllib.parse.urlparse(self.path).path.split("/") if part]
        if parts and parts[-1] == "nostore":
            parts = parts[:-1]
        kind = "detect" if self.model.detection else "classify"
        route = parts[-1] if parts else ""
        project, iteration = "", ""
        if len(parts) == 5 and parts[1] == kind and parts[2] == "iterations":
            project, iteration = parts[0], parts[3]
        elif len(parts) != 1:
            return self._answer(404, {"code": "NotFound", "message": f"no operation at {self.path}"})
        if route not in ("image", "url"):
            return self._answer(404, {"code": "NotFound", "message": f"no operation at {self.path}"})
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_IMAGE_BYTES + 64 * 1024:
            return self._answer(413, {"code": "BadRequestImageSizeBytes", "message": "the image is larger than 4 MB"})
        body = self.rfile.read(length)
        try:
            if route == "url":
                request = json.loads(body or b"{}")
                data = fetch(str(request.get("url") or request.get("Url") or ""))
            else:
                data = image_from_request(self.headers.get("Content-Type", ""), body)
            if len(data) > MAX_IMAGE_BYTES:
                raise BadRequest("the image is larger than 4 MB")
            if not data:
                raise BadRequest("no image in the request")
            predictions = self.model.predictions(data)
        except (BadRequest, json.JSONDecodeError, AttributeError) as error:
            return self._answer(400, {"code": "BadRequest", "message": str(error)})
        self._answer(200, {"id": str(uuid.uuid4()), "project": project or self.model.manifest.get("ProjectId", ""),
                           "iteration": iteration or self.model.manifest.get("IterationId", ""),
                           "created": datetime.now(timezone.utc).isoformat(), "predictions": predictions})

    def _answer(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
        pass


def server(port: int, host: str = "0.0.0.0", model: Model | None = None) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"model": model or Model()})
    return ThreadingHTTPServer((host, port), handler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=80)
    arguments = parser.parse_args()
    server(arguments.port, arguments.host).serve_forever()


if __name__ == "__main__":
    main()
