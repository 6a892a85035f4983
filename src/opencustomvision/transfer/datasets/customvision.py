"""Custom Vision's own region JSON, as the AI-102 labs ship it (``tagged-images.json``)::

    {"files": [{"filename": "image11.jpg",
                "tags": [{"tag": "orange", "left": 0.50, "top": 0.14, "width": 0.30, "height": 0.42}]}]}

Coordinates are normalised, as in the API. A tag entry without coordinates is an image-level tag
(classification). Written with one addition readers of the lab format ignore: a top-level
``"tags"`` list (name, type, description), so a Negative tag comes back as a Negative tag.
"""

from __future__ import annotations

import json
from numbers import Real
from pathlib import Path
from typing import Any

from opencustomvision.transfer.datasets.model import (
    Dataset, DatasetError, ExportImage, LabeledImage, Problem, TagInfo, add_box, find_image, relative,
)

KIND = "any"
ANNOTATION_FILE = "tagged-images.json"
IMAGES = "images"
_COORDINATES = ("left", "top", "width", "height")


def _annotation_file(path: Path) -> Path:
    if path.is_file():
        return path
    if (path / ANNOTATION_FILE).is_file():
        return path / ANNOTATION_FILE
    raise DatasetError(f"{path}: no {ANNOTATION_FILE}: give the region JSON file itself")


def read(path: Path) -> Dataset:
    file_path = _annotation_file(path)
    root, file = file_path.parent, file_path.name
    try:
        content = json.loads(file_path.read_bytes())
    except (OSError, ValueError) as error:
        raise DatasetError(f"{file_path}: not a readable JSON file: {error}") from error
    if not isinstance(content, dict) or not isinstance(content.get("files"), list):
        raise DatasetError(f"{file_path}: no 'files' list: not Custom Vision's region JSON")
    problems: list[Problem] = []
    declared = _declared_tags(content.get("tags"), file, problems)
    known = {tag.name for tag in declared} if declared is not None else None
    tags: dict[str, TagInfo] = {tag.name: tag for tag in declared or []}
    images: list[LabeledImage] = []
    for index, entry in enumerate(content["files"]):
        where = f"files[{index}]"
        name = entry.get("filename") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            problems.append(Problem(file, f"{where}.filename", "missing"))
            continue
        image_path = find_image(name, [root, root / IMAGES])
        if image_path is None:
            problems.append(Problem(file, f"{where}.filename", f"image '{name}' not found next to {file} or in {IMAGES}/"))
            continue
        image = LabeledImage(path=image_path, name=relative(image_path, root))
        images.append(image)
        for position, tag_entry in enumerate(entry.get("tags") or []):
            _add_tag(tag_entry, f"{where}.tags[{position}]", file, image, known, problems)
            if isinstance(tag_entry, dict) and isinstance(tag_entry.get("tag"), str):
                tags.setdefault(tag_entry["tag"], TagInfo(tag_entry["tag"]))
    return Dataset(root=root, images=images, tags=list(tags.values()), problems=problems)


def _declared_tags(entries: Any, file: str, problems: list[Problem]) -> list[TagInfo] | None:
    if entries is None:
        return None
    declared: list[TagInfo] = []
    for index, entry in enumerate(entries if isinstance(entries, list) else []):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            problems.append(Problem(file, f"tags[{index}].name", "missing"))
            continue
        declared.append(TagInfo(entry["name"], str(entry.get("type") or "Regular"), str(entry.get("description") or "")))
    return declared


def _add_tag(entry: Any, where: str, file: str, image: LabeledImage, known: set[str] | None, problems: list[Problem]) -> None:
    name = entry.get("tag") if isinstance(entry, dict) else None
    if not isinstance(name, str) or not name.strip():
        problems.append(Problem(file, f"{where}.tag", "missing", image.name))
        return
    if known is not None and name not in known:
        problems.append(Problem(file, f"{where}.tag", f"'{name}' is not among the file's tags", image.name))
        return
    given = [key for key in _COORDINATES if key in entry]
    if not given:
        if name not in image.tags:
            image.tags.append(name)
        return
    values = [entry.get(key) for key in _COORDINATES]
    if len(given) < 4 or not all(isinstance(value, Real) for value in values):
        problems.append(Problem(file, where, f"a box needs numbers for {', '.join(_COORDINATES)}; got {given}", image.name))
        return
    left, top, width, height = (float(value) for value in values)  # type: ignore[arg-type]
    add_box(image, problems, file, where, name, (left, top, width, height),
            f"left={left:g} top={top:g} width={width:g} height={height:g}")


class Writer:
    def __init__(self, root: Path, tags: list[TagInfo]) -> None:
        self.root = root
        (root / IMAGES).mkdir(parents=True)
        self.content: dict[str, Any] = {
            "tags": [{"name": tag.name, "type": tag.type, "description": tag.description} for tag in tags],
            "files": [],
        }

    def add(self, image: ExportImage, data: bytes) -> None:
        (self.root / IMAGES / image.file_name).write_bytes(data)
        boxed = {box.tag for box in image.boxes}
        entries: list[dict[str, Any]] = [{"tag": name} for name in image.tags if name not in boxed]
        entries += [{"tag": box.tag, "left": box.left, "top": box.top, "width": box.width, "height": box.height}
                    for box in image.boxes]
        self.content["files"].append({"filename": image.file_name, "tags": entries})

    def close(self) -> None:
        (self.root / ANNOTATION_FILE).write_text(json.dumps(self.content, indent=1))
