"""COCO instances JSON: ``images``, ``annotations`` (``bbox`` = [x, y, width, height] in pixels), ``categories``.

Read with pycocotools, the reference implementation: its index joins annotations to images and
categories, and its mask code turns an annotation that has only a ``segmentation`` (polygons or
RLE) into its box. The structure is checked first, entry by entry, so that a bad entry is named
(pycocotools itself would stop at the first KeyError). Categories become tags, by name.
"""

from __future__ import annotations

import contextlib
import io
import json
from numbers import Real
from pathlib import Path
from typing import Any

from pycocotools import mask as coco_mask
from pycocotools.coco import COCO

from opencustomvision.transfer.datasets.model import (
    Dataset, DatasetError, ExportImage, LabeledImage, Problem, TagInfo, add_box, find_image, number, relative,
    upright_size,
)

KIND = "detection"
ANNOTATION_FILE = "annotations.json"
IMAGES = "images"


def _annotation_file(path: Path) -> Path:
    if path.is_file():
        return path
    candidates = [path / ANNOTATION_FILE, *sorted(path.glob("instances*.json")), *sorted(path.glob("annotations/instances*.json"))]
    found = [candidate for candidate in candidates if candidate.is_file()]
    if not found:
        raise DatasetError(f"{path}: no {ANNOTATION_FILE} or instances*.json: give the COCO JSON file itself")
    if len(found) > 1 and found[0].name != ANNOTATION_FILE:
        names = ", ".join(relative(candidate, path) for candidate in found)
        raise DatasetError(f"{path}: several COCO files ({names}); give the one to import")
    return found[0]


def _load(file: Path) -> dict[str, Any]:
    try:
        content = json.loads(file.read_bytes())
    except (OSError, ValueError) as error:
        raise DatasetError(f"{file}: not a readable JSON file: {error}") from error
    if not isinstance(content, dict) or not isinstance(content.get("images"), list):
        raise DatasetError(f"{file}: not COCO instances JSON (no 'images' list)")
    for key in ("annotations", "categories"):
        if not isinstance(content.setdefault(key, []), list):
            raise DatasetError(f"{file}: '{key}' is not a list")
    return content


def _indexed(content: dict[str, Any], file: str, problems: list[Problem]) -> COCO:
    """pycocotools' index over the entries that have what it needs; the others become problems."""
    def keep(key: str, needed: tuple[str, ...]) -> list[dict[str, Any]]:
        kept, seen = [], set()
        for index, entry in enumerate(content[key]):
            missing = [name for name in needed if not isinstance(entry, dict) or name not in entry]
            if missing:
                problems.append(Problem(file, f"{key}[{index}].{missing[0]}", "missing"))
            elif not isinstance(entry["id"], (int, str)) or entry["id"] in seen:
                problems.append(Problem(file, f"{key}[{index}].id", f"{entry['id']!r} is not a unique id"))
            else:
                seen.add(entry["id"])
                kept.append(entry | {"_index": index})
        return kept

    coco = COCO()
    coco.dataset = {"images": keep("images", ("id", "file_name")), "categories": keep("categories", ("id", "name")),
                    "annotations": keep("annotations", ("id", "image_id", "category_id"))}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco.createIndex()
    return coco


