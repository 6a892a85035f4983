"""``ocv dataset import`` and ``export`` on the shared sets: what is imported matches the annotation files,
and export then import gives the same images (by hash), tags and boxes (to 1e-6) in every format.

od_bccd (Pascal VOC, 362 of its 364 images: two carry zero-area boxes) and od_raccoon (VOC) are imported
whole and checked against their XML files, and od_bccd makes the whole round trip through VOC; every
detection format then round-trips 40 images of each, and the whole object-detection quickstart (boxes
from regions.json, uploaded as the quickstart does). Classification round-trips through folders and
customvision: the classification quickstart, and a Multilabel project with a Negative tag.
"""

from __future__ import annotations

import hashlib
import json
import uuid
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
from azure.cognitiveservices.vision.customvision.training.models import ImageFileCreateBatch, ImageFileCreateEntry, Region
from pycocotools.coco import COCO

from opencustomvision.cli import main
from tests.conftest import LiveServer, shared_data
from tests.project_contents import StoredImage, contents, differences, trainer_for
from tests.test_sdk_quickstart import wait_for_training

pytestmark = [pytest.mark.slow, pytest.mark.db_independent]

DETECTION_FORMATS = ["voc", "coco", "yolo", "customvision"]
CLASSIFICATION_FORMATS = ["folders", "customvision"]


