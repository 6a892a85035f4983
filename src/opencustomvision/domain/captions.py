"""Automatic captions: made once per image when it arrives, from the project's own model once it has one.

Where the label comes from is the rule kept here: the top tag of the project's latest trained classifier
(a Negative top tag says "none of my tags", so ImageNet names the picture instead), else the pretrained
backbone's ImageNet class. Computing labels is the labeler's (``captioning.Labeler``: ml/ underneath).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from opencustomvision.domain.catalog import DETECTION_BACKBONE, backbone_for, is_detection
from opencustomvision.domain.iterations import COMPLETED
from opencustomvision.storage.models import ImageCaption, Iteration, Project, Tag, utcnow
from opencustomvision.storage.upsert import insert_missing

Preset = Literal["default", "style", "subject"]
PRESETS: tuple[str, ...] = ("default", "style", "subject")
_VOWELS = tuple("aeiou")


class ImageLabeler(Protocol):
    def rank(self, session: Session, model_key: str, image_ids: list[str]) -> list[list[tuple[str, float]]]: ...

    def imagenet_labels(self, session: Session, backbone: str, image_ids: list[str]) -> list[str]: ...


def caption_for(label: str, preset: str = "default") -> str:
    """How a label reads: "a photo of a golden retriever"; ``subject`` training names the subject alone."""
    label = " ".join(label.split())
    if preset == "subject":
        return label
    return f"a photo of {'an' if label[:1].lower() in _VOWELS else 'a'} {label}"


def _trained_classifier(session: Session, project: Project) -> Iteration | None:
    if is_detection(project.domain_id):
        return None
    query = (select(Iteration).where(Iteration.project_id == project.id, Iteration.status == COMPLETED,
                                     Iteration.model_key.is_not(None))
             .order_by(Iteration.trained_at.desc()).limit(1))
    return session.scalars(query).first()


def stored_captions(session: Session, image_ids: Sequence[str]) -> dict[str, str]:
    if not image_ids:
        return {}
    rows = session.scalars(select(ImageCaption).where(ImageCaption.image_id.in_(list(image_ids))))
    return {row.image_id: row.text for row in rows}


def _labels(session: Session, labeler: ImageLabeler, project: Project, image_ids: list[str]) -> list[tuple[str, str]]:
    """(label, source) for each image."""
    found: dict[str, tuple[str, str]] = {}
    iteration = _trained_classifier(session, project)
    if iteration is not None and iteration.model_key is not None:
        tags = {tag.id: tag for tag in session.scalars(select(Tag).where(Tag.project_id == project.id))}
        for image_id, ranked in zip(image_ids, labeler.rank(session, iteration.model_key, image_ids)):
            top = tags.get(ranked[0][0]) if ranked else None
            if top is not None and top.type != "Negative":
                found[image_id] = (top.name, f"iteration:{iteration.id}")
    rest = [image_id for image_id in image_ids if image_id not in found]
    if rest:
        backbone = DETECTION_BACKBONE if is_detection(project.domain_id) else backbone_for(project.domain_id)
        for image_id, label in zip(rest, labeler.imagenet_labels(session, backbone, rest)):
            found[image_id] = (label, f"imagenet:{backbone}")
    return [found[image_id] for image_id in image_ids]


def ensure_captions(session: Session, labeler: ImageLabeler, project: Project, image_ids: Sequence[str],
                    *, preset: str = "default") -> dict[str, str]:
    """Every image's caption: those made before are kept, the missing ones are made now and stored."""
    captions = stored_captions(session, image_ids)
    missing = [image_id for image_id in dict.fromkeys(image_ids) if image_id not in captions]
    if not missing:
        return captions
    now = utcnow()
    rows = [{"image_id": image_id, "text": caption_for(label, preset)[:512], "source": source, "preset": preset, "created": now}
            for image_id, (label, source) in zip(missing, _labels(session, labeler, project, missing))]
    # The background captioner may have stored some meanwhile: the same label from the same model.
    insert_missing(session, ImageCaption, rows)
    session.commit()
    return stored_captions(session, image_ids)
