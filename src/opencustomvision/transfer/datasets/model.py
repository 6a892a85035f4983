"""What every dataset format reads into and writes from.

Boxes are Custom Vision's: left, top, width, height, normalised to the upright image (after EXIF
orientation), the frame the Training API uses. A reader never raises for one bad entry: it records a
:class:`Problem` naming the file and the field, and the importer refuses the dataset, or with
``--skip-invalid`` leaves out the images the problems touch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

from PIL import ExifTags, Image, UnidentifiedImageError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif"})
EXTENSIONS = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "BMP": ".bmp", "GIF": ".gif"}
_EDGE_SLACK = 1e-6  # normalised: the server's own tolerance for a box's far edge
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})


class DatasetError(Exception):
    """The dataset cannot be read at all (no annotation file, a file that is not JSON)."""


@dataclass(frozen=True)
class Box:
    tag: str
    left: float
    top: float
    width: float
    height: float


@dataclass(frozen=True)
class TagInfo:
    name: str
    type: str = "Regular"
    description: str = ""


@dataclass
class LabeledImage:
    path: Path
    name: str  # how messages and reports name it: its path relative to the dataset
    tags: list[str] = field(default_factory=list)  # image-level tags
    boxes: list[Box] = field(default_factory=list)


@dataclass(frozen=True)
class Problem:
    file: str  # the file at fault, relative to the dataset
    field: str  # where in it ("object[2].bndbox.xmax", "annotations[17].category_id", "line 3")
    message: str
    image: str | None = None  # the LabeledImage.name it invalidates, if an image was made from it

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.message}" if self.field else f"{self.file}: {self.message}"


@dataclass
class Dataset:
    root: Path
    images: list[LabeledImage]
    tags: list[TagInfo]  # every tag the dataset declares, in its own order
    problems: list[Problem] = field(default_factory=list)

    @property
    def has_boxes(self) -> bool:
        return any(image.boxes for image in self.images)

    def valid_images(self) -> list[LabeledImage]:
        touched = {problem.image for problem in self.problems}
        return [image for image in self.images if image.name not in touched]


@dataclass(frozen=True)
class ExportImage:
    """One image of a project, as a writer puts it in a dataset."""

    id: str
    file_name: str  # "<image id>.<format's extension>"
    width: int
    height: int
    tags: tuple[str, ...]  # tag names on the image
    boxes: tuple[Box, ...]


def relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def upright_size(path: Path) -> tuple[int, int]:
    """Width and height as the Training API sees the image: EXIF orientation applied. Reads the header only."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            try:
                orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
            except Exception:  # a broken EXIF block: the server falls back to "as stored" too
                orientation = 1
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"cannot read the image's size: {error}") from error
    return (height, width) if orientation in _SWAPPING_ORIENTATIONS else (width, height)


def box_problem(left: float, top: float, width: float, height: float) -> str | None:
    """Why a normalised box cannot be a region, or None."""
    values = (left, top, width, height)
    if not all(value == value and abs(value) != float("inf") for value in values):
        return "a coordinate is not a finite number"
    if width <= 0 or height <= 0:
        return "zero-area box" if width == 0 or height == 0 else "box with a negative width or height"
    if left < -_EDGE_SLACK or top < -_EDGE_SLACK or left + width > 1 + _EDGE_SLACK or top + height > 1 + _EDGE_SLACK:
        return "box outside the image"
    return None


def add_box(image: LabeledImage, problems: list[Problem], file: str, where: str, tag: str,
            box: tuple[float, float, float, float], shown: str) -> None:
    """The normalised ``box`` onto the image, or the problem that keeps it off (``shown``: the box as the file has it)."""
    problem = box_problem(*box)
    if problem is not None:
        problems.append(Problem(file, where, f"{problem} ({tag}: {shown})", image.name))
        return
    left, top, width, height = box
    # Rounding at the edges (within the slack) is taken off, as the server would refuse it.
    left, top = max(0.0, left), max(0.0, top)
    image.boxes.append(Box(tag, left, top, min(width, 1.0 - left), min(height, 1.0 - top)))


def image_extension(data: bytes) -> str:
    """The file extension for these image bytes, from their header."""
    try:
        with Image.open(BytesIO(data)) as image:
            return EXTENSIONS.get(image.format or "", ".img")
    except (UnidentifiedImageError, OSError):
        return ".img"


def find_image(name: str, folders: list[Path]) -> Path | None:
    """``name`` (a relative path from an annotation) in the first of ``folders`` that holds it.

    Names that climb out of the folders (``../``, absolute paths) are not followed."""
    candidate_name = Path(name)
    if candidate_name.is_absolute() or ".." in candidate_name.parts or not name:
        return None
    for folder in folders:
        candidate = folder / candidate_name
        if candidate.is_file():
            return candidate
    return None


def image_files(folder: Path, *, recursive: bool = True) -> list[Path]:
    pattern = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(path for path in pattern if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES)


def number(value: float) -> int | float:
    """A coordinate for a file: a whole number when it is one (to a millionth), else the exact float."""
    nearest = round(value)
    return int(nearest) if abs(value - nearest) < 1e-6 else value
