"""Pascal VOC: one XML file per image (``Annotations/``), the images beside them (``JPEGImages/``).

Read with defusedxml (entity expansion and external entities refused: annotation files come from
anywhere). Box corners are pixel coordinates in the image as stored in ``<size>``; a box spans
``xmin..xmax``, so its width is ``xmax - xmin`` (the convention of torchvision, Ultralytics and
Roboflow; the original devkit's 1-based pixel indices are not shifted). Written back as whole
numbers where they are whole, exact decimals otherwise, so a round trip loses nothing.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeElementTree

from opencustomvision.transfer.datasets.model import (
    Box, Dataset, DatasetError, ExportImage, LabeledImage, Problem, TagInfo, add_box, find_image, number, relative,
    upright_size,
)

KIND = "detection"
ANNOTATIONS, IMAGES = "Annotations", "JPEGImages"
_CORNERS = ("xmin", "ymin", "xmax", "ymax")


def _annotation_folder(root: Path) -> Path:
    for name in (ANNOTATIONS, "annotations"):
        if (root / name).is_dir():
            return root / name
    if any(root.glob("*.xml")):
        return root
    raise DatasetError(f"{root}: no {ANNOTATIONS}/ folder and no .xml files: not a Pascal VOC dataset")


def read(root: Path) -> Dataset:
    folder = _annotation_folder(root)
    image_folders = [root / IMAGES, root / "images", folder, folder.parent / IMAGES, folder.parent / "images"]
    images: list[LabeledImage] = []
    problems: list[Problem] = []
    tag_names: dict[str, None] = {}
    for xml_path in sorted(folder.glob("*.xml")):
        image = _read_annotation(xml_path, relative(xml_path, root), root, image_folders, problems)
        if image is not None:
            images.append(image)
            tag_names.update(dict.fromkeys(box.tag for box in image.boxes))
    return Dataset(root=root, images=images, tags=[TagInfo(name) for name in tag_names], problems=problems)


def _read_annotation(xml_path: Path, file: str, root: Path, image_folders: list[Path],
                     problems: list[Problem]) -> LabeledImage | None:
    try:
        annotation = SafeElementTree.parse(xml_path).getroot()
    except DefusedXmlException:
        problems.append(Problem(file, "", "refused: DTDs and entities are not accepted in annotation files"))
        return None
    except ElementTree.ParseError as error:
        problems.append(Problem(file, "", f"not a well-formed XML file: {error}"))
        return None
    file_name = (annotation.findtext("filename") or "").strip()
    if not file_name:
        problems.append(Problem(file, "filename", "missing: the annotation does not name its image"))
        return None
    image_path = find_image(file_name, image_folders)
    if image_path is None:
        problems.append(Problem(file, "filename", f"image '{file_name}' not found in {IMAGES}/ or images/"))
        return None
    image = LabeledImage(path=image_path, name=relative(image_path, root))
    size = _declared_size(annotation)
    if size is None:
        try:
            size = upright_size(image_path)
        except ValueError as error:
            problems.append(Problem(file, "size", f"absent, and {error}", image.name))
            return image
    width, height = size
    for index, element in enumerate(annotation.iter("object")):
        where = f"object[{index}]"
        name = (element.findtext("name") or "").strip()
        if not name:
            problems.append(Problem(file, f"{where}.name", "missing", image.name))
            continue
        corners: list[float] = []
        for corner in _CORNERS:
            text = element.findtext(f"bndbox/{corner}")
            try:
                corners.append(float(text))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                problems.append(Problem(file, f"{where}.bndbox.{corner}", f"'{text}' is not a number" if text else "missing",
                                        image.name))
                break
        else:
            xmin, ymin, xmax, ymax = corners
            add_box(image, problems, file, f"{where}.bndbox", name,
                    (xmin / width, ymin / height, (xmax - xmin) / width, (ymax - ymin) / height),
                    f"xmin={xmin:g} ymin={ymin:g} xmax={xmax:g} ymax={ymax:g} in {width}x{height}")
    return image


def _declared_size(annotation: ElementTree.Element) -> tuple[int, int] | None:
    try:
        width, height = int(float(annotation.findtext("size/width") or 0)), int(float(annotation.findtext("size/height") or 0))
    except ValueError:
        return None
    return (width, height) if width > 0 and height > 0 else None


class Writer:
    def __init__(self, root: Path, tags: list[TagInfo]) -> None:
        self.annotations = root / ANNOTATIONS
        self.images = root / IMAGES
        self.annotations.mkdir(parents=True)
        self.images.mkdir()

    def add(self, image: ExportImage, data: bytes) -> None:
        (self.images / image.file_name).write_bytes(data)
        annotation = ElementTree.Element("annotation")
        ElementTree.SubElement(annotation, "folder").text = IMAGES
        ElementTree.SubElement(annotation, "filename").text = image.file_name
        size = ElementTree.SubElement(annotation, "size")
        for name, value in (("width", image.width), ("height", image.height), ("depth", 3)):
            ElementTree.SubElement(size, name).text = str(value)
        ElementTree.SubElement(annotation, "segmented").text = "0"
        for box in image.boxes:
            _object(annotation, box, image.width, image.height)
        ElementTree.indent(annotation)
        ElementTree.ElementTree(annotation).write(self.annotations / f"{Path(image.file_name).stem}.xml",
                                                  encoding="utf-8", xml_declaration=False)

    def close(self) -> None:
        pass


def _object(annotation: ElementTree.Element, box: Box, width: int, height: int) -> None:
    element = ElementTree.SubElement(annotation, "object")
    ElementTree.SubElement(element, "name").text = box.tag
    ElementTree.SubElement(element, "pose").text = "Unspecified"
    ElementTree.SubElement(element, "truncated").text = "0"
    ElementTree.SubElement(element, "difficult").text = "0"
    corners = ElementTree.SubElement(element, "bndbox")
    values = (box.left * width, box.top * height, (box.left + box.width) * width, (box.top + box.height) * height)
    for corner, value in zip(_CORNERS, values):
        ElementTree.SubElement(corners, corner).text = repr(number(value))
