"""Scenario's request and response bodies, as its SDK (``scenario_sdk/types``) reads and writes them.

Only the fields this service fills are declared; absent optional fields are left out of answers.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class ScenarioModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True, alias_generator=to_camel, extra="ignore")


# ---------------------------------------------------------------------------------------------- requests


class ModelCreateBody(ScenarioModel):
    name: str | None = None
    short_description: str | None = None
    type: str | None = None


class ModelUpdateBody(ModelCreateBody):
    pass


class AssetUploadBody(ScenarioModel):
    name: str
    image: str | None = None
    canvas: str | None = None


class AssetUpdateBody(ScenarioModel):
    name: str | None = None
    description: str | None = None


class AssetDeleteBody(ScenarioModel):
    asset_ids: list[str]


class TrainingImageBody(ScenarioModel):
    asset_id: str | None = None
    asset_ids: list[str] | None = None
    data: str | None = None
    name: str | None = None
    preset: Literal["default", "style", "subject"] = "default"
    # Replace only: the user's description of the image (sent by the SDK through extra_body).
    description: str | None = None


class PairBody(ScenarioModel):
    instruction: str | None = None
    source_id: str | None = None
    target_id: str | None = None


class TrainBody(ScenarioModel):
    parameters: dict[str, Any] | None = None


class TrainActionBody(ScenarioModel):
    action: Literal["cancel"]


# ---------------------------------------------------------------------------------------------- answers


class TrainingImage(ScenarioModel):
    id: str
    automatic_captioning: str
    created_at: str
    description: str
    download_url: str
    name: str


class TrainingImagePair(ScenarioModel):
    instruction: str | None = None
    source_id: str | None = None
    target_id: str | None = None


class TrainingStats(ScenarioModel):
    started_at: str | None = None
    ended_at: str | None = None
    train_duration: float | None = None


class TrainingProgress(ScenarioModel):
    stage: Literal["pending", "queued-for-train", "running-train", "starting-train"]
    updated_at: float
    progress: float | None = None
    started_at: float | None = None


class Model(ScenarioModel):
    id: str
    capabilities: list[str]
    collection_ids: list[str] = Field(default_factory=list)
    created_at: str
    custom: bool
    example_asset_ids: list[str] = Field(default_factory=list)
    privacy: Literal["private"] = "private"
    source: Literal["other"] = "other"
    status: Literal["new", "training", "trained", "failed", "training-canceled"]
    tags: list[str] = Field(default_factory=list)
    training_images_number: int
    type: str
    updated_at: str
    name: str | None = None
    short_description: str | None = None
    owner_id: str | None = None
    job_id: str | None = None
    training_images: list[TrainingImage] | None = None
    training_image_pairs: list[TrainingImagePair] | None = None
    training_stats: TrainingStats | None = None
    training_progress: TrainingProgress | None = None


class AssetMetadata(ScenarioModel):
    kind: Literal["image"] = "image"
    type: Literal["uploaded"] = "uploaded"
    name: str | None = None
    width: int | None = None
    height: int | None = None
    size: int | None = None


class AssetProperties(ScenarioModel):
    size: int
    width: int
    height: int
    format: str


class AssetThumbnail(ScenarioModel):
    asset_id: str
    url: str


class Asset(ScenarioModel):
    id: str
    author_id: str
    collection_ids: list[str] = Field(default_factory=list)
    created_at: str
    edit_capabilities: list[str] = Field(default_factory=list)
    kind: Literal["image"] = "image"
    metadata: AssetMetadata
    mime_type: str
    owner_id: str
    privacy: Literal["private"] = "private"
    properties: AssetProperties
    source: Literal["uploaded"] = "uploaded"
    status: Literal["success"] = "success"
    tags: list[str] = Field(default_factory=list)
    updated_at: str
    url: str
    description: str | None = None
    # Made in the background after upload; absent until then.
    automatic_captioning: str | None = None
    thumbnail: AssetThumbnail | None = None


class JobStatusHistory(ScenarioModel):
    date: str
    status: Literal["queued", "in-progress", "success", "failure", "canceled"]


class JobMetadata(ScenarioModel):
    error: str | None = None
    output_model_id: str | None = None
    input: dict[str, Any] | None = None


class Job(ScenarioModel):
    job_id: str
    job_type: Literal["model-training"] = "model-training"
    created_at: str
    updated_at: str
    metadata: JobMetadata
    progress: float
    status: Literal["queued", "in-progress", "success", "failure", "canceled"]
    status_history: list[JobStatusHistory]
    owner_id: str | None = None
