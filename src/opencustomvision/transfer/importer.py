"""``ocv dataset import``: a dataset read by one of :mod:`opencustomvision.transfer.datasets` into a project.

The whole dataset is read and checked before anything is sent: a dataset with problems is refused
whole (nothing is created), or with ``skip_invalid`` the images the problems touch are left out.
Files with the same bytes are one image (as the server sees them) with all their tags and boxes.
Each image then lands whole or not at all (:mod:`opencustomvision.transfer.upload`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from opencustomvision.transfer.client import ApiError, CustomVisionClient, Domain, Project
from opencustomvision.transfer.errors import Refused
from opencustomvision.transfer.datasets.model import Box, Dataset, LabeledImage, TagInfo
from opencustomvision.transfer.progress import Progress, Silent
from opencustomvision.transfer.upload import Tally, UploadItem, Uploader

CLASSIFICATION, DETECTION = "Classification", "ObjectDetection"


@dataclass(frozen=True)
class ImportOptions:
    project_id: str | None = None
    name: str | None = None
    domain_id: str | None = None
    skip_invalid: bool = False


@dataclass
class ImportReport:
    project_id: str
    project_name: str
    created: bool
    tags_created: int = 0
    images_total: int = 0
    images: Tally = field(default_factory=Tally)  # stored: imported; present: already in the project
    merged: list[str] = field(default_factory=list)
    skipped_invalid: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.images.failed

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "projectId": self.project_id, "projectName": self.project_name, "created": self.created,
                "tags": {"created": self.tags_created},
                "images": {"total": self.images_total, "imported": self.images.stored,
                           "duplicate": self.images.present, "failed": len(self.images.failed)},
                "regions": {"imported": self.images.regions}, "merged": self.merged,
                "skippedInvalid": self.skipped_invalid, "failures": self.images.failures("file")}


@dataclass
class _Image:
    """One image to upload: the first file with its bytes, and the labels of every such file."""

    first: LabeledImage
    tags: list[str]
    boxes: list[Box]


def import_dataset(client: CustomVisionClient, dataset: Dataset, options: ImportOptions,
                   progress: Progress | None = None) -> ImportReport:
    progress = progress or Silent()
    if dataset.problems and not options.skip_invalid:
        raise Refused(f"{len(dataset.problems)} problems in the dataset; nothing was imported "
                            "(--skip-invalid leaves out the images they touch)", problems=dataset.problems)
    images, merged = _by_content(dataset.valid_images())
    project, created = _project(client, dataset, images, options)
    report = ImportReport(project_id=project.id, project_name=project.name, created=created, images_total=len(images),
                          merged=merged, skipped_invalid=[str(problem) for problem in dataset.problems])
    if created:
        progress.log(f"created project '{project.name}' ({project.id})")
    tag_ids = _tags(client, project, dataset, images, report)

    def items() -> Iterator[UploadItem]:
        for image in images:
            yield UploadItem(key=image.first.name, label=image.first.name, load=image.first.path.read_bytes,
                             tag_ids=tuple(tag_ids[name] for name in image.tags),
                             regions=tuple((tag_ids[b.tag], b.left, b.top, b.width, b.height) for b in image.boxes))

    progress.start(project.name, len(images))
    for results in Uploader(client, project.id).run(items()):
        for result in report.images.add(results):
            progress.log(f"{result.item.key}: not imported: {result.status}: {result.message}")
        progress.advance(len(results))
    progress.finish()
    return report


def _by_content(images: list[LabeledImage]) -> tuple[list[_Image], list[str]]:
    """One entry per distinct content; files with the same bytes merge their labels (the server keeps one image)."""
    grouped: dict[str, _Image] = {}
    merged: list[str] = []
    for image in images:
        digest = _sha256(image)
        known = grouped.get(digest)
        if known is None:
            grouped[digest] = _Image(image, list(dict.fromkeys(image.tags)), list(dict.fromkeys(image.boxes)))
            continue
        merged.append(f"{image.name}: the same image as {known.first.name}; their tags and boxes are merged")
        known.tags += [tag for tag in image.tags if tag not in known.tags]
        known.boxes += [box for box in image.boxes if box not in known.boxes]
    return list(grouped.values()), merged


def _sha256(image: LabeledImage) -> str:
    try:
        with image.path.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:
        # Unreadable now: the upload reports it by name.
        return f"unreadable:{image.path}"


def _project(client: CustomVisionClient, dataset: Dataset, images: list[_Image], options: ImportOptions) -> tuple[Project, bool]:
    if options.project_id:
        try:
            project = client.project(options.project_id)
        except ApiError as error:
            if error.status != 404:
                raise
            raise Refused(f"project {options.project_id}: {error}", usage=True) from error
        if dataset.has_boxes and client.domain(project.domain_id).type != DETECTION:
            raise Refused(f"the dataset has boxes, and project '{project.name}' is a classification project", usage=True)
        return project, False
    if not images:
        raise Refused("the dataset holds no image to import", usage=True)
    kind = DETECTION if dataset.has_boxes else CLASSIFICATION
    domain = _domain(client.domains(), kind, options.domain_id)
    multilabel = kind == CLASSIFICATION and any(len(image.tags) > 1 for image in images)
    # The dataset's folder names it; COCO keeps its JSON in annotations/, which says nothing.
    root = dataset.root.parent if dataset.root.name.lower() == "annotations" else dataset.root
    name = options.name or root.name
    clash = next((project for project in client.projects() if project.name == name), None)
    if clash is not None:
        raise Refused(f"a project named '{name}' exists ({clash.id}): import into it with --project {clash.id}, "
                            "or choose another --name", usage=True)
    project = client.create_project(name, domain_id=domain.id,
                                    classification_type=("Multilabel" if multilabel else "Multiclass") if kind == CLASSIFICATION else None)
    return project, True


def _domain(domains: list[Domain], kind: str, wanted: str | None) -> Domain:
    if wanted:
        found = next((domain for domain in domains if domain.id == wanted.lower()), None)
        if found is None or found.type != kind:
            raise Refused(f"--domain {wanted} is not a {kind} domain of this server", usage=True)
        return found
    usable = [domain for domain in domains if domain.type == kind and domain.enabled]
    if not usable:
        raise Refused(f"the server offers no {kind} domain")
    return next((domain for domain in usable if domain.name == "General"), usable[0])


def _tags(client: CustomVisionClient, project: Project, dataset: Dataset, images: list[_Image], report: ImportReport) -> dict[str, str]:
    ids = {tag.name: tag.id for tag in client.tags(project.id)}
    wanted = {tag.name: tag for tag in dataset.tags}
    for image in images:
        for name in [*image.tags, *(box.tag for box in image.boxes)]:
            wanted.setdefault(name, TagInfo(name))
    for name, tag in wanted.items():
        if name not in ids:
            ids[name] = client.create_tag(project.id, name, description=tag.description, tag_type=tag.type).id
            report.tags_created += 1
    return ids

