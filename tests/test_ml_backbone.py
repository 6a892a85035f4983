"""The pretrained EfficientNet-Lite backbones: real weights, ONNX export and cache, preprocessing.

lite0 is exported once per run (session fixture, ~10 s); lite1/lite2 are checked through
their torch models only, which needs no export. The whole file runs in well under a minute.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from opencustomvision.ml import (
    BACKBONES,
    Backbone,
    BackboneSpec,
    preprocess,
    preprocess_batch,
)
from opencustomvision.ml import backbone as backbone_module
from opencustomvision.ml.preprocess import resize_geometry
from opencustomvision.ml.registry import CLASSIFICATION, BackboneRegistry
from tests.conftest import shared_data

pytestmark = pytest.mark.db_independent

skimage_data = pytest.importorskip("skimage.data")

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {967, 968, 504}  # espresso, cup, coffee mug
BEE, ANT = 309, 310

LITE0 = "efficientnet-lite0"


def _chelsea() -> Image.Image:
    return Image.fromarray(skimage_data.chelsea())  # 451x300 photo of a cat


def _coffee() -> Image.Image:
    return Image.fromarray(skimage_data.coffee())  # 600x400 cup of coffee


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


def _no_prepared_models(patch: pytest.MonkeyPatch, cache: Path) -> None:
    """No prepared models to link, and none can be written (their folder would lie under a file): exports go
    into the cache itself."""
    blocker = cache.parent / f"{cache.name}-no-prepared-models"
    blocker.write_bytes(b"")
    patch.setenv("OCV_PREPARED_MODELS", str(blocker / "models"))


@pytest.fixture(scope="session")
def lite0(model_cache: Path) -> Iterator[Backbone]:
    """Exported from scratch into an empty cache directory: the missing-file path, where there are no prepared
    models to link and none can be written (their folder would lie under a file)."""
    assert not (model_cache / f"{LITE0}.onnx").exists()
    with pytest.MonkeyPatch.context() as patch:
        _no_prepared_models(patch, model_cache)
        backbone = Backbone.load(LITE0, model_cache, threads=2)
    yield backbone


@pytest.fixture(scope="session")
def lite0_torch(
    lite0: Backbone,
):  # after lite0, so torch is imported by the export first
    return backbone_module.build_torch_model(LITE0)


# --- the real pretrained model -------------------------------------------------------------


def test_export_writes_the_cached_file_with_a_dynamic_batch(lite0: Backbone, model_cache: Path) -> None:
    assert lite0.path == model_cache / f"{LITE0}.onnx"
    assert lite0.path.stat().st_size > 10_000_000  # weights are embedded, not external data
    assert [p.name for p in model_cache.iterdir()] == [lite0.path.name]  # no temporary file left
    session_input = lite0._session.get_inputs()[0]
    assert session_input.shape[1:] == [3, 224, 224]
    assert isinstance(session_input.shape[0], str)  # symbolic batch axis


def test_lite0_sees_a_cat_and_a_coffee(lite0: Backbone) -> None:
    logits = lite0.logits(preprocess_batch([_chelsea(), _coffee()], lite0.spec.input_size))
    top1 = logits.argmax(axis=1)
    assert top1[0] in CAT_CLASSES, f"chelsea: top-5 {np.argsort(-logits[0])[:5]}"
    assert top1[1] in COFFEE_CLASSES, f"coffee: top-5 {np.argsort(-logits[1])[:5]}"


@pytest.mark.parametrize("name", ["efficientnet-lite1", "efficientnet-lite2"])
def test_larger_models_are_pretrained_too(lite0: Backbone, name: str) -> None:
    torch = pytest.importorskip("torch")
    model = backbone_module.build_torch_model(name)
    size = BACKBONES[name].input_size
    batch = torch.from_numpy(preprocess_batch([_chelsea(), _coffee()], size))
    with torch.no_grad():
        embedding, logits = model(batch)
    assert tuple(embedding.shape) == (2, BACKBONES[name].embedding_dim)
    assert int(logits[0].argmax()) in CAT_CLASSES
    assert int(logits[1].argmax()) in COFFEE_CLASSES


def test_lite0_tells_ants_from_bees(lite0: Backbone) -> None:
    """Real photos; this also catches a wrong normalisation (ImageNet mean/std scores ~0.67)."""
    root = shared_data("cls_hymenoptera", "val")
    files = sorted((root / "ants").glob("*.jpg"))[:20] + sorted((root / "bees").glob("*.jpg"))[:20]
    labels = np.array([ANT] * 20 + [BEE] * 20)
    images = []
    for path in files:
        with Image.open(path) as image:
            images.append(image.convert("RGB"))
    logits = lite0.logits(preprocess_batch(images, lite0.spec.input_size))
    accuracy = float((logits.argmax(axis=1) == labels).mean())
    assert accuracy >= 0.75, accuracy


def test_onnx_matches_torch(lite0: Backbone, lite0_torch) -> None:
    import torch

    rng = np.random.default_rng(0)
    batch = np.concatenate(
        [
            preprocess_batch([_chelsea(), _coffee()], 224),
            rng.uniform(-1, 1, size=(3, 3, 224, 224)).astype(np.float32),
        ]
    )
    embedding, logits = lite0.forward(batch)
    with torch.no_grad():
        ref_embedding, ref_logits = (t.numpy() for t in lite0_torch(torch.from_numpy(batch)))
    assert np.abs(embedding - ref_embedding).max() < 1e-3
    assert np.abs(logits - ref_logits).max() < 1e-3


def test_embedding_is_the_input_of_the_classifier(lite0: Backbone, lite0_torch) -> None:
    import torch

    net = lite0_torch.net  # the package's own EfficientNet, as a reference independent of our wrapper
    batch = preprocess_batch([_chelsea(), _coffee()], 224)
    embedding, logits = lite0.forward(batch)
    with torch.no_grad():
        x = torch.from_numpy(batch)
        ref_logits = net(x).numpy()  # stem, blocks, head, average pooling, (eval) dropout, fc
        ref_embedding = net._avg_pooling(net.extract_features(x)).flatten(1).numpy()
    np.testing.assert_allclose(logits, ref_logits, atol=1e-3)
    np.testing.assert_allclose(embedding, ref_embedding, atol=1e-4)
    weight, bias = net._fc.weight.detach().numpy(), net._fc.bias.detach().numpy()
    np.testing.assert_allclose(embedding @ weight.T + bias, logits, atol=1e-3)
    assert embedding.min() >= 0.0 and embedding.max() <= 6.0  # pooled ReLU6 activations


# --- embed(), embed_images() -----------------------------------------------------------------


def test_embed_shape_and_dtype(lite0: Backbone) -> None:
    embedding = lite0.embed(preprocess_batch([_chelsea(), _coffee(), _chelsea()], 224))
    assert embedding.shape == (3, lite0.spec.embedding_dim) == (3, 1280)
    assert embedding.dtype == np.float32
    np.testing.assert_allclose(embedding[0], embedding[2], atol=1e-5)  # deterministic
    assert np.abs(embedding[0] - embedding[1]).max() > 0.1  # and not constant


def test_embed_images_batches_like_embed(lite0: Backbone) -> None:
    images = [_chelsea(), _coffee(), _chelsea().convert("L")]
    chunked = lite0.embed_images(images, batch_size=2)
    whole = lite0.embed(preprocess_batch(images, 224))
    assert chunked.shape == (3, 1280) and chunked.dtype == np.float32
    np.testing.assert_allclose(chunked, whole, atol=1e-4)
    assert lite0.embed_images([]).shape == (0, 1280)


def test_embed_rejects_a_batch_of_the_wrong_shape(lite0: Backbone) -> None:
    with pytest.raises(ValueError, match="224"):
        lite0.embed(np.zeros((3, 224, 224), np.float32))  # missing batch axis
    with pytest.raises(ValueError, match="224"):
        lite0.embed(np.zeros((1, 3, 240, 240), np.float32))  # lite1's size
    assert lite0.embed(np.zeros((0, 3, 224, 224), np.float32)).shape == (0, 1280)


# --- the cache ----------------------------------------------------------------------------------


def test_second_load_reuses_the_cached_file(
    lite0: Backbone, model_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = lite0.path.stat().st_mtime_ns

    def no_export(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached ONNX file was exported again")

    monkeypatch.setattr(backbone_module, "export_onnx_isolated", no_export)
    again = Backbone.load(LITE0, model_cache)
    assert again.path == lite0.path
    assert again.path.stat().st_mtime_ns == before


def test_deleted_file_is_rebuilt(lite0: Backbone, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_prepared_models(monkeypatch, tmp_path)
    path = tmp_path / f"{LITE0}.onnx"
    path.write_bytes(lite0.path.read_bytes())
    first = Backbone.load(LITE0, tmp_path)
    path.unlink()
    rebuilt = Backbone.load(LITE0, tmp_path)  # a real export
    assert rebuilt.path == path and path.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    batch = preprocess_batch([_chelsea()], 224)
    np.testing.assert_allclose(rebuilt.embed(batch), first.embed(batch), atol=1e-4)


def _stale_files() -> Iterator[tuple[str, object]]:
    yield "garbage", lambda good: b"not an onnx file"
    yield "truncated", lambda good: good[: len(good) // 2]

    def other_format(good: bytes) -> bytes:
        onnx = pytest.importorskip("onnx")
        model = onnx.load_from_string(good)
        for prop in model.metadata_props:
            if prop.key == "opencustomvision.backbone_format":
                prop.value = "0"
        return model.SerializeToString()

    yield "older format", other_format


@pytest.mark.parametrize(
    ("kind", "make"),
    list(_stale_files()),
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_stale_or_corrupt_file_is_exported_again(
    lite0: Backbone, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, make
) -> None:
    good = lite0.path.read_bytes()
    path = tmp_path / f"{LITE0}.onnx"
    path.write_bytes(make(good))
    exports: list[Path] = []

    def fake_export(name: str, target: Path, **_: object) -> Path:  # a real export is covered above
        exports.append(Path(target))
        Path(target).write_bytes(good)
        return Path(target)

    monkeypatch.setattr(backbone_module, "export_onnx_isolated", fake_export)
    loaded = Backbone.load(LITE0, tmp_path)
    assert exports == [path]
    assert loaded.embed(preprocess_batch([_chelsea()], 224)).shape == (1, 1280)


def test_a_new_cache_links_the_prepared_model_without_torch(lite0: Backbone, model_cache: Path, tmp_path: Path) -> None:
    """What ``ocv prepare`` buys: a fresh data folder's cache gets the install-time export, not a new one."""
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from opencustomvision.ml import Backbone
        backbone = Backbone.load({LITE0!r}, Path({str(tmp_path / "fresh")!r}), threads=1)
        assert "torch" not in sys.modules, "torch was imported: the model was exported again"
        print(backbone.path)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OCV_PREPARED_MODELS": str(model_cache)}
    result = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    linked = Path(result.stdout.strip())
    assert linked == tmp_path / "fresh" / lite0.path.name
    assert linked.read_bytes() == lite0.path.read_bytes()
    assert [p.name for p in linked.parent.iterdir()] == [linked.name]  # no temporary file left


