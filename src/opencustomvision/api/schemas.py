"""Request and response bodies, written by hand from the Training spec (v3.3), with its exact names.

Class names are the spec's definition names: the XML codec uses them as element names.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import Base64Bytes, BaseModel, ConfigDict, Field, RootModel
from pydantic.alias_generators import to_camel


class CamelModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True, alias_generator=to_camel, extra="ignore")


class CustomVisionError(CamelModel):
    code: str
    message: str


class Domain(CamelModel):
    id: UUID
    name: str
    type: Literal["Classification", "ObjectDetection"]
    exportable: bool
    enabled: bool


class ImageProcessingSettings(CamelModel):
    augmentation_methods: dict[str, bool] | None = None


class ProjectSettings(CamelModel):
    domain_id: UUID | None = None
    classification_type: Literal["Multiclass", "Multilabel"] | None = None
    target_export_platforms: list[Literal["CoreML", "TensorFlow", "DockerFile", "ONNX", "VAIDK"]] | None = None
    use_negative_set: bool | None = None
    detection_parameters: str | None = None
    image_processing_settings: ImageProcessingSettings | None = None


class Project(CamelModel):
    id: UUID | None = None
    name: str | None = None
    description: str | None = None
    settings: ProjectSettings | None = None
    created: datetime | None = None
    last_modified: datetime | None = None
    thumbnail_uri: str | None = None
    dr_mode_enabled: bool | None = Field(default=None, alias="drModeEnabled")
    status: Literal["Succeeded", "Importing", "Failed"] | None = None


class Tag(CamelModel):
    id: UUID | None = None
    name: str | None = None
    description: str | None = None
    type: Literal["Regular", "Negative", "GeneralProduct"] | None = None
    image_count: int | None = None


class ImageTag(CamelModel):
    tag_id: UUID
    tag_name: str
    created: datetime


class ImageRegion(CamelModel):
    region_id: UUID
    tag_name: str
    created: datetime
    tag_id: UUID
    left: float
    top: float
    width: float
    height: float


class Image(CamelModel):
    id: UUID
    created: datetime
    width: int
    height: int
    resized_image_uri: str
    thumbnail_uri: str
    original_image_uri: str
    tags: list[ImageTag] | None = None
    regions: list[ImageRegion] | None = None
    metadata: dict[str, str] | None = None


class ImageCreateResult(CamelModel):
    source_url: str | None = None
    status: str
    image: Image | None = None


class ImageCreateSummary(CamelModel):
    is_batch_successful: bool
    images: list[ImageCreateResult]


class Region(CamelModel):
    tag_id: UUID
    left: float
    top: float
    width: float
    height: float


class ImageFileCreateEntry(CamelModel):
    name: str | None = None
    contents: Base64Bytes | None = None
    tag_ids: list[UUID] | None = None
    regions: list[Region] | None = None


class ImageFileCreateBatch(CamelModel):
    images: list[ImageFileCreateEntry] | None = None
    tag_ids: list[UUID] | None = None
    metadata: dict[str, str] | None = None


class ImageUrlCreateEntry(CamelModel):
    url: str
    tag_ids: list[UUID] | None = None
    regions: list[Region] | None = None


class ImageUrlCreateBatch(CamelModel):
    images: list[ImageUrlCreateEntry] | None = None
    tag_ids: list[UUID] | None = None
    metadata: dict[str, str] | None = None


class ImageTagCreateEntry(CamelModel):
    image_id: UUID
    tag_id: UUID


class ImageTagCreateBatch(CamelModel):
    tags: list[ImageTagCreateEntry] | None = None


class ImageTagCreateSummary(CamelModel):
    created: list[ImageTagCreateEntry]
    duplicated: list[ImageTagCreateEntry]
    exceeded: list[ImageTagCreateEntry]


class ImageRegionCreateEntry(CamelModel):
    image_id: UUID
    tag_id: UUID
    left: float
    top: float
    width: float
    height: float


class ImageRegionCreateBatch(CamelModel):
    regions: list[ImageRegionCreateEntry] | None = None


class ImageRegionCreateResult(CamelModel):
    image_id: UUID
    region_id: UUID
    tag_name: str
    created: datetime
    tag_id: UUID
    left: float
    top: float
    width: float
    height: float


class ImageRegionCreateSummary(CamelModel):
    created: list[ImageRegionCreateResult]
    duplicated: list[ImageRegionCreateEntry]
    exceeded: list[ImageRegionCreateEntry]


class ImageMetadataUpdateEntry(CamelModel):
    image_id: UUID
    status: Literal["OK", "ErrorImageNotFound", "ErrorLimitExceed", "ErrorUnknown"]
    metadata: dict[str, str] | None = None


class ImageMetadataUpdateSummary(CamelModel):
    is_batch_successful: bool
    images: list[ImageMetadataUpdateEntry]


class ImageMetadataBody(RootModel[dict[str, str]]):
    """UpdateImageMetadata's body: the spec gives it no model name, only key-value pairs."""


