"""The relational schema. Alembic migrations in ``migrations/`` create and evolve it."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    LargeBinary,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_id() -> str:
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC: SQLite keeps no time zone, PostgreSQL would shift it."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware UTC datetime")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Uuid = String(36)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class ServiceSecret(Base):
    """Secrets every replica must share, such as the key that signs image URLs."""

    __tablename__ = "service_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


class Resource(Base):
    """An account: its keys see only its own projects."""

    __tablename__ = "resources"

    id: Mapped[str] = mapped_column(Uuid, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    training_key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prediction_key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prediction_resource_id: Mapped[str] = mapped_column(String(512), unique=True)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("resource_id", "name", name="uq_projects_resource_name"),)

    id: Mapped[str] = mapped_column(Uuid, primary_key=True, default=new_id)
    resource_id: Mapped[str] = mapped_column(ForeignKey("resources.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(256))
    description: Mapped[str] = mapped_column(Text, default="")
    domain_id: Mapped[str] = mapped_column(Uuid)
    classification_type: Mapped[str | None] = mapped_column(String(16))
    target_export_platforms: Mapped[list[str]] = mapped_column(JSON, default=list)
    use_negative_set: Mapped[bool] = mapped_column(Boolean, default=True)
    detection_parameters: Mapped[str | None] = mapped_column(String(256))
    augmentation_methods: Mapped[dict[str, bool] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="Succeeded")
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_modified: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The model type a Scenario client gave when it created this project (Scenario's "type"); None: "custom".
    scenario_type: Mapped[str | None] = mapped_column(String(64))

    tags: Mapped[list[Tag]] = relationship(back_populates="project", cascade="all, delete-orphan", passive_deletes=True)
    images: Mapped[list[Image]] = relationship(back_populates="project", cascade="all, delete-orphan", passive_deletes=True)


class Tag(Base):
    __tablename__ = "tags"
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_tags_project_name"),)

    id: Mapped[str] = mapped_column(Uuid, primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(256))
    description: Mapped[str] = mapped_column(Text, default="")
    type: Mapped[str] = mapped_column(String(16), default="Regular")
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    project: Mapped[Project] = relationship(back_populates="tags")


class Image(Base):
    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("project_id", "sha256", name="uq_images_project_sha256"),
        Index("ix_images_project_created", "project_id", "created"),
    )

    id: Mapped[str] = mapped_column(Uuid, primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(8))
    sha256: Mapped[str] = mapped_column(String(64))
    original_key: Mapped[str] = mapped_column(String(256))
    resized_key: Mapped[str] = mapped_column(String(256))
    thumbnail_key: Mapped[str] = mapped_column(String(256))

    project: Mapped[Project] = relationship(back_populates="images")
    tags: Mapped[list[ImageTag]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="ImageTag.created", lazy="selectin"
    )
    regions: Mapped[list[Region]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="Region.created", lazy="selectin"
    )
    metadata_entries: Mapped[list[ImageMetadata]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="ImageMetadata.key", lazy="selectin"
    )


class ImageTag(Base):
    __tablename__ = "image_tags"

    image_id: Mapped[str] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    tag_id: Mapped[str] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True, index=True)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    tag: Mapped[Tag] = relationship(lazy="joined")


class Region(Base):
    __tablename__ = "regions"

    id: Mapped[str] = mapped_column(Uuid, primary_key=True, default=new_id)
    image_id: Mapped[str] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    tag_id: Mapped[str] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"), index=True)
    left: Mapped[float] = mapped_column(Float)
    top: Mapped[float] = mapped_column(Float)
    width: Mapped[float] = mapped_column(Float)
    height: Mapped[float] = mapped_column(Float)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    tag: Mapped[Tag] = relationship(lazy="joined")


class ImageMetadata(Base):
    __tablename__ = "image_metadata"

    image_id: Mapped[str] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(256), primary_key=True)
    value: Mapped[str] = mapped_column(String(512))


class Iteration(Base):
    """One training run of a project: a snapshot of its images and tags, then a model and its honest metrics."""

    __tablename__ = "iterations"
    __table_args__ = (
        UniqueConstraint("project_id", "name", name="uq_iterations_project_name"),
        UniqueConstraint("project_id", "publish_name", name="uq_iterations_project_publish_name"),
        Index("ix_iterations_status_created", "status", "created"),
    )

    id: Mapped[str] = mapped_column(Uuid, primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(256))
    status: Mapped[str] = mapped_column(String(16), default="Training")
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_modified: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    trained_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    training_seconds: Mapped[float | None] = mapped_column(Float)
    domain_id: Mapped[str] = mapped_column(Uuid)
    classification_type: Mapped[str | None] = mapped_column(String(16))
    training_type: Mapped[str] = mapped_column(String(16), default="Regular")
    reserved_budget_in_hours: Mapped[int] = mapped_column(Integer, default=0)
    notification_email: Mapped[str | None] = mapped_column(String(320))
    selected_tag_ids: Mapped[list[str] | None] = mapped_column(JSON)
    training_fingerprint: Mapped[str] = mapped_column(String(64))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    model_key: Mapped[str | None] = mapped_column(String(256))
    backbone: Mapped[str | None] = mapped_column(String(64))
    publish_name: Mapped[str | None] = mapped_column(String(256))
    published_resource_id: Mapped[str | None] = mapped_column(ForeignKey("resources.id", ondelete="SET NULL"))
    original_publish_resource_id: Mapped[str | None] = mapped_column(String(512))


class IterationImage(Base):
    """An image as it was when an iteration trained on it, with its out-of-fold prediction."""

    __tablename__ = "iteration_images"

    iteration_id: Mapped[str] = mapped_column(ForeignKey("iterations.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[str] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True, index=True)
    tag_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    predictions: Mapped[dict[str, float] | None] = mapped_column(JSON)
    fold: Mapped[int | None] = mapped_column(Integer)
    # Object detection: [[tag_id, left, top, width, height], ...] trained on, and for a held-out image what
    # the model trained without it found: [[tag_id, probability, left, top, width, height], ...].
    regions: Mapped[list[list[str | float]] | None] = mapped_column(JSON)
    detections: Mapped[list[list[str | float]] | None] = mapped_column(JSON)


class ImageEmbedding(Base):
    """A backbone's embedding of an image, computed once and reused by every later training."""

    __tablename__ = "image_embeddings"

    image_id: Mapped[str] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    backbone: Mapped[str] = mapped_column(String(64), primary_key=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)