def ocv(server: LiveServer, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main([*args, "--endpoint", server.endpoint, "--training-key", server.default.training_key])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def imported(server: LiveServer, capsys: pytest.CaptureFixture[str], fmt: str, path: Path, *extra: str) -> str:
    code, out, err = ocv(server, capsys, "dataset", "import", fmt, str(path), "--name", f"{fmt}-{uuid.uuid4().hex[:8]}", *extra)
    assert code == 0, err
    return out.strip().splitlines()[-1]


def exported(server: LiveServer, capsys: pytest.CaptureFixture[str], fmt: str, path: Path, project_id: str, *extra: str) -> Path:
    code, out, err = ocv(server, capsys, "dataset", "export", fmt, str(path), "--project", project_id, "--json", *extra)
    assert code == 0, err
    report = json.loads(out)
    assert report["ok"] and report["images"]["failed"] == 0
    return path


def round_trip(server: LiveServer, capsys: pytest.CaptureFixture[str], trainer: CustomVisionTrainingClient, folder: Path,
               fmt: str, project: tuple[str, dict[str, StoredImage]]) -> str:
    """Export the project in ``fmt``, import that into a new project; assert both hold the same. The copy's id."""
    project_id, stored = project
    copy = imported(server, capsys, fmt, exported(server, capsys, fmt, folder / fmt, project_id))
    assert differences(stored, contents(trainer, copy)) == []
    return copy


@pytest.fixture(scope="module")
def trainer(live_server: LiveServer) -> CustomVisionTrainingClient:
    return trainer_for(live_server.endpoint, live_server.default.training_key)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def voc_expectation(root: Path, annotations: str, images: str, leave_out: frozenset[str] = frozenset()) -> dict[str, StoredImage]:
    """The images and boxes of a VOC set, read straight from its XML files."""
    expected: dict[str, StoredImage] = {}
    for xml_path in sorted((root / annotations).glob("*.xml")):
        if xml_path.name in leave_out:
            continue
        annotation = ElementTree.parse(xml_path).getroot()
        width, height = int(annotation.findtext("size/width")), int(annotation.findtext("size/height"))
        boxes = []
        for element in annotation.iter("object"):
            xmin, ymin, xmax, ymax = (float(element.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
            boxes.append((element.findtext("name"), xmin / width, ymin / height, (xmax - xmin) / width, (ymax - ymin) / height))
        digest = sha256(root / images / annotation.findtext("filename"))
        if digest in expected:  # od_raccoon holds four pictures twice, boxed differently: one image with both boxes
            boxes += [box for box in expected[digest].boxes if box not in boxes]
        expected[digest] = StoredImage(digest, width, height, frozenset(box[0] for box in boxes), tuple(sorted(boxes)), ())
    return expected


def voc_subset(source: Path, annotations: str, images: str, count: int, destination: Path) -> Path:
    """The first ``count`` annotation files of a VOC set, linked into a dataset folder of its own."""
    (destination / annotations).mkdir(parents=True)
    for xml_path in sorted((source / annotations).glob("*.xml"))[:count]:
        (destination / annotations / xml_path.name).symlink_to(xml_path)
    (destination / images).symlink_to(source / images, target_is_directory=True)
    return destination


def import_voc(server: LiveServer, trainer: CustomVisionTrainingClient, path: Path, *extra: str) -> tuple[str, dict[str, StoredImage]]:
    name = f"{path.name}-{uuid.uuid4().hex[:8]}"
    code = main(["dataset", "import", "voc", str(path), "--name", name, *extra,
                 "--endpoint", server.endpoint, "--training-key", server.default.training_key])
    assert code == 0
    project = next(p for p in trainer.get_projects() if p.name == name)
    return project.id, contents(trainer, project.id)


@pytest.fixture(scope="module")
def bccd(live_server: LiveServer, trainer: CustomVisionTrainingClient) -> tuple[str, dict[str, StoredImage]]:
    """The whole of od_bccd, less the two images with zero-area boxes (--skip-invalid)."""
    return import_voc(live_server, trainer, shared_data("od_bccd"), "--skip-invalid")


@pytest.fixture(scope="module")
def bccd_subset(live_server: LiveServer, trainer: CustomVisionTrainingClient,
                tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, StoredImage]]:
    folder = voc_subset(shared_data("od_bccd"), "Annotations", "JPEGImages", 40, tmp_path_factory.mktemp("bccd") / "bccd40")
    return import_voc(live_server, trainer, folder)


def test_voc_import_of_bccd_holds_every_box_of_its_xml_files(bccd: tuple[str, dict[str, StoredImage]]) -> None:
    _, stored = bccd
    expected = voc_expectation(shared_data("od_bccd"), "Annotations", "JPEGImages",
                               leave_out=frozenset({"BloodImage_00338.xml", "BloodImage_00343.xml"}))
    assert len(expected) == 362 and sum(len(image.boxes) for image in expected.values()) == 4862
    assert differences(expected, stored, metadata=False) == []


def test_bccd_round_trip_through_voc_whole(bccd: tuple[str, dict[str, StoredImage]], live_server: LiveServer,
                                          trainer: CustomVisionTrainingClient, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    round_trip(live_server, capsys, trainer, tmp_path, "voc", bccd)


@pytest.mark.parametrize("fmt", DETECTION_FORMATS)
def test_bccd_round_trip(fmt: str, bccd_subset: tuple[str, dict[str, StoredImage]], live_server: LiveServer,
                         trainer: CustomVisionTrainingClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert len(bccd_subset[1]) == 40
    round_trip(live_server, capsys, trainer, tmp_path, fmt, bccd_subset)


def test_coco_export_reads_back_with_pycocotools(bccd: tuple[str, dict[str, StoredImage]], live_server: LiveServer,
                                                 tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project_id, stored = bccd
    folder = exported(live_server, capsys, "coco", tmp_path / "coco", project_id)
    coco = COCO(str(folder / "annotations.json"))
    assert sorted(category["name"] for category in coco.loadCats(coco.getCatIds())) == ["Platelets", "RBC", "WBC"]
    assert len(coco.getImgIds()) == len(stored)
    assert len(coco.getAnnIds()) == sum(len(image.boxes) for image in stored.values())
    for image in coco.loadImgs(coco.getImgIds()):
        assert (folder / "images" / image["file_name"]).is_file()


@pytest.fixture(scope="module")
def raccoon(live_server: LiveServer, trainer: CustomVisionTrainingClient) -> tuple[str, dict[str, StoredImage]]:
    return import_voc(live_server, trainer, shared_data("od_raccoon"))


@pytest.fixture(scope="module")
def raccoon_subset(live_server: LiveServer, trainer: CustomVisionTrainingClient,
                   tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, StoredImage]]:
    folder = voc_subset(shared_data("od_raccoon"), "annotations", "images", 40, tmp_path_factory.mktemp("raccoon") / "raccoon40")
    return import_voc(live_server, trainer, folder)


def test_voc_import_of_raccoon_holds_every_box_of_its_xml_files(raccoon: tuple[str, dict[str, StoredImage]]) -> None:
    expected = voc_expectation(shared_data("od_raccoon"), "annotations", "images")
    assert len(expected) == 196 and sum(len(image.boxes) for image in expected.values()) == 217
    assert differences(expected, raccoon[1], metadata=False) == []


@pytest.mark.parametrize("fmt", DETECTION_FORMATS)
def test_raccoon_round_trip(fmt: str, raccoon_subset: tuple[str, dict[str, StoredImage]], live_server: LiveServer,
                            trainer: CustomVisionTrainingClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    round_trip(live_server, capsys, trainer, tmp_path, fmt, raccoon_subset)


@pytest.fixture(scope="module")
def quickstart_detection(trainer: CustomVisionTrainingClient) -> tuple[str, dict[str, StoredImage]]:
    """The object-detection quickstart's project, made as the quickstart makes it (boxes from regions.json)."""
    base = shared_data("customvision-samples", "ObjectDetection")
    domain = next(d for d in trainer.get_domains() if d.type == "ObjectDetection" and d.name == "General")
    project = trainer.create_project(f"quickstart-od-{uuid.uuid4().hex[:8]}", domain_id=domain.id)
    regions = json.loads((base / "regions.json").read_text())
    entries = []
    for name, boxes in regions.items():
        tag = trainer.create_tag(project.id, name)
        for stem, (left, top, width, height) in sorted(boxes.items()):
            path = base / "Images" / name / f"{stem}.jpg"
            entries.append(ImageFileCreateEntry(name=path.name, contents=path.read_bytes(), regions=[
                Region(tag_id=tag.id, left=left, top=top, width=width, height=height)]))
    for start in range(0, len(entries), 64):
        assert trainer.create_images_from_files(project.id, ImageFileCreateBatch(images=entries[start:start + 64])).is_batch_successful
    return project.id, contents(trainer, project.id)


@pytest.mark.parametrize("fmt", DETECTION_FORMATS)
def test_quickstart_detection_round_trip(fmt: str, quickstart_detection: tuple[str, dict[str, StoredImage]],
                                         live_server: LiveServer, trainer: CustomVisionTrainingClient, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert len(quickstart_detection[1]) == 40
    round_trip(live_server, capsys, trainer, tmp_path, fmt, quickstart_detection)


@pytest.fixture(scope="module")
def quickstart_classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The classification quickstart's two tag folders (without its Test folder), linked into a dataset folder."""
    images = shared_data("customvision-samples", "ImageClassification", "Images")
    root = tmp_path_factory.mktemp("quickstart") / "trees"
    root.mkdir()
    for name in ("Hemlock", "Japanese_Cherry"):
        (root / name).symlink_to(images / name, target_is_directory=True)
    return root


def test_folders_import_of_the_classification_quickstart(quickstart_classes: Path, live_server: LiveServer,
                                                         trainer: CustomVisionTrainingClient,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    project_id = imported(live_server, capsys, "folders", quickstart_classes)
    project = trainer.get_project(project_id)
    assert project.settings.classification_type == "Multiclass"
    assert {tag.name: tag.image_count for tag in trainer.get_tags(project_id)} == {"Hemlock": 10, "Japanese_Cherry": 10}
    expected = {sha256(path): path.parent.name for path in quickstart_classes.glob("*/*.jpg")}
    assert {digest: sorted(image.tags) for digest, image in contents(trainer, project_id).items()} == \
        {digest: [tag] for digest, tag in expected.items()}


@pytest.fixture(scope="module")
def quickstart_classification(quickstart_classes: Path, live_server: LiveServer,
                              trainer: CustomVisionTrainingClient) -> tuple[str, dict[str, StoredImage]]:
    name = f"quickstart-cls-{uuid.uuid4().hex[:8]}"
    assert main(["dataset", "import", "folders", str(quickstart_classes), "--name", name,
                 "--endpoint", live_server.endpoint, "--training-key", live_server.default.training_key]) == 0
    project = next(p for p in trainer.get_projects() if p.name == name)
    return project.id, contents(trainer, project.id)


@pytest.mark.parametrize("fmt", CLASSIFICATION_FORMATS)
def test_quickstart_classification_round_trip(fmt: str, quickstart_classification: tuple[str, dict[str, StoredImage]],
                                              live_server: LiveServer, trainer: CustomVisionTrainingClient, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert len(quickstart_classification[1]) == 20
    copy = round_trip(live_server, capsys, trainer, tmp_path, fmt, quickstart_classification)
    assert trainer.get_project(copy).settings.classification_type == "Multiclass"


@pytest.fixture(scope="module")
def multilabel_with_negative(trainer: CustomVisionTrainingClient) -> tuple[str, dict[str, StoredImage]]:
    """Multilabel fruit: some images carry two tags, some the Negative tag."""
    fruit = shared_data("cv_ai102_cls_fruit", "training-images")
    project = trainer.create_project(f"fruit-{uuid.uuid4().hex[:8]}", classification_type="Multilabel")
    tags = {name: trainer.create_tag(project.id, name).id for name in ("apple", "banana", "orange")}
    negative = trainer.create_tag(project.id, "nothing", type="Negative", description="no fruit")
    entries = []
    for name, tag_id in tags.items():
        for number, path in enumerate(sorted((fruit / name).glob("*.jpg"))[:4]):
            extra = [tags["orange"]] if name == "apple" and number < 2 else []
            entries.append(ImageFileCreateEntry(name=path.name, contents=path.read_bytes(), tag_ids=[tag_id, *extra]))
    for path in sorted(shared_data("od_raccoon", "images").glob("*.jpg"))[:3]:
        entries.append(ImageFileCreateEntry(name=path.name, contents=path.read_bytes(), tag_ids=[negative.id]))
    assert trainer.create_images_from_files(project.id, ImageFileCreateBatch(images=entries)).is_batch_successful
    return project.id, contents(trainer, project.id)


@pytest.mark.parametrize("fmt", CLASSIFICATION_FORMATS)
def test_classification_round_trip(fmt: str, multilabel_with_negative: tuple[str, dict[str, StoredImage]],
                                   live_server: LiveServer, trainer: CustomVisionTrainingClient, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    copy = round_trip(live_server, capsys, trainer, tmp_path, fmt, multilabel_with_negative)
    assert trainer.get_project(copy).settings.classification_type == "Multilabel"
    if fmt == "customvision":  # the format that carries tag types and descriptions
        types = {tag.name: (tag.type, tag.description or "") for tag in trainer.get_tags(copy)}
        assert types["nothing"] == ("Negative", "no fruit") and types["apple"] == ("Regular", "")


def test_export_iteration_writes_the_images_it_trained_on(live_server: LiveServer, trainer: CustomVisionTrainingClient,
                                                          tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flowers = shared_data("cls_flowers5_128px")
    dataset = tmp_path / "flowers"
    for name in ("daisy", "rose"):
        (dataset / name).mkdir(parents=True)
        for path in sorted((flowers / name).glob("*.jpg"))[:5]:
            (dataset / name / path.name).symlink_to(path)
    project_id = imported(live_server, capsys, "folders", dataset)
    iteration = wait_for_training(trainer, project_id, trainer.train_project(project_id).id)
    assert iteration.status == "Completed"
    daisy = next(tag for tag in trainer.get_tags(project_id) if tag.name == "daisy")
    late = sorted((flowers / "daisy").glob("*.jpg"))[5]
    assert trainer.create_images_from_files(project_id, ImageFileCreateBatch(images=[
        ImageFileCreateEntry(name=late.name, contents=late.read_bytes(), tag_ids=[daisy.id])])).is_batch_successful

    trained = exported(live_server, capsys, "folders", tmp_path / "trained", project_id, "--iteration", iteration.id)
    everything = exported(live_server, capsys, "folders", tmp_path / "all", project_id)
    assert len(list(trained.glob("*/*"))) == 10
    assert len(list(everything.glob("*/*"))) == 11
    assert sha256(late) not in {sha256(path) for path in trained.glob("*/*")}
    assert sha256(late) in {sha256(path) for path in everything.glob("daisy/*")}
