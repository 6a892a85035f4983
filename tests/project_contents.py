"""What a project holds, read through the official SDK, for comparing two projects field by field."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import httpx
from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
from msrest.authentication import ApiKeyCredentials

BOX_TOLERANCE = 1e-6  # of the image's size: the bar for a lossless round trip

BoxValues = tuple[str, float, float, float, float]  # tag name, left, top, width, height


def trainer_for(endpoint: str, training_key: str) -> CustomVisionTrainingClient:
    return CustomVisionTrainingClient(endpoint, ApiKeyCredentials(in_headers={"Training-key": training_key}))


@dataclass(frozen=True)
class StoredImage:
    sha256: str
    width: int
    height: int
    tags: frozenset[str]
    boxes: tuple[BoxValues, ...]  # sorted
    metadata: tuple[tuple[str, str], ...]


def contents(trainer: CustomVisionTrainingClient, project_id: str, iteration_id: str | None = None) -> dict[str, StoredImage]:
    """Every image of the project by the SHA-256 of its original bytes (downloaded from originalImageUri)."""
    found: dict[str, StoredImage] = {}
    skip = 0
    with httpx.Client(timeout=60) as http:
        while True:
            page = trainer.get_images(project_id, iteration_id=iteration_id, take=256, skip=skip)
            for image in page:
                original = http.get(image.original_image_uri)
                assert original.status_code == 200, image.original_image_uri
                digest = hashlib.sha256(original.content).hexdigest()
                assert digest not in found, f"two images of {project_id} hold the same bytes"
                found[digest] = StoredImage(
                    sha256=digest, width=image.width, height=image.height,
                    tags=frozenset(tag.tag_name for tag in image.tags or []),
                    boxes=tuple(sorted((r.tag_name, r.left, r.top, r.width, r.height) for r in image.regions or [])),
                    metadata=tuple(sorted((image.metadata or {}).items())),
                )
            if len(page) < 256:
                return found
            skip += len(page)


def same_boxes(left: tuple[BoxValues, ...], right: tuple[BoxValues, ...]) -> bool:
    """Each box of one matched by its own box of the other: same tag, coordinates within BOX_TOLERANCE."""
    unmatched = list(right)
    for box in left:
        match = next((other for other in unmatched if other[0] == box[0]
                      and all(abs(x - y) <= BOX_TOLERANCE for x, y in zip(box[1:], other[1:]))), None)
        if match is None:
            return False
        unmatched.remove(match)
    return not unmatched


def differences(expected: dict[str, StoredImage], actual: dict[str, StoredImage], *, metadata: bool = True) -> list[str]:
    """What differs between two projects' images, tags and boxes (empty when they are the same)."""
    problems = [f"missing image {digest[:12]}" for digest in expected.keys() - actual.keys()]
    problems += [f"extra image {digest[:12]}" for digest in actual.keys() - expected.keys()]
    for digest in expected.keys() & actual.keys():
        want, got = expected[digest], actual[digest]
        if (want.width, want.height) != (got.width, got.height):
            problems.append(f"{digest[:12]}: size {got.width}x{got.height}, expected {want.width}x{want.height}")
        if want.tags != got.tags:
            problems.append(f"{digest[:12]}: tags {sorted(got.tags)}, expected {sorted(want.tags)}")
        if not same_boxes(want.boxes, got.boxes):
            problems.append(f"{digest[:12]}: boxes {got.boxes}, expected {want.boxes}")
        if metadata and want.metadata != got.metadata:
            problems.append(f"{digest[:12]}: metadata {got.metadata}, expected {want.metadata}")
    return problems
