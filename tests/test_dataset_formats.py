"""The dataset readers on their own (no server): what each format's less common shapes read as."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image as PILImage

from opencustomvision.transfer.datasets import coco, customvision, folders, voc, yolo
from opencustomvision.transfer.datasets.model import Box, DatasetError, upright_size
from tests.conftest import shared_data

pytestmark = pytest.mark.db_independent


def picture(path: Path, size: tuple[int, int] = (200, 100), orientation: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = PILImage.new("RGB", size, (120, 30, 200))
    exif = PILImage.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    image.save(path, "JPEG", exif=exif.tobytes())
    return path


def test_custom_visions_own_region_json_of_the_ai102_lab() -> None:
    dataset = customvision.read(shared_data("cv_ai102_od_fruit"))
    assert dataset.problems == []
    assert len(dataset.images) == 23
    boxes = [box for image in dataset.images for box in image.boxes]
    assert {name: sum(box.tag == name for box in boxes) for name in ("apple", "banana", "orange")} == \
        {"apple": 9, "banana": 13, "orange": 11}
    first = next(image for image in dataset.images if image.path.name == "image11.jpg")
    assert first.boxes[0] == Box("orange", 0.501782656, 0.141307935, 0.30014348, 0.421263933)


def test_coco_annotation_with_only_a_polygon_gets_its_box_from_pycocotools(tmp_path: Path) -> None:
    picture(tmp_path / "images" / "a.jpg")
    (tmp_path / "annotations.json").write_text(json.dumps({
        "images": [{"id": 7, "file_name": "a.jpg", "width": 200, "height": 100}],
        "categories": [{"id": 3, "name": "kite"}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "segmentation": [[20, 10, 120, 10, 120, 60, 20, 60]]}],
    }))
    dataset = coco.read(tmp_path)
    assert dataset.problems == []
    [box] = dataset.images[0].boxes
    assert box.tag == "kite"
    assert (box.left, box.top, box.width, box.height) == pytest.approx((0.1, 0.1, 0.5, 0.5))


def test_coco_entries_without_their_ids_are_named(tmp_path: Path) -> None:
    picture(tmp_path / "a.jpg")
    (tmp_path / "instances_train.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg"}, {"file_name": "b.jpg"}],
        "categories": [{"id": 1, "name": "kite"}, {"id": 2, "name": "kite"}],
        "annotations": [{"id": 1, "image_id": 1, "bbox": [1, 1, 5, 5]}],
    }))
    dataset = coco.read(tmp_path)
    assert sorted(map(str, dataset.problems)) == [
        "instances_train.json: annotations[0].category_id: missing",
        "instances_train.json: categories[1].name: 'kite' is empty or not unique",
        "instances_train.json: images[1].id: missing",
    ]
    assert dataset.images[0].path.name == "a.jpg"  # its size read from the file, as none was given


def test_voc_without_a_size_reads_the_upright_size_of_its_image(tmp_path: Path) -> None:
    # Stored 200x100 with EXIF orientation 6: the API sees it 100x200.
    picture(tmp_path / "JPEGImages" / "turned.jpg", orientation=6)
    assert upright_size(tmp_path / "JPEGImages" / "turned.jpg") == (100, 200)
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "turned.xml").write_text(
        "<annotation><filename>turned.jpg</filename><object><name>cat</name>"
        "<bndbox><xmin>10</xmin><ymin>20</ymin><xmax>60</xmax><ymax>120</ymax></bndbox></object></annotation>")
    dataset = voc.read(tmp_path)
    assert dataset.problems == []
    assert dataset.images[0].boxes == [Box("cat", 0.1, 0.1, 0.5, 0.5)]


def test_voc_refuses_entities(tmp_path: Path) -> None:
    (tmp_path / "evil.xml").write_text('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e "x">]>'
                                       "<annotation><filename>&e;</filename></annotation>")
    [problem] = voc.read(tmp_path).problems
    assert problem.file == "evil.xml" and "DTDs and entities are not accepted" in problem.message


def test_yolo_with_ultralytics_layout_and_numbered_names(tmp_path: Path) -> None:
    picture(tmp_path / "images" / "train" / "a.jpg")
    picture(tmp_path / "images" / "val" / "b.png")
    (tmp_path / "labels" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "train" / "a.txt").write_text("1 0.5 0.5 0.2 0.4\n\n")
    (tmp_path / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames:\n  0: person\n  1: bicycle\n")
    dataset = yolo.read(tmp_path)
    assert dataset.problems == []
    assert [tag.name for tag in dataset.tags] == ["person", "bicycle"]
    by_name = {image.name: image for image in dataset.images}
    assert by_name["images/train/a.jpg"].boxes == [Box("bicycle", 0.4, 0.3, 0.2, 0.4)]
    assert by_name["images/val/b.png"].boxes == []  # no label file: a background image


def test_yolo_needs_its_class_names(tmp_path: Path) -> None:
    picture(tmp_path / "images" / "a.jpg")
    with pytest.raises(DatasetError, match="no data.yaml or classes.txt"):
        yolo.read(tmp_path)


def test_folders_top_level_images_are_untagged(tmp_path: Path) -> None:
    picture(tmp_path / "loose.jpg")
    picture(tmp_path / "cat" / "one.jpg")
    picture(tmp_path / "cat" / "nested" / "two.jpg")
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    dataset = folders.read(tmp_path)
    assert sorted((image.name, tuple(image.tags)) for image in dataset.images) == [
        ("cat/nested/two.jpg", ("cat",)), ("cat/one.jpg", ("cat",)), ("loose.jpg", ())]
