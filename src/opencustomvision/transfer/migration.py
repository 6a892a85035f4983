"""``ocv migrate``: copy projects, tags, images, regions and metadata from one Custom Vision resource to another.

Both ends are reached only through the Training API v3.3 (:mod:`opencustomvision.transfer.client`),
so the source may be Azure or another OpenCustomVision, and so may the target. A run is idempotent:
projects are matched through the state file (:mod:`opencustomvision.transfer.state`), tags by name,
images by the state file and, for what a crash left unrecorded, by the target's own duplicate
detection (the same bytes answer ``OKDuplicate`` with the stored image).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from opencustomvision.transfer.client import ApiError, CustomVisionClient, Domain, Image, Project, Tag
from opencustomvision.transfer.progress import Progress, Silent
from opencustomvision.transfer.state import MigrationState
from opencustomvision.transfer.upload import Tally, UploadItem, Uploader, metadata_key


class MigrationError(Exception):
    """A project cannot be copied for a reason a person must settle (a name clash, an unknown domain)."""


@dataclass
class ProjectReport:
    source_id: str
    name: str
    target_id: str | None = None
    tags_copied: int = 0
    tags_skipped: int = 0
    images_total: int = 0
    images: Tally = field(default_factory=Tally)  # stored: copied; present: already on the target
    training: dict[str, str] | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        training_ok = self.training is None or self.training.get("status") in ("Completed", "NotNeeded")
        return self.error is None and not self.images.failed and training_ok

    def counts(self) -> dict[str, dict[str, int]]:
        return {"tags": {"copied": self.tags_copied, "skipped": self.tags_skipped},
                "images": {"copied": self.images.stored, "skipped": self.images.present, "failed": len(self.images.failed)},
                "regions": {"copied": self.images.regions}}

    def as_json(self) -> dict[str, Any]:
        counts = self.counts()
        return {"sourceId": self.source_id, "targetId": self.target_id, "name": self.name, **counts,
                "images": {"total": self.images_total, **counts["images"]},
                "training": self.training, "failures": self.images.failures("image"), "error": self.error}


@dataclass
class MigrationReport:
    source: str
    target: str
    state_file: str
    projects: list[ProjectReport] = field(default_factory=list)
    retries: int = 0

    @property
    def ok(self) -> bool:
        return all(project.ok for project in self.projects)

    def totals(self) -> dict[str, dict[str, int]]:
        totals = {"projects": {"copied": sum(1 for p in self.projects if p.error is None),
                               "failed": sum(1 for p in self.projects if p.error is not None)},
                  "tags": {"copied": 0, "skipped": 0}, "images": {"copied": 0, "skipped": 0, "failed": 0},
                  "regions": {"copied": 0}}
        for project in self.projects:
            for group, counts in project.counts().items():
                for name, count in counts.items():
                    totals[group][name] += count
        return totals

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "source": self.source, "target": self.target, "stateFile": self.state_file,
                "totals": self.totals(), "retries": self.retries,
                "projects": [project.as_json() for project in self.projects]}


@dataclass(frozen=True)
class MigrationOptions:
    project_ids: Sequence[str] | None = None  # None: every project of the source resource
    train: bool = False
    adopt_existing: bool = False  # copy into a same-named target project this run did not create
    training_poll_seconds: float = 2.0
    training_timeout_seconds: float = 6 * 3600
    batches_in_flight: int = 2


class Migration:
    def __init__(self, source: CustomVisionClient, target: CustomVisionClient, state: MigrationState,
                 progress: Progress | None = None) -> None:
        self.source = source
        self.target = target
        self.state = state
        self.progress = progress or Silent()

    def run(self, options: MigrationOptions = MigrationOptions()) -> MigrationReport:
        self.state.describe(self.source.endpoint, self.target.endpoint)
        report = MigrationReport(source=self.source.endpoint, target=self.target.endpoint, state_file=str(self.state.path))
        projects = self._source_projects(options.project_ids, report)
        if projects:
            source_domains = {domain.id: domain for domain in self.source.domains()}
            target_domains = self.target.domains()
            for project in projects:
                report.projects.append(self._migrate_project(project, source_domains, target_domains, options))
        report.retries = self.source.retries + self.target.retries
        return report

    def _source_projects(self, wanted: Sequence[str] | None, report: MigrationReport) -> list[Project]:
        if wanted is None:
            return self.source.projects()
        found = []
        for project_id in dict.fromkeys(identifier.lower() for identifier in wanted):
            try:
                found.append(self.source.project(project_id))
            except ApiError as error:
                report.projects.append(ProjectReport(source_id=project_id, name="", error=f"source project: {error}"))
                self.progress.log(f"project {project_id}: not copied: {error}")
        return found

    def _migrate_project(self, project: Project, source_domains: Mapping[str, Domain], target_domains: list[Domain],
                         options: MigrationOptions) -> ProjectReport:
        report = ProjectReport(source_id=project.id, name=project.name)
        try:
            target = self._target_project(project, source_domains, target_domains, options)
            report.target_id = target.id
            tag_ids = self._copy_tags(project, target, report)
            self._copy_images(project, target, tag_ids, report, options)
            if options.train:
                self._train(target, report, options)
        except (ApiError, MigrationError) as error:
            report.error = str(error)
            self.progress.log(f"project '{project.name}': not copied: {error}")
            self.progress.finish()
        return report

    # ------------------------------------------------------------------------------ the project

    def _target_project(self, project: Project, source_domains: Mapping[str, Domain], target_domains: list[Domain],
                        options: MigrationOptions) -> Project:
        record = self.state.project(project.id)
        if record is not None and record.target_project_id is not None:
            try:
                return self._with_settings(project, self.target.project(record.target_project_id))
            except ApiError as error:
                if error.status != 404:
                    raise
                self.progress.log(f"project '{project.name}': its copy {record.target_project_id} was deleted; copying it afresh")
                self.state.forget_project(project.id)
                record = None
        existing = self.target.projects()
        if record is not None:
            # A run died between CreateProject and recording its answer: the project it made is the one
            # with that name that did not exist before.
            made = self._made_since(existing, record.target_name, record.target_ids_before)
            if made is not None:
                self.state.project_created(project.id, made.id)
                return self._with_settings(project, made)
        clash = next((candidate for candidate in existing if candidate.name == project.name), None)
        if clash is not None and options.adopt_existing:
            self.state.project_pending(project.id, project.name, set())
            self.state.project_created(project.id, clash.id)
            self.progress.log(f"project '{project.name}': copying into the target's project {clash.id} of that name")
            return self._with_settings(project, clash)
        if clash is not None:
            raise MigrationError(
                f"the target already has a project named '{project.name}' ({clash.id}) that this migration did not "
                "create (another state file?): rename or delete it there, pass --adopt-existing to copy into it, "
                "or leave this project out with --project")
        domain = _matching_domain(project.domain_id, source_domains, target_domains)
        before = {candidate.id for candidate in existing}
        self.state.project_pending(project.id, project.name, before)
        try:
            created = self.target.create_project(
                project.name, description=project.description, domain_id=domain.id,
                classification_type=project.classification_type if domain.type == "Classification" else None,
                target_export_platforms=project.target_export_platforms)
        except ApiError as error:
            # A retried CreateProject whose first answer was lost finds its own name taken.
            made = self._made_since(self.target.projects(), project.name, before) if error.code.endswith("NotUnique") else None
            if made is None:
                raise
            created = made
        self.state.project_created(project.id, created.id)
        self.progress.log(f"project '{project.name}': created {created.id} on the target")
        return self._with_settings(project, created)

    @staticmethod
    def _made_since(projects: list[Project], name: str, before: frozenset[str] | set[str]) -> Project | None:
        return next((candidate for candidate in projects if candidate.name == name and candidate.id not in before), None)

    def _with_settings(self, project: Project, target: Project) -> Project:
        """Settings CreateProject cannot set (image processing) go over with UpdateProject."""
        wanted = _given(project.image_processing_settings)
        if not wanted or _given(target.image_processing_settings) == wanted:
            return target
        settings = dict(target.raw.get("settings") or {})
        settings["imageProcessingSettings"] = wanted
        return self.target.update_project(target.id, {"name": target.name, "description": target.description,
                                                      "settings": settings})

    # ------------------------------------------------------------------------------ tags

    def _copy_tags(self, project: Project, target: Project, report: ProjectReport) -> dict[str, str]:
        existing = {tag.name: tag for tag in self.target.tags(target.id)}
        mapping: dict[str, str] = {}
        for tag in self.source.tags(project.id):
            copy = existing.get(tag.name)
            if copy is not None:
                report.tags_skipped += 1
            else:
                copy = self._create_tag(target, tag)
                report.tags_copied += 1
            mapping[tag.id] = copy.id
        return mapping

    def _create_tag(self, target: Project, tag: Tag) -> Tag:
        try:
            return self.target.create_tag(target.id, tag.name, description=tag.description, tag_type=tag.type)
        except ApiError as error:
            if not error.code.endswith("NotUnique"):
                raise
            # Our own earlier attempt landed; its answer did not.
            return next(found for found in self.target.tags(target.id) if found.name == tag.name)

    # ------------------------------------------------------------------------------ images

    def _copy_images(self, project: Project, target: Project, tag_ids: Mapping[str, str], report: ProjectReport,
                     options: MigrationOptions) -> None:
        copied = self._recorded_copies(project, target)
        report.images_total = self.source.image_count(project.id)
        self.progress.start(project.name, report.images_total)

        def items() -> Iterator[UploadItem]:
            for page in self.source.image_pages(project.id):
                already = [image for image in page if image.id in copied]
                if already:
                    report.images.present += len(already)
                    self.progress.advance(len(already))
                for image in page:
                    if image.id not in copied:
                        yield self._item(project, image, tag_ids)

        uploader = Uploader(self.target, target.id, batches_in_flight=options.batches_in_flight)
        for results in uploader.run(items()):
            self.state.images_copied(project.id, [(result.item.key, result.image_id) for result in results
                                                  if result.image_id is not None])
            for result in report.images.add(results):
                self.progress.log(f"project '{project.name}': image {result.item.key} not copied: "
                                  f"{result.status}: {result.message}")
            self.progress.advance(len(results))
        self.progress.finish()
        counts = report.counts()
        self.progress.log(f"project '{project.name}': {counts['images']['copied']} images copied, "
                          f"{counts['images']['skipped']} already there, {counts['images']['failed']} failed; "
                          f"{counts['regions']['copied']} regions copied")

    def _recorded_copies(self, project: Project, target: Project) -> dict[str, str]:
        """The images the state file records as copied, less any deleted from the target since."""
        copied = self.state.copied_images(project.id)
        if copied and self.target.image_count(target.id) < len(copied):
            present = {image.id for image in self.target.images_by_ids(target.id, list(copied.values()))}
            gone = [source_id for source_id, target_id in copied.items() if target_id not in present]
            self.state.forget_images(project.id, gone)
            self.progress.log(f"project '{project.name}': {len(gone)} copies were deleted from the target; copying them again")
            copied = {source_id: target_id for source_id, target_id in copied.items() if target_id in present}
        return copied

    def _item(self, project: Project, image: Image, tag_ids: Mapping[str, str]) -> UploadItem:
        # A tag the source lists on an image but not among its tags is left out rather than guessed.
        return UploadItem(
            key=image.id,
            label=image.id,
            load=partial(self.source.original_bytes, project.id, image),
            tag_ids=tuple(tag_ids[tag_id] for tag_id, _ in image.tags if tag_id in tag_ids),
            regions=tuple((tag_ids[r.tag_id], r.left, r.top, r.width, r.height) for r in image.regions if r.tag_id in tag_ids),
            metadata=metadata_key(image.metadata),
        )

    # ------------------------------------------------------------------------------ training

    def _train(self, target: Project, report: ProjectReport, options: MigrationOptions) -> None:
        try:
            iteration = self.target.train(target.id)
        except ApiError as error:
            if error.code == "BadRequestTrainingNotNeeded":
                report.training = {"status": "NotNeeded", "message": error.message}
                self.progress.log(f"project '{target.name}': training not needed (nothing changed since the last iteration)")
                return
            if error.code != "BadRequestTrainingAlreadyInProgress":
                report.training = {"status": "Refused", "message": f"{error.code}: {error.message}"}
                self.progress.log(f"project '{target.name}': training refused: {error.code}: {error.message}")
                return
            iteration = next(it for it in self.target.iterations(target.id) if it.status == "Training")
        self.progress.log(f"project '{target.name}': training iteration {iteration.id}")
        deadline = time.monotonic() + options.training_timeout_seconds
        while iteration.status == "Training" and time.monotonic() < deadline:
            time.sleep(options.training_poll_seconds)
            iteration = self.target.iteration(target.id, iteration.id)
        report.training = {"iterationId": iteration.id, "status": iteration.status}
        self.progress.log(f"project '{target.name}': iteration {iteration.id} {iteration.status}")


def _given(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """The settings that are set (Azure answers null for those that are not)."""
    return {key: value for key, value in (settings or {}).items() if value is not None}


def _matching_domain(domain_id: str, source_domains: Mapping[str, Domain], target_domains: list[Domain]) -> Domain:
    """The target's domain with the source's id; else the one of the same type and name."""
    by_id = {domain.id: domain for domain in target_domains}
    if domain_id in by_id and by_id[domain_id].enabled:
        return by_id[domain_id]
    source = source_domains.get(domain_id)
    if source is not None:
        for domain in target_domains:
            if domain.enabled and domain.type == source.type and domain.name == source.name:
                return domain
    described = f"{source.name} ({source.type})" if source is not None else "unknown to the source"
    raise MigrationError(f"the target offers no domain {domain_id}, {described}")


__all__ = ["Migration", "MigrationError", "MigrationOptions", "MigrationReport", "ProjectReport"]
