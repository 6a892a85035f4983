"""YOLO (Darknet / Ultralytics): a ``.txt`` per image, a line ``class cx cy width height`` per box,
normalised to the image, centre-based; class names in ``data.yaml`` (``names``) or ``classes.txt``.

The layout is Ultralytics': ``images/…/x.jpg`` is labelled by ``labels/…/x.txt`` (the last
``images`` folder of the path replaced by ``labels``); a ``.txt`` beside the image works too, and
``data.yaml``'s ``train`` / ``val`` / ``test`` folders are honoured. An image without a label file is
an image without boxes (YOLO's background image). ``data.yaml`` is read with PyYAML's safe loader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from opencustomvision.transfer.datasets.model import (
    Dataset, DatasetError, ExportImage, LabeledImage, Problem, TagInfo, add_box, image_files, relative,
)

KIND = "detection"
DATA_FILE, CLASSES_FILE = "data.yaml", "classes.txt"
IMAGES, LABELS = "images", "labels"


def _names(root: Path) -> tuple[list[str], dict[str, Any]]:
    """The class names, and data.yaml's content (empty without one)."""
    data_file = root / DATA_FILE
    if not data_file.is_file():
        data_file = next(iter(sorted(root.glob("*.yaml"))), data_file)
    if data_file.is_file():
        try:
            content = yaml.safe_load(data_file.read_text())
        except (OSError, yaml.YAMLError) as error:
            raise DatasetError(f"{data_file}: not readable YAML: {error}") from error
        names = content.get("names") if isinstance(content, dict) else None
        if isinstance(names, list):
            return [str(name) for name in names], content
        if isinstance(names, dict) and all(isinstance(key, int) for key in names):
            if sorted(names) != list(range(len(names))):
                raise DatasetError(f"{data_file.name}: names: class numbers must run 0..{len(names) - 1}")
            return [str(names[key]) for key in sorted(names)], content
        raise DatasetError(f"{data_file.name}: names: missing, or neither a list nor a mapping of class numbers to names")
    for candidate in (root / CLASSES_FILE, root / "obj.names"):
        if candidate.is_file():
            return [line.strip() for line in candidate.read_text().splitlines() if line.strip()], {}
    raise DatasetError(f"{root}: no {DATA_FILE} or {CLASSES_FILE}: YOLO labels are class numbers, their names come from one of those")


def _image_folders(root: Path, content: dict[str, Any]) -> list[Path]:
    base = root / str(content.get("path") or ".")
    if not base.is_dir():
        base = root
    folders: list[Path] = []
    for split in ("train", "val", "test"):
        entries = content.get(split)
        for entry in entries if isinstance(entries, list) else [entries] if entries else []:
            folder = (base / str(entry)).resolve()
            if folder.is_dir() and folder not in folders and folder.is_relative_to(root.resolve()):
                folders.append(folder)
    if folders:
        return folders
    return [root / IMAGES] if (root / IMAGES).is_dir() else [root]


def label_path(image: Path) -> Path:
    parts = list(image.parts)
    if IMAGES in parts[:-1]:
        index = len(parts) - 2 - parts[-2::-1].index(IMAGES)
        parts[index] = LABELS
        return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def read(root: Path) -> Dataset:
    names, content = _names(root)
    problems: list[Problem] = []
    images: list[LabeledImage] = []
    used_labels: set[Path] = set()
    for folder in _image_folders(root, content):
        for image_path in image_files(folder):
            image = LabeledImage(path=image_path, name=relative(image_path, root))
            labels = label_path(image_path)
            if not labels.is_file():
                labels = image_path.with_suffix(".txt")
            if labels.is_file():
                used_labels.add(labels.resolve())
                _read_labels(labels, relative(labels, root), image, names, problems)
            images.append(image)
    # A label file whose image is missing, in a labels/ tree of its own (beside images, .txt files may be anything).
    for folder in _image_folders(root, content):
        label_folder = label_path(folder / "x.jpg").parent
        if label_folder != folder and label_folder.is_dir():
            for orphan in sorted(label_folder.rglob("*.txt")):
                if orphan.resolve() not in used_labels:
                    problems.append(Problem(relative(orphan, root), "", "no image file for this label file"))
    return Dataset(root=root, images=images, tags=[TagInfo(name) for name in names], problems=problems)


def _read_labels(path: Path, file: str, image: LabeledImage, names: list[str], problems: list[Problem]) -> None:
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        problems.append(Problem(file, "", f"not a readable text file: {error}", image.name))
        return
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"line {number}"
        if len(fields) != 5:
            problems.append(Problem(file, where, f"expected 5 values (class cx cy width height), got {len(fields)}",
                                    image.name))
            continue
        try:
            class_number = int(fields[0])
            centre_x, centre_y, width, height = (float(value) for value in fields[1:])
        except ValueError:
            problems.append(Problem(file, where, f"'{line.strip()}' is not a class number and four numbers", image.name))
            continue
        if not 0 <= class_number < len(names):
            problems.append(Problem(file, f"{where}: class", f"class {class_number} is not among the {len(names)} names "
                                    f"(0..{len(names) - 1})", image.name))
            continue
        add_box(image, problems, file, where, names[class_number],
                (centre_x - width / 2, centre_y - height / 2, width, height), f"'{line.strip()}'")


class Writer:
    def __init__(self, root: Path, tags: list[TagInfo]) -> None:
        self.root = root
        self.class_numbers = {tag.name: index for index, tag in enumerate(tags)}
        (root / IMAGES).mkdir(parents=True)
        (root / LABELS).mkdir()
        names = [tag.name for tag in tags]
        (root / DATA_FILE).write_text(yaml.safe_dump(
            {"path": ".", "train": IMAGES, "val": IMAGES, "names": dict(enumerate(names))}, sort_keys=False, allow_unicode=True))
        (root / CLASSES_FILE).write_text("".join(f"{name}\n" for name in names))

    def add(self, image: ExportImage, data: bytes) -> None:
        (self.root / IMAGES / image.file_name).write_bytes(data)
        lines = [
            f"{self.class_numbers[box.tag]} {box.left + box.width / 2!r} {box.top + box.height / 2!r} {box.width!r} {box.height!r}\n"
            for box in image.boxes
        ]
        (self.root / LABELS / f"{Path(image.file_name).stem}.txt").write_text("".join(lines))

    def close(self) -> None:
        pass