class StoredPrediction(Base):
    """A prediction kept for QueryPredictions: the image it was made on and what the model answered."""

    __tablename__ = "predictions"
    __table_args__ = (Index("ix_predictions_project_created", "project_id", "created"),)

    id: Mapped[str] = mapped_column(Uuid, primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    iteration_id: Mapped[str | None] = mapped_column(ForeignKey("iterations.id", ondelete="SET NULL"), index=True)
    domain_id: Mapped[str] = mapped_column(Uuid)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    application: Mapped[str | None] = mapped_column(String(64))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    original_key: Mapped[str] = mapped_column(String(256))
    resized_key: Mapped[str] = mapped_column(String(256))
    thumbnail_key: Mapped[str] = mapped_column(String(256))
    # [[tag id, probability], ...], most probable first.
    results: Mapped[list[list[Any]]] = mapped_column(JSON)


class Job(Base):
    """Work done in the background (a training, an export): queued, claimed by one worker, run, finished.

    The subject (an iteration, an export) keeps the state each API shows; the job is how the work gets done once:
    a worker claims it by a conditional update, keeps ``heartbeat_at`` fresh while it runs, and a job whose
    heartbeat went stale (its worker died) is queued again."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_created", "status", "created"),
        Index("ix_jobs_kind_subject", "kind", "subject_id"),
    )

    id: Mapped[str] = mapped_column(Uuid, primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str] = mapped_column(String(64))
    project_id: Mapped[str | None] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(128))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WorkerBeat(Base):
    """A worker's sign of life, refreshed by its loop: the health check reads it."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    started: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ScenarioKeyPair(Base):
    """A resource's Scenario API key and secret (HTTP Basic), kept only as hashes."""

    __tablename__ = "scenario_key_pairs"

    resource_id: Mapped[str] = mapped_column(ForeignKey("resources.id", ondelete="CASCADE"), primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ScenarioAsset(Base):
    """An image a Scenario client uploaded to its resource, not yet (or not only) a training image."""

    __tablename__ = "scenario_assets"
    __table_args__ = (Index("ix_scenario_assets_resource_created", "resource_id", "created"),)

    id: Mapped[str] = mapped_column(Uuid, primary_key=True, default=new_id)
    resource_id: Mapped[str] = mapped_column(ForeignKey("resources.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(256))
    description: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(8))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    original_key: Mapped[str] = mapped_column(String(256))
    resized_key: Mapped[str] = mapped_column(String(256))
    thumbnail_key: Mapped[str] = mapped_column(String(256))


class ScenarioAssetEmbedding(Base):
    """An asset's embedding by a backbone and that backbone's ImageNet label, made in the background after upload:
    an image made from the asset starts with them (same resized copy, same vector)."""

    __tablename__ = "scenario_asset_embeddings"

    asset_id: Mapped[str] = mapped_column(ForeignKey("scenario_assets.id", ondelete="CASCADE"), primary_key=True)
    backbone: Mapped[str] = mapped_column(String(64), primary_key=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    label: Mapped[str] = mapped_column(String(256))


class TrainingImageDetails(Base):
    """What a Scenario client said about a project image: its file name, its description, the asset it came from."""

    __tablename__ = "training_image_details"

    image_id: Mapped[str] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(256), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    source_asset_id: Mapped[str | None] = mapped_column(ForeignKey("scenario_assets.id", ondelete="SET NULL"), index=True)


class ImageCaption(Base):
    """An image's automatic caption, made when it arrived: from the project's own model, else from ImageNet."""

    __tablename__ = "image_captions"

    image_id: Mapped[str] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    text: Mapped[str] = mapped_column(String(512))
    # "imagenet:<backbone>" or "iteration:<iteration id>": what the label came from.
    source: Mapped[str] = mapped_column(String(128))
    preset: Mapped[str] = mapped_column(String(16), default="default")
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TrainingImagePair(Base):
    """Scenario's training image pairs: a source image, a target image and the instruction between them."""

    __tablename__ = "training_image_pairs"

    id: Mapped[str] = mapped_column(Uuid, primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    source_image_id: Mapped[str | None] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    target_image_id: Mapped[str | None] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    instruction: Mapped[str | None] = mapped_column(Text)


class Export(Base):
    """One export of an iteration to a platform and flavour: its package, once done, is a blob."""

    __tablename__ = "exports"
    __table_args__ = (Index("ix_exports_iteration_platform", "iteration_id", "platform", "flavor"),)

    id: Mapped[str] = mapped_column(Uuid, primary_key=True, default=new_id)
    iteration_id: Mapped[str] = mapped_column(ForeignKey("iterations.id", ondelete="CASCADE"))
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    platform: Mapped[str] = mapped_column(String(32))
    flavor: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="Exporting")
    exporter_version: Mapped[str] = mapped_column(String(16))
    package_key: Mapped[str | None] = mapped_column(String(256))
    package_bytes: Mapped[int | None] = mapped_column(Integer)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ProjectExportToken(Base):
    """A token from ExportProject: whoever holds it may import a copy of the project, until it expires.

    Only its SHA-256 is stored, as with keys."""

    __tablename__ = "project_export_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires: Mapped[datetime] = mapped_column(UTCDateTime)