def test_exports_into_one_folder_take_turns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second caller of a file that is being exported waits for it instead of exporting it again."""
    monkeypatch.setenv("OCV_PREPARED_MODELS", str(tmp_path / "none-prepared"))
    target = tmp_path / "cache" / "model.onnx"
    exporting, exports = threading.Event(), []

    def slow_export(path: Path) -> None:
        exports.append("first")
        exporting.set()
        time.sleep(0.5)
        path.write_bytes(b"exported once")

    def second_export(path: Path) -> None:
        exports.append("second")
        path.write_bytes(b"exported twice")

    first = threading.Thread(target=backbone_module.ensure_exported, args=(target, slow_export))
    first.start()
    assert exporting.wait(10)
    assert backbone_module.ensure_exported(target, second_export) == target  # waits for the first
    first.join()
    assert exports == ["first"] and target.read_bytes() == b"exported once"


def test_with_nothing_prepared_each_model_is_exported_once_for_every_data_folder(tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """What keeps many servers (the test suite's) on a fresh installation from exporting once each."""
    prepared = tmp_path / "prepared"
    monkeypatch.setenv("OCV_PREPARED_MODELS", str(prepared))
    exports: list[Path] = []

    def export(path: Path) -> None:
        exports.append(path)
        path.write_bytes(b"exported")

    first = backbone_module.ensure_exported(tmp_path / "folder-1" / "model.onnx", export)
    second = backbone_module.ensure_exported(tmp_path / "folder-2" / "model.onnx", export)
    assert exports == [prepared / "model.onnx"]
    assert first.read_bytes() == second.read_bytes() == b"exported"
    assert first.stat().st_ino == second.stat().st_ino == (prepared / "model.onnx").stat().st_ino  # links, not copies


def test_the_registry_prepares_in_the_background(lite0: Backbone, model_cache: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCV_PREPARED_MODELS", str(model_cache))
    registry = BackboneRegistry(tmp_path / "models", threads=1)
    preparation = registry.prepare([(CLASSIFICATION, LITE0)])
    assert registry.prepare([(CLASSIFICATION, LITE0)]) is preparation  # once per registry
    preparation.join(timeout=120)
    assert not preparation.is_alive()
    assert (tmp_path / "models" / lite0.path.name).read_bytes() == lite0.path.read_bytes()
    backbone = registry.get(LITE0)  # the session opened by the preparation
    assert backbone is registry.get(LITE0) and backbone.path == tmp_path / "models" / lite0.path.name


def test_prediction_never_imports_torch(lite0: Backbone, model_cache: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        import numpy as np
        from opencustomvision.ml import Backbone
        backbone = Backbone.load({LITE0!r}, Path({str(model_cache)!r}), threads=1)
        assert backbone.embed(np.zeros((1, 3, 224, 224), np.float32)).shape == (1, 1280)
        assert "torch" not in sys.modules, "torch was imported"
        print("ok")
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_unknown_backbone_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="efficientnet-lite0"):
        Backbone.load("efficientnet-b7", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_specs() -> None:
    assert {name: (s.input_size, s.embedding_dim) for name, s in BACKBONES.items()} == {
        "efficientnet-lite0": (224, 1280),
        "efficientnet-lite1": (240, 1280),
        "efficientnet-lite2": (260, 1280),
    }
    assert all(isinstance(s, BackboneSpec) and s.name == name for name, s in BACKBONES.items())


# --- preprocessing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "size", "expected"),
    [
        (
            451,
            300,
            224,
            (385, 256),
        ),  # landscape: the short side becomes 224 / 0.875 = 256
        (300, 451, 224, (256, 385)),  # portrait
        (100, 100, 224, (256, 256)),  # small images are upscaled
        (600, 400, 240, (411, 274)),  # lite1: round(240 / 0.875) = 274
        (600, 400, 260, (446, 297)),  # lite2: round(260 / 0.875) = 297
    ],
)
def test_resize_geometry(width: int, height: int, size: int, expected: tuple[int, int]) -> None:
    assert resize_geometry(width, height, size) == expected


def test_preprocess_crops_the_centre_of_the_resized_image() -> None:
    # A horizontal ramp, grey level = x // 2 over 500x250. Resized to 512x256 (short side 256),
    # the 224 crop starts at x = 144 in resized pixels: output column j samples the source at
    # u = (144 + j + 0.5) * 500 / 512, where the ramp's level is about (u - 1) / 2.
    ramp = np.tile((np.arange(500) // 2).astype(np.uint8), (250, 1))
    out = preprocess(Image.fromarray(ramp, mode="L"), 224)
    assert out.shape == (3, 224, 224) and out.dtype == np.float32
    grey = out * 128 + 127  # back to 0..255
    assert np.allclose(grey[0], grey[1]) and np.allclose(grey[0], grey[2])  # L -> RGB
    assert np.allclose(grey[0], grey[0, 112:113, :], atol=1e-3)  # rows are identical
    expected = ((144 + np.arange(224) + 0.5) * 500 / 512 - 1) / 2
    assert np.abs(grey[0, 112] - expected).max() < 0.75


def test_preprocess_matches_resize_then_crop_on_a_photo() -> None:
    image = _chelsea()  # 451x300 -> 385x256, crop box (80, 16, 304, 240)
    reference = image.resize((385, 256), Image.Resampling.BICUBIC).crop((80, 16, 304, 240))
    expected = (np.asarray(reference, np.float32) - 127.0) / 128.0
    out = preprocess(image, 224)
    assert np.abs(out.transpose(1, 2, 0) - expected).max() <= 1.01 / 128  # at most one grey level


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "CMYK", "I;16"])
def test_preprocess_any_mode_gives_normalised_float32_chw(mode: str) -> None:
    image = _coffee().convert(mode) if mode != "I;16" else _coffee().convert("L").convert("I;16")
    out = preprocess(image, 240)
    assert out.shape == (3, 240, 240) and out.dtype == np.float32 and out.flags.c_contiguous
    assert out.min() >= -127 / 128 and out.max() <= 128 / 128


def test_preprocess_batch_stacks() -> None:
    batch = preprocess_batch([_chelsea(), _coffee()], 224)
    assert batch.shape == (2, 3, 224, 224) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch[1], preprocess(_coffee(), 224))
    assert preprocess_batch([], 224).shape == (0, 3, 224, 224)


def test_preprocess_a_long_strip_stays_small() -> None:
    strip = Image.new("RGB", (10000, 2), (255, 0, 0))  # would be 1.28M x 256 if resized whole
    out = preprocess(strip, 224)
    assert out.shape == (3, 224, 224)
    np.testing.assert_allclose(out[0], 1.0, atol=1e-6)
    np.testing.assert_allclose(out[1], -127 / 128, atol=1e-6)
