"""``ocv dataset import`` refuses bad files with a message naming the file and the field, imports nothing
then, and with ``--skip-invalid`` leaves out just the images the problems touch. Bad arguments exit 2."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
from PIL import Image as PILImage

from opencustomvision.cli import main
from tests.conftest import LiveServer, shared_data
from tests.project_contents import contents, trainer_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trainer(live_server: LiveServer) -> CustomVisionTrainingClient:
    return trainer_for(live_server.endpoint, live_server.default.training_key)


@pytest.fixture(scope="module")
def photos() -> list[tuple[Path, int, int]]:
    """Three raccoon photos with their sizes."""
    paths = sorted(shared_data("od_raccoon", "images").glob("*.jpg"))[:3]
    return [(path, *PILImage.open(path).size) for path in paths]


def run(server: LiveServer, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main([*args, "--endpoint", server.endpoint, "--training-key", server.default.training_key])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def project_named(trainer: CustomVisionTrainingClient, name: str) -> str | None:
    return next((project.id for project in trainer.get_projects() if project.name == name), None)


def link(path: Path, target: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


def voc_annotation(filename: str, width: int, height: int, *boxes: tuple[str, float, float, float, float]) -> str:
    objects = "".join(f"<object><name>{name}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax>"
                      f"<ymax>{y1}</ymax></bndbox></object>" for name, x0, y0, x1, y1 in boxes)
    return f"<annotation><filename>{filename}</filename><size><width>{width}</width><height>{height}</height></size>{objects}</annotation>"


def test_bccd_zero_area_boxes_are_refused_naming_file_and_field(live_server: LiveServer, trainer: CustomVisionTrainingClient,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    name = f"bccd-refused-{uuid.uuid4().hex[:6]}"
    code, out, err = run(live_server, capsys, "dataset", "import", "voc", str(shared_data("od_bccd")), "--name", name)
    assert code == 1 and out == ""
    assert "Annotations/BloodImage_00338.xml: object[12].bndbox: zero-area box (RBC: xmin=504 ymin=337 xmax=504 ymax=337" in err
    assert "Annotations/BloodImage_00343.xml: object[3].bndbox: zero-area box" in err
    assert "2 problems in the dataset; nothing was imported" in err
    assert project_named(trainer, name) is None


def test_voc_box_outside_the_image_and_missing_image(live_server: LiveServer, trainer: CustomVisionTrainingClient,
                                                     photos: list[tuple[Path, int, int]], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    (good, width, height), (outside, width2, height2), _ = photos
    link(tmp_path / "JPEGImages" / good.name, good)
    link(tmp_path / "JPEGImages" / outside.name, outside)
    annotations = tmp_path / "Annotations"
    annotations.mkdir()
    (annotations / "a.xml").write_text(voc_annotation(good.name, width, height, ("raccoon", 10, 20, 110, 220)))
    (annotations / "b.xml").write_text(voc_annotation(outside.name, width2, height2, ("raccoon", 5, 5, width2 + 40, 50)))
    (annotations / "c.xml").write_text(voc_annotation("not-there.jpg", 100, 100, ("raccoon", 1, 1, 50, 50)))
    name = f"voc-bad-{uuid.uuid4().hex[:6]}"
    code, _, err = run(live_server, capsys, "dataset", "import", "voc", str(tmp_path), "--name", name)
    assert code == 1
    assert f"Annotations/b.xml: object[0].bndbox: box outside the image (raccoon: xmin=5 ymin=5 xmax={width2 + 40}" in err
    assert "Annotations/c.xml: filename: image 'not-there.jpg' not found" in err
    assert project_named(trainer, name) is None

    code, out, err = run(live_server, capsys, "dataset", "import", "voc", str(tmp_path), "--name", name, "--skip-invalid")
    assert code == 0, err
    assert "skipped: Annotations/b.xml: object[0].bndbox: box outside the image" in err
    project_id = out.strip()
    [stored] = contents(trainer, project_id).values()
    assert stored.boxes == (("raccoon", 10 / width, 20 / height, 100 / width, 200 / height),)


def test_coco_unknown_category_missing_image_and_zero_area_box(live_server: LiveServer, trainer: CustomVisionTrainingClient,
                                                               photos: list[tuple[Path, int, int]], tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    for path, _, _ in photos:
        link(tmp_path / "images" / path.name, path)
    (first, w1, h1), (second, w2, h2), (third, w3, h3) = photos
    (tmp_path / "annotations.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": first.name, "width": w1, "height": h1},
                   {"id": 2, "file_name": second.name, "width": w2, "height": h2},
                   {"id": 3, "file_name": third.name, "width": w3, "height": h3},
                   {"id": 4, "file_name": "missing.jpg", "width": 10, "height": 10}],
        "categories": [{"id": 1, "name": "raccoon"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 100, 50]},
                        {"id": 2, "image_id": 2, "category_id": 7, "bbox": [10, 10, 100, 50]},
                        {"id": 3, "image_id": 3, "category_id": 1, "bbox": [10, 10, 0, 50]}],
    }))
    name = f"coco-bad-{uuid.uuid4().hex[:6]}"
    code, _, err = run(live_server, capsys, "dataset", "import", "coco", str(tmp_path), "--name", name)
    assert code == 1
    assert "annotations.json: annotations[1].category_id: category 7 is not among the categories (1)" in err
    assert "annotations.json: annotations[2].bbox: zero-area box (raccoon: [10, 10, 0, 50]" in err
    assert "annotations.json: images[3].file_name: image 'missing.jpg' not found" in err
    assert project_named(trainer, name) is None

    code, out, err = run(live_server, capsys, "dataset", "import", "coco", str(tmp_path / "annotations.json"),
                         "--name", name, "--skip-invalid", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["images"] == {"total": 1, "imported": 1, "duplicate": 0, "failed": 0}
    assert len(report["skippedInvalid"]) == 3


def test_coco_that_is_not_json(live_server: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "annotations.json").write_text("{ not json")
    code, _, err = run(live_server, capsys, "dataset", "import", "coco", str(tmp_path))
    assert code == 1 and "annotations.json: not a readable JSON file" in err


def test_yolo_unknown_class_box_outside_and_label_without_image(live_server: LiveServer, trainer: CustomVisionTrainingClient,
                                                                photos: list[tuple[Path, int, int]], tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    for path, _, _ in photos[:2]:
        link(tmp_path / "images" / path.name, path)
    (tmp_path / "data.yaml").write_text("names: [raccoon]\n")
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / f"{photos[0][0].stem}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (labels / f"{photos[1][0].stem}.txt").write_text("3 0.5 0.5 0.2 0.2\n0 0.95 0.5 0.2 0.2\n")
    (labels / "ghost.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    code, _, err = run(live_server, capsys, "dataset", "import", "yolo", str(tmp_path))
    assert code == 1
    label = f"labels/{photos[1][0].stem}.txt"
    assert f"{label}: line 1: class: class 3 is not among the 1 names (0..0)" in err
    assert f"{label}: line 2: box outside the image (raccoon: '0 0.95 0.5 0.2 0.2')" in err
    assert "labels/ghost.txt: no image file for this label file" in err


def test_customvision_json_problems(live_server: LiveServer, photos: list[tuple[Path, int, int]], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    link(tmp_path / "images" / photos[0][0].name, photos[0][0])
    (tmp_path / "tagged-images.json").write_text(json.dumps({"files": [
        {"filename": photos[0][0].name, "tags": [{"tag": "raccoon", "left": 0.5, "top": 0.1, "width": 0.0, "height": 0.2}]},
        {"filename": "gone.jpg", "tags": [{"tag": "raccoon"}]},
    ]}))
    code, _, err = run(live_server, capsys, "dataset", "import", "customvision", str(tmp_path))
    assert code == 1
    assert "tagged-images.json: files[0].tags[0]: zero-area box (raccoon: left=0.5 top=0.1 width=0 height=0.2)" in err
    assert "tagged-images.json: files[1].filename: image 'gone.jpg' not found" in err


def test_a_file_the_server_refuses_is_listed_and_the_others_land(live_server: LiveServer, trainer: CustomVisionTrainingClient,
                                                                 photos: list[tuple[Path, int, int]], tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    link(tmp_path / "raccoon" / photos[0][0].name, photos[0][0])
    (tmp_path / "raccoon" / "broken.jpg").write_bytes(b"this is not a picture")
    code, out, err = run(live_server, capsys, "dataset", "import", "folders", str(tmp_path), "--name",
                         f"folders-{uuid.uuid4().hex[:6]}")
    assert code == 1
    assert "raccoon/broken.jpg: ErrorImageFormat" in err
    assert trainer.get_image_count(out.strip()) == 1


def test_import_into_an_existing_project_adds_only_what_is_missing(live_server: LiveServer, trainer: CustomVisionTrainingClient,
                                                                   photos: list[tuple[Path, int, int]], tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    for path, _, _ in photos[:2]:
        link(tmp_path / "first" / "raccoon" / path.name, path)
    code, out, err = run(live_server, capsys, "dataset", "import", "folders", str(tmp_path / "first"), "--name",
                         f"existing-{uuid.uuid4().hex[:6]}")
    assert code == 0, err
    project_id = out.strip()
    for path, _, _ in photos:  # the same two again (now also tagged 'animal'), and one more
        link(tmp_path / "second" / "raccoon" / path.name, path)
        link(tmp_path / "second" / "animal" / path.name, path)
    code, out, err = run(live_server, capsys, "dataset", "import", "folders", str(tmp_path / "second"),
                         "--project", project_id, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["projectId"] == project_id and not report["created"]
    assert report["images"] == {"total": 3, "imported": 1, "duplicate": 2, "failed": 0}
    assert report["tags"] == {"created": 1}
    assert {tag.name: tag.image_count for tag in trainer.get_tags(project_id)} == {"raccoon": 3, "animal": 3}


def test_bad_arguments_exit_2(live_server: LiveServer, trainer: CustomVisionTrainingClient,
                              photos: list[tuple[Path, int, int]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(live_server, capsys, "dataset", "import", "voc", str(tmp_path / "nowhere"))
    assert code == 2 and "no such file or folder" in err
    link(tmp_path / "cls" / "raccoon" / photos[0][0].name, photos[0][0])
    code, _, err = run(live_server, capsys, "dataset", "import", "folders", str(tmp_path / "cls"),
                       "--project", str(uuid.uuid4()))
    assert code == 2 and "NotFoundProject" in err
    code, out, _ = run(live_server, capsys, "dataset", "import", "folders", str(tmp_path / "cls"),
                       "--name", f"cls-{uuid.uuid4().hex[:6]}")
    assert code == 0
    classification = out.strip()
    code, _, err = run(live_server, capsys, "dataset", "export", "coco", str(tmp_path / "out"), "--project", classification)
    assert code == 2 and "classification project" in err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    code, _, err = run(live_server, capsys, "dataset", "export", "folders", str(tmp_path / "busy"), "--project", classification)
    assert code == 2 and "not an empty folder" in err
    link(tmp_path / "cv" / "images" / photos[0][0].name, photos[0][0])
    (tmp_path / "cv" / "tagged-images.json").write_text(json.dumps({"files": [
        {"filename": photos[0][0].name, "tags": [{"tag": "raccoon", "left": 0.1, "top": 0.1, "width": 0.5, "height": 0.5}]}]}))
    code, _, err = run(live_server, capsys, "dataset", "import", "customvision", str(tmp_path / "cv"), "--project", classification)
    assert code == 2 and "the dataset has boxes" in err
    with pytest.raises(SystemExit) as usage:
        main(["dataset", "import", "pascal", str(tmp_path)])
    assert usage.value.code == 2
