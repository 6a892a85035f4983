"""``ocv migrate`` between two live servers on loopback, checked field by field through the official SDK.

The source is the session's live server (a resource of its own); the target a second server with its
own data folder and database (a fresh resource per test, so each test sees an empty account).
Faults are real: a migration process killed with SIGKILL while the target is answering, and a real
HTTP proxy in front of the source that answers 429 and 503 now and then and drops connections.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
from azure.cognitiveservices.vision.customvision.training.models import (
    ImageFileCreateBatch, ImageFileCreateEntry, ImageProcessingSettings, ImageRegionCreateEntry, Region,
)

from opencustomvision.cli import main
from opencustomvision.config import Settings
from opencustomvision.domain.resources import create_resource
from opencustomvision.storage.db import create_db_engine, session_factory
from tests.conftest import LiveServer, _database_url, serving, shared_data
from tests.http_proxy import DROP, FORWARD, HOLD, Proxy
from tests.project_contents import contents, differences, trainer_for

pytestmark = [pytest.mark.slow, pytest.mark.heavy]


@dataclass(frozen=True)
class Account:
    endpoint: str
    training_key: str

    @property
    def trainer(self) -> CustomVisionTrainingClient:
        return trainer_for(self.endpoint, self.training_key)


def new_account(settings: Settings, endpoint: str) -> Account:
    engine = create_db_engine(settings.database_url)
    try:
        with session_factory(engine)() as session:
            credentials = create_resource(session, f"migrate-{uuid.uuid4().hex[:10]}")
    finally:
        engine.dispose()
    return Account(endpoint, credentials.training_key)


@pytest.fixture(scope="module")
def target_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, str]]:
    data_dir = tmp_path_factory.mktemp("ocv-target")
    settings = Settings(data_dir=data_dir, database_url=_database_url(data_dir), url_allowlist=frozenset())
    with serving(settings) as endpoint:
        yield settings, endpoint


@pytest.fixture
def target(target_server: tuple[Settings, str]) -> Account:
    return new_account(*target_server)


def _upload(trainer: CustomVisionTrainingClient, project_id: str, entries: list[ImageFileCreateEntry],
            metadata: dict[str, str] | None = None) -> list[str]:
    summary = trainer.create_images_from_files(project_id, ImageFileCreateBatch(images=entries, metadata=metadata))
    assert summary.is_batch_successful, [image.status for image in summary.images]
    return [image.image.id for image in summary.images]


def _files(paths: list[Path], tag_ids: list[str]) -> list[ImageFileCreateEntry]:
    return [ImageFileCreateEntry(name=path.name, contents=path.read_bytes(), tag_ids=tag_ids) for path in paths]


def trees_project(trainer: CustomVisionTrainingClient):  # type: ignore[no-untyped-def]
    """Multiclass, with a Negative tag, tag descriptions and metadata on two of its three batches."""
    trees = trainer.create_project("multiclass trees", description="hemlock or cherry", classification_type="Multiclass")
    hemlock = trainer.create_tag(trees.id, "Hemlock", description="Tsuga, an evergreen")
    cherry = trainer.create_tag(trees.id, "Japanese Cherry")
    negative = trainer.create_tag(trees.id, "Not a tree", description="anything else", type="Negative")
    images = shared_data("customvision-samples", "ImageClassification", "Images")
    _upload(trainer, trees.id, _files(sorted((images / "Hemlock").glob("*.jpg")), [hemlock.id]), {"site": "north"})
    _upload(trainer, trees.id, _files(sorted((images / "Japanese_Cherry").glob("*.jpg")), [cherry.id]),
            {"site": "south", "camera": "phone"})
    _upload(trainer, trees.id, _files(sorted(shared_data("od_raccoon", "images").glob("*.jpg"))[:5], [negative.id]))
    return trees


@dataclass(frozen=True)
class Source:
    account: Account
    projects: dict[str, str]  # name -> id


@pytest.fixture(scope="module")
def source(live_server: LiveServer) -> Source:
    """Three projects: Multiclass with a Negative tag and metadata; Multilabel on a compact domain with
    export platforms and augmentation settings; object detection with regions and per-image metadata."""
    account = new_account(live_server.settings, live_server.endpoint)
    trainer = account.trainer
    samples = shared_data("customvision-samples")
    domains = {(domain.type, domain.name): domain.id for domain in trainer.get_domains()}

    trees = trees_project(trainer)
    fruit = trainer.create_project("multilabel fruit", domain_id=domains[("Classification", "General (compact)")],
                                   classification_type="Multilabel", target_export_platforms=["ONNX", "TensorFlow"])
    fruit.settings.image_processing_settings = ImageProcessingSettings(augmentation_methods={"rotation": True, "scaling": False})
    trainer.update_project(fruit.id, fruit)
    fruit_images = shared_data("cv_ai102_cls_fruit", "training-images")
    tag_ids = {name: trainer.create_tag(fruit.id, name).id for name in ("apple", "banana", "orange")}
    for name, tag_id in tag_ids.items():
        paths = sorted((fruit_images / name).glob("*.jpg"))[:5]
        extra = [tag_ids["banana"]] if name == "apple" else []  # Multilabel: apples also tagged banana
        _upload(trainer, fruit.id, _files(paths, [tag_id, *extra]))

    detection = trainer.create_project("fork and scissors", domain_id=domains[("ObjectDetection", "General")])
    boxes = json.loads((samples / "ObjectDetection" / "regions.json").read_text())
    entries: list[ImageFileCreateEntry] = []
    detection_tags = {name: trainer.create_tag(detection.id, name).id for name in ("fork", "scissors")}
    for name, tag_id in detection_tags.items():
        for stem, (left, top, width, height) in sorted(boxes[name].items()):
            path = samples / "ObjectDetection" / "Images" / name / f"{stem}.jpg"
            entries.append(ImageFileCreateEntry(name=path.name, contents=path.read_bytes(), regions=[
                Region(tag_id=tag_id, left=left, top=top, width=width, height=height)]))
    detection_ids = _upload(trainer, detection.id, entries)
    # A second box on one image, and metadata of its own on five (each its own upload batch on the way over).
    trainer.create_image_regions(detection.id, regions=[ImageRegionCreateEntry(
        image_id=detection_ids[0], tag_id=detection_tags["scissors"], left=0.01, top=0.02, width=0.1, height=0.2)])
    for number, image_id in enumerate(detection_ids[:5]):
        trainer.update_image_metadata(detection.id, [image_id], {"frame": str(number), "reviewed": "yes"})
    return Source(account, {project.name: project.id for project in (trees, fruit, detection)})


def arguments(source: Account, target: Account, state: Path) -> list[str]:
    return ["migrate", "--from-endpoint", source.endpoint, "--from-training-key", source.training_key,
            "--to-endpoint", target.endpoint, "--to-training-key", target.training_key, "--state", str(state)]


def migrate(source: Account, target: Account, capsys: pytest.CaptureFixture[str], state: Path,
            *extra: str) -> tuple[int, dict[str, Any]]:
    code = main([*arguments(source, target, state), "--json", *extra])
    return code, json.loads(capsys.readouterr().out)


def assert_copied_whole(source: Account, target: Account, names: list[str]) -> None:
    """Projects, settings, tags and images (bytes, size, tags, regions, metadata) the same on both sides."""
    source_trainer, target_trainer = source.trainer, target.trainer
    copies = {project.name: project for project in target_trainer.get_projects()}
    assert sorted(copies) == sorted(names), "each project exactly once"
    originals = {project.name: project for project in source_trainer.get_projects()}
    for name in names:
        original, copy = originals[name], copies[name]
        assert copy.description == original.description
        assert copy.settings.domain_id == original.settings.domain_id
        assert copy.settings.classification_type == original.settings.classification_type
        assert sorted(copy.settings.target_export_platforms or []) == sorted(original.settings.target_export_platforms or [])
        assert (copy.settings.image_processing_settings.augmentation_methods if copy.settings.image_processing_settings else None) \
            == (original.settings.image_processing_settings.augmentation_methods if original.settings.image_processing_settings else None)

        def tags(trainer: CustomVisionTrainingClient, project_id: str) -> dict[str, tuple[str, str, int]]:
            return {tag.name: (tag.description or "", tag.type, tag.image_count) for tag in trainer.get_tags(project_id)}

        assert tags(target_trainer, copy.id) == tags(source_trainer, original.id)
        assert differences(contents(source_trainer, original.id), contents(target_trainer, copy.id)) == []
        assert target_trainer.get_image_count(copy.id) == source_trainer.get_image_count(original.id)


def test_migrate_copies_projects_tags_images_regions_and_metadata(source: Source, target: Account, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state.sqlite3"
    code, report = migrate(source.account, target, capsys, state)
    assert code == 0, report
    totals = report["totals"]
    assert totals["projects"] == {"copied": 3, "failed": 0}
    assert totals["images"] == {"copied": 25 + 15 + 40, "skipped": 0, "failed": 0}
    assert totals["regions"] == {"copied": 41}
    assert totals["tags"] == {"copied": 3 + 3 + 2, "skipped": 0}
    assert_copied_whole(source.account, target, list(source.projects))

    # A second run copies nothing and duplicates nothing.
    code, again = migrate(source.account, target, capsys, state)
    assert code == 0, again
    assert again["totals"]["images"] == {"copied": 0, "skipped": 80, "failed": 0}
    assert again["totals"]["tags"] == {"copied": 0, "skipped": 8}
    assert again["totals"]["regions"] == {"copied": 0}
    assert_copied_whole(source.account, target, list(source.projects))


def test_rerun_after_copies_were_deleted_or_the_state_file_was_lost(source: Source, target: Account, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state.sqlite3"
    assert migrate(source.account, target, capsys, state)[0] == 0
    copy = next(p for p in target.trainer.get_projects() if p.name == "fork and scissors")
    doomed = [image.id for image in target.trainer.get_images(copy.id, take=2)]
    target.trainer.delete_images(copy.id, image_ids=doomed)

    code, report = migrate(source.account, target, capsys, state)
    assert code == 0, report
    assert report["totals"]["images"] == {"copied": 2, "skipped": 78, "failed": 0}

    lost = tmp_path / "another.sqlite3"
    code, refused = migrate(source.account, target, capsys, lost)
    assert code == 1 and all("--adopt-existing" in project["error"] for project in refused["projects"])
    code, adopted = migrate(source.account, target, capsys, lost, "--adopt-existing")
    assert code == 0, adopted
    assert adopted["totals"]["images"] == {"copied": 0, "skipped": 80, "failed": 0}
    assert_copied_whole(source.account, target, list(source.projects))


def _path(path: str) -> str:
    return path.split("?", 1)[0].rstrip("/").lower()


def _killed_when_held(command: list[str], proxy: Proxy) -> None:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert proxy.held.wait(timeout=120), "the migration never reached the request it was to die in"
    finally:
        os.kill(process.pid, signal.SIGKILL)
        output = process.communicate(timeout=30)[0].decode(errors="replace")
    assert process.returncode == -signal.SIGKILL, output


def test_kill_9_half_way_then_rerun_copies_exactly_once(source: Source, target: Account, tmp_path: Path) -> None:
    state = tmp_path / "migration.sqlite3"

    def command(to_endpoint: str) -> list[str]:
        return [sys.executable, "-m", "opencustomvision.cli",
                *arguments(source.account, Account(to_endpoint, target.training_key), state), "--json"]

    def holding(path_suffix: str, nth: int):  # type: ignore[no-untyped-def]
        seen = []

        def rule(number: int, method: str, path: str) -> Any:
            if method == "POST" and _path(path).endswith(path_suffix):
                seen.append(number)
                if len(seen) == nth:
                    return HOLD
            return FORWARD
        return rule

    # Killed while the target has created the second project, before its answer arrives.
    with Proxy(target.endpoint, holding("/training/projects", 2)) as proxy:
        _killed_when_held(command(proxy.endpoint), proxy)
    assert len(target.trainer.get_projects()) == 2
    # Killed while the target has stored an image batch, before its answer arrives.
    with Proxy(target.endpoint, holding("/images/files", 2)) as proxy:
        _killed_when_held(command(proxy.endpoint), proxy)
    assert len(target.trainer.get_projects()) == 3

    finished = subprocess.run(command(target.endpoint), capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    report = json.loads(finished.stdout)
    images = report["totals"]["images"]
    assert images["failed"] == 0 and images["copied"] + images["skipped"] == 80
    # The batch stored but never acknowledged was found again (OKDuplicate), not stored twice.
    assert images["skipped"] > 25 + 15
    assert_copied_whole(source.account, target, list(source.projects))


def test_source_answering_429_and_503_now_and_then_still_migrates_everything(
        source: Source, target: Account, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def rule(number: int, method: str, path: str) -> Any:
        if number % 3 == 0:
            return 429, {"Retry-After": "0"}
        if number % 10 == 0:
            return 503, {}
        if number % 17 == 0:
            return DROP
        return FORWARD

    with Proxy(source.account.endpoint, rule) as proxy:
        flaky = Account(proxy.endpoint, source.account.training_key)
        code, report = migrate(flaky, target, capsys, tmp_path / "state.sqlite3")
        assert code == 0, report
        assert proxy.answered[429] >= 20 and proxy.answered[503] >= 3, proxy.answered
        assert report["retries"] >= proxy.answered[429] + proxy.answered[503]
    assert report["totals"]["images"] == {"copied": 80, "skipped": 0, "failed": 0}
    assert_copied_whole(source.account, target, list(source.projects))


def test_a_source_image_that_is_gone_is_reported_not_fatal(live_server: LiveServer, target: Account, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    account = new_account(live_server.settings, live_server.endpoint)
    trainer = account.trainer
    project = trainer.create_project("three hemlocks")
    tag = trainer.create_tag(project.id, "Hemlock")
    paths = sorted(shared_data("customvision-samples", "ImageClassification", "Images", "Hemlock").glob("*.jpg"))[:3]
    image_ids = _upload(trainer, project.id, _files(paths, [tag.id]))
    gone = image_ids[1]
    (live_server.settings.blob_dir / "projects" / project.id / "images" / gone / "original").unlink()

    state = tmp_path / "state.sqlite3"
    code, report = migrate(account, target, capsys, state)
    assert code == 1
    [copied] = report["projects"]
    assert copied["images"] == {"total": 3, "copied": 2, "skipped": 0, "failed": 1}
    [failure] = copied["failures"]
    assert failure["image"] == gone and failure["status"] == "ErrorSource" and "404" in failure["message"]
    # The plain report names it too; a rerun retries only that image.
    code = main(arguments(account, target, state))
    assert code == 1
    assert f"image {gone}: ErrorSource" in capsys.readouterr().out
    assert target.trainer.get_image_count(target.trainer.get_projects()[0].id) == 2


def test_train_trains_each_copied_project(live_server: LiveServer, target_server: tuple[Settings, str], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    # This way round the training runs on the session's server, whose backbone is already exported;
    # 128 px flowers keep it short.
    source = new_account(*target_server)
    trainer = source.trainer
    project = trainer.create_project("small flowers")
    flowers = shared_data("cls_flowers5_128px")
    for name in ("daisy", "rose"):
        tag = trainer.create_tag(project.id, name)
        _upload(trainer, project.id, _files(sorted((flowers / name).glob("*.jpg"))[:5], [tag.id]))
    target = new_account(live_server.settings, live_server.endpoint)
    state = tmp_path / "state.sqlite3"
    code, report = migrate(source, target, capsys, state, "--train")
    assert code == 0, report
    [copied] = report["projects"]
    assert copied["training"]["status"] == "Completed"
    [iteration] = target.trainer.get_iterations(copied["targetId"])
    assert iteration.id == copied["training"]["iterationId"] and iteration.status == "Completed"
    # Nothing changed since: a second run does not train again.
    code, again = migrate(source, target, capsys, state, "--train")
    assert code == 0, again
    assert again["projects"][0]["training"]["status"] == "NotNeeded"
    assert len(target.trainer.get_iterations(copied["targetId"])) == 1


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as missing:
        main(["migrate", "--from-training-key", "k"])
    assert missing.value.code == 2
    assert main(["migrate", "--from-endpoint", "ftp://example", "--from-training-key", "k",
                 "--to-endpoint", "http://127.0.0.1:1", "--to-training-key", "k"]) == 2
    assert "not an http(s) URL" in capsys.readouterr().err
