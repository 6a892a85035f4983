"""A folder per tag (classification): ``ROOT/<tag>/<image>``; images directly in ``ROOT`` are untagged.

An image with several tags (Multilabel) is written into each of its tags' folders, and read back as
one image with those tags: the importer groups files by content (SHA-256), as the server would.
"""

from __future__ import annotations

from pathlib import Path

from opencustomvision.transfer.datasets.model import (
    Dataset, DatasetError, ExportImage, LabeledImage, TagInfo, image_files, relative,
)

KIND = "classification"


def read(root: Path) -> Dataset:
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    images = [LabeledImage(path=path, name=relative(path, root)) for path in image_files(root, recursive=False)]
    tags: list[TagInfo] = []
    for folder in sorted(path for path in root.iterdir() if path.is_dir() and not path.name.startswith(".")):
        tags.append(TagInfo(folder.name))
        images += [LabeledImage(path=path, name=relative(path, root), tags=[folder.name]) for path in image_files(folder)]
    return Dataset(root=root, images=images, tags=tags)


def folder_name_problem(name: str) -> str | None:
    if name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name or name.startswith("."):
        return f"the tag '{name}' cannot be a folder name"
    return None


class Writer:
    def __init__(self, root: Path, tags: list[TagInfo]) -> None:
        self.root = root
        for tag in tags:
            problem = folder_name_problem(tag.name)
            if problem is not None:
                raise DatasetError(f"{problem}: export as customvision instead")
        root.mkdir(parents=True, exist_ok=True)
        for tag in tags:
            (root / tag.name).mkdir()

    def add(self, image: ExportImage, data: bytes) -> None:
        for folder in [self.root / tag for tag in image.tags] or [self.root]:
            (folder / image.file_name).write_bytes(data)

    def close(self) -> None:
        pass