class RegionProposal(CamelModel):
    confidence: float
    bounding_box: BoundingBox


class ImageRegionProposal(CamelModel):
    project_id: UUID
    image_id: UUID
    proposals: list[RegionProposal]


class ImageUrl(CamelModel):
    url: str


class BoundingBox(CamelModel):
    left: float
    top: float
    width: float
    height: float


class Prediction(CamelModel):
    probability: float
    tag_id: UUID
    tag_name: str | None = None
    bounding_box: BoundingBox | None = None
    tag_type: Literal["Regular", "Negative", "GeneralProduct"] | None = None


class ImagePrediction(CamelModel):
    id: UUID
    project: UUID
    iteration: UUID
    created: datetime
    predictions: list[Prediction]


class TrainingParameters(CamelModel):
    selected_tags: list[UUID] | None = None


class Iteration(CamelModel):
    id: UUID | None = None
    name: str | None = None
    status: str | None = None
    created: datetime | None = None
    last_modified: datetime | None = None
    trained_at: datetime | None = None
    project_id: UUID | None = None
    exportable: bool | None = None
    exportable_to: list[str] | None = None
    domain_id: UUID | None = None
    classification_type: Literal["Multiclass", "Multilabel"] | None = None
    training_type: Literal["Regular", "Advanced"] | None = None
    reserved_budget_in_hours: int | None = None
    training_time_in_minutes: int | None = None
    publish_name: str | None = None
    original_publish_resource_id: str | None = None


class Export(CamelModel):
    platform: str
    status: Literal["Exporting", "Failed", "Done"]
    download_uri: str | None = None
    flavor: str | None = None
    newer_version_available: bool = False


class ProjectExport(CamelModel):
    iteration_count: int
    image_count: int
    tag_count: int
    region_count: int
    # The spec spells it with "MS" capitalised, which camel-casing would not produce.
    estimated_import_time_in_ms: int = Field(alias="estimatedImportTimeInMS")
    token: str


class TagPerformance(CamelModel):
    id: UUID
    name: str
    precision: float
    precision_std_deviation: float
    recall: float
    recall_std_deviation: float
    average_precision: float


class IterationPerformance(CamelModel):
    per_tag_performance: list[TagPerformance]
    precision: float
    precision_std_deviation: float
    recall: float
    recall_std_deviation: float
    average_precision: float


class ImagePerformance(CamelModel):
    predictions: list[Prediction]
    id: UUID
    created: datetime
    width: int
    height: int
    image_uri: str
    thumbnail_uri: str
    tags: list[ImageTag] | None = None
    regions: list[ImageRegion] | None = None


class StoredImagePrediction(CamelModel):
    resized_image_uri: str
    thumbnail_uri: str
    original_image_uri: str
    domain: UUID
    id: UUID
    project: UUID
    iteration: UUID | None = None
    created: datetime
    predictions: list[Prediction]


class PredictionQueryTag(CamelModel):
    id: UUID
    min_threshold: float = 0.0
    max_threshold: float = 1.0


class PredictionQueryToken(CamelModel):
    session: str | None = None
    continuation: str | None = None
    max_count: int | None = None
    order_by: Literal["Newest", "Oldest", "Suggested"] | None = None
    tags: list[PredictionQueryTag] | None = None
    iteration_id: UUID | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    application: str | None = None


class PredictionQueryResult(CamelModel):
    token: PredictionQueryToken | None = None
    results: list[StoredImagePrediction]


class ImageIdCreateEntry(CamelModel):
    id: UUID
    tag_ids: list[UUID] | None = None
    regions: list[Region] | None = None


class ImageIdCreateBatch(CamelModel):
    images: list[ImageIdCreateEntry] | None = None
    tag_ids: list[UUID] | None = None
    metadata: dict[str, str] | None = None


class SuggestedTagAndRegion(CamelModel):
    id: UUID
    project: UUID
    iteration: UUID
    created: datetime
    predictions: list[Prediction]
    prediction_uncertainty: float


class StoredSuggestedTagAndRegion(SuggestedTagAndRegion):
    width: int
    height: int
    resized_image_uri: str
    thumbnail_uri: str
    original_image_uri: str
    domain: UUID


class SuggestedTagAndRegionQueryToken(CamelModel):
    tag_ids: list[UUID] | None = None
    threshold: float | None = None
    session: str | None = None
    continuation: str | None = None
    max_count: int | None = None
    sort_by: Literal["UncertaintyAscending", "UncertaintyDescending"] | None = None


class SuggestedTagAndRegionQuery(CamelModel):
    token: SuggestedTagAndRegionQueryToken | None = None
    results: list[StoredSuggestedTagAndRegion]


class TagFilter(CamelModel):
    tag_ids: list[UUID] | None = None
    threshold: float | None = None


class TagCounts(RootModel[dict[str, int]]):
    """QuerySuggestedImageCount's answer: images per tag id."""
