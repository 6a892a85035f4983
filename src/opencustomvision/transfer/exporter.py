"""``ocv dataset export``: a project's images (original bytes), tags and boxes written in a dataset format.

With an iteration, the images that iteration trained on. Image files are named by their image id
(the API keeps no file names); each is downloaded from its ``originalImageUri``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from opencustomvision.transfer.client import ApiError, CustomVisionClient, Image
from opencustomvision.transfer.datasets.model import Box, DatasetError, ExportImage, TagInfo, image_extension
from opencustomvision.transfer.errors import Refused
from opencustomvision.transfer.importer import CLASSIFICATION
from opencustomvision.transfer.progress import Progress, Silent

_DOWNLOADS = 8


@dataclass
class ExportReport:
    project_id: str
    format: str
    path: str
    iteration_id: str | None = None
    images_total: int = 0
    images_exported: int = 0
    images_failed: int = 0
    regions_exported: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "projectId": self.project_id, "iterationId": self.iteration_id, "format": self.format,
                "path": self.path, "images": {"total": self.images_total, "exported": self.images_exported,
                                               "failed": self.images_failed},
                "regions": {"exported": self.regions_exported}, "failures": self.failures}


def export_dataset(client: CustomVisionClient, project_id: str, format_name: str, module: ModuleType, root: Path, *,
                   iteration_id: str | None = None, progress: Progress | None = None) -> ExportReport:
    progress = progress or Silent()
    try:
        project = client.project(project_id)
        if iteration_id:
            client.iteration(project.id, iteration_id)
    except ApiError as error:
        if error.status != 404:
            raise
        raise Refused(str(error), usage=True) from error
    kind = client.domain(project.domain_id).type
    if module.KIND == "detection" and kind == CLASSIFICATION:
        raise Refused(f"'{format_name}' holds boxes, and '{project.name}' is a classification project: "
                            "export it as folders or customvision", usage=True)
    if module.KIND == "classification" and kind != CLASSIFICATION:
        raise Refused(f"'{format_name}' holds no boxes, and '{project.name}' is an object detection project: "
                            "export it as coco, voc, yolo or customvision", usage=True)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise Refused(f"{root} exists and is not an empty folder", usage=True)

    tags = client.tags(project.id)
    names = {tag.id: tag.name for tag in tags}
    try:
        writer = module.Writer(root, [TagInfo(tag.name, tag.type, tag.description) for tag in tags])
    except DatasetError as error:
        raise Refused(str(error), usage=True) from error
    report = ExportReport(project_id=project.id, format=format_name, path=str(root), iteration_id=iteration_id,
                          images_total=client.image_count(project.id, iteration_id=iteration_id))
    progress.start(project.name, report.images_total)

    def download(image: Image) -> bytes | ApiError:
        try:
            return client.original_bytes(project.id, image)
        except ApiError as error:
            return error

    with ThreadPoolExecutor(_DOWNLOADS, thread_name_prefix="download") as pool:
        for page in client.image_pages(project.id, iteration_id=iteration_id):
            for image, data in zip(page, pool.map(download, page)):
                if isinstance(data, ApiError):
                    report.images_failed += 1
                    report.failures.append({"image": image.id, "status": str(data.status), "message": str(data)})
                    progress.log(f"image {image.id}: not exported: HTTP {data.status} {data}")
                    continue
                writer.add(_export_image(image, data, names), data)
                report.images_exported += 1
                report.regions_exported += len(image.regions)
            progress.advance(len(page))
    writer.close()
    progress.finish()
    return report


def _export_image(image: Image, data: bytes, names: dict[str, str]) -> ExportImage:
    return ExportImage(
        id=image.id,
        file_name=f"{image.id}{image_extension(data)}",
        width=image.width,
        height=image.height,
        tags=tuple(names.get(tag_id, name) for tag_id, name in image.tags),
        boxes=tuple(Box(names.get(r.tag_id, r.tag_name), r.left, r.top, r.width, r.height) for r in image.regions),
    )