def read(path: Path) -> Dataset:
    file_path = _annotation_file(path)
    root = file_path.parent
    file = file_path.name
    problems: list[Problem] = []
    coco = _indexed(_load(file_path), file, problems)

    tags: list[TagInfo] = []
    names: dict[Any, str] = {}
    for category in coco.dataset["categories"]:
        name = str(category["name"]).strip()
        if not name or name in {tag.name for tag in tags}:
            problems.append(Problem(file, f"categories[{category['_index']}].name", f"'{name}' is empty or not unique"))
            continue
        names[category["id"]] = name
        tags.append(TagInfo(name))

    images: list[LabeledImage] = []
    by_id: dict[Any, LabeledImage] = {}
    folders = [root, root / IMAGES, root.parent / IMAGES]
    for entry in coco.dataset["images"]:
        where = f"images[{entry['_index']}]"
        image_path = find_image(str(entry["file_name"]), folders)
        if image_path is None:
            problems.append(Problem(file, f"{where}.file_name", f"image '{entry['file_name']}' not found next to {file} "
                                    f"or in {IMAGES}/"))
            continue
        image = LabeledImage(path=image_path, name=relative(image_path, root))
        if not _positive(entry.get("width")) or not _positive(entry.get("height")):
            try:
                entry["width"], entry["height"] = upright_size(image_path)
            except ValueError as error:
                problems.append(Problem(file, f"{where}.width", f"absent, and {error}", image.name))
                continue
        by_id[entry["id"]] = image
        images.append(image)

    for annotation in coco.dataset["annotations"]:
        _add_box(coco, annotation, names, by_id, file, problems)
    return Dataset(root=root, images=images, tags=tags, problems=problems)


def _positive(value: Any) -> bool:
    return isinstance(value, Real) and value > 0


def _add_box(coco: COCO, annotation: dict[str, Any], names: dict[Any, str], by_id: dict[Any, LabeledImage],
             file: str, problems: list[Problem]) -> None:
    where = f"annotations[{annotation['_index']}]"
    image = by_id.get(annotation["image_id"])
    if image is None:
        if annotation["image_id"] not in coco.imgs:
            problems.append(Problem(file, f"{where}.image_id", f"image {annotation['image_id']!r} is not among the images"))
        return  # an image already refused for its own problem
    name = names.get(annotation["category_id"])
    if name is None:
        problems.append(Problem(file, f"{where}.category_id", f"category {annotation['category_id']!r} is not among the "
                                f"categories ({', '.join(repr(key) for key in names)})", image.name))
        return
    bbox = annotation.get("bbox")
    if bbox is None and annotation.get("segmentation"):
        try:
            bbox = [float(value) for value in coco_mask.toBbox(coco.annToRLE(annotation))]
        except (TypeError, ValueError, KeyError) as error:
            problems.append(Problem(file, f"{where}.segmentation", f"not a polygon or RLE: {error}", image.name))
            return
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, Real) for v in bbox)):
        problems.append(Problem(file, f"{where}.bbox", f"{bbox!r} is not [x, y, width, height]", image.name))
        return
    entry = coco.imgs[annotation["image_id"]]
    width, height = entry["width"], entry["height"]
    add_box(image, problems, file, f"{where}.bbox", name, (bbox[0] / width, bbox[1] / height, bbox[2] / width, bbox[3] / height),
            f"{[number(v) for v in bbox]} in {width}x{height}")


class Writer:
    def __init__(self, root: Path, tags: list[TagInfo]) -> None:
        self.root = root
        (root / IMAGES).mkdir(parents=True)
        self.category_ids = {tag.name: index for index, tag in enumerate(tags, start=1)}
        self.content: dict[str, Any] = {
            "info": {"description": "exported by OpenCustomVision"},
            "images": [], "annotations": [],
            "categories": [{"id": category_id, "name": name, "supercategory": ""}
                           for name, category_id in self.category_ids.items()],
        }

    def add(self, image: ExportImage, data: bytes) -> None:
        (self.root / IMAGES / image.file_name).write_bytes(data)
        image_number = len(self.content["images"]) + 1
        self.content["images"].append({"id": image_number, "file_name": image.file_name,
                                       "width": image.width, "height": image.height})
        for box in image.boxes:
            bbox = [box.left * image.width, box.top * image.height, box.width * image.width, box.height * image.height]
            self.content["annotations"].append({
                "id": len(self.content["annotations"]) + 1, "image_id": image_number,
                "category_id": self.category_ids[box.tag], "bbox": [number(value) for value in bbox],
                "area": bbox[2] * bbox[3], "iscrowd": 0,
            })

    def close(self) -> None:
        (self.root / ANNOTATION_FILE).write_text(json.dumps(self.content, indent=1))
