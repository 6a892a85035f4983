"""A small client of the Custom Vision Training API v3.3, for Azure and OpenCustomVision alike.

Only what moving data in and out needs. Every call goes over the public REST API; answers the
server may give under load (429, 5xx, a dropped connection) are retried with back-off, honouring
``Retry-After``. Validation stays the server's: its answers come back as :class:`ApiError` or as
per-image statuses, never second-guessed here.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, stop_after_delay, wait_exponential_jitter

from opencustomvision.domain.catalog import Domain  # the API's Domain has the catalogue's fields

API_PREFIX = "/customvision/v3.3/training"
MAX_TAKE = 256  # the API's largest page
MAX_BATCH_IMAGES = 64
MAX_ENTRY_TAGS = 20  # tag ids one image entry of a creation batch may carry
MAX_TAG_ENTRIES = 128  # image/tag pairs per CreateImageTags
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

__all__ = [
    "ApiError",
    "CustomVisionClient",
    "Domain",
    "Image",
    "ImageEntry",
    "ImageOutcome",
    "Iteration",
    "Project",
    "Region",
    "Tag",
]


class ApiError(Exception):
    """The server refused a request: its HTTP status and ``CustomVisionError`` code and message."""

    def __init__(self, status: int, code: str, message: str, *, method: str = "", url: str = "") -> None:
        super().__init__(f"{code}: {message}" if code else message)
        self.status = status
        self.code = code
        self.message = message
        self.method = method
        self.url = url


class _Transient(Exception):
    """An answer worth asking again (429, 5xx); carries the response for ``Retry-After``."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


@dataclass(frozen=True)
class Project:
    id: str
    name: str
    description: str
    domain_id: str
    classification_type: str | None
    target_export_platforms: tuple[str, ...]
    image_processing_settings: Mapping[str, Any] | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class Tag:
    id: str
    name: str
    description: str
    type: str
    image_count: int


@dataclass(frozen=True)
class Region:
    tag_id: str
    tag_name: str
    left: float
    top: float
    width: float
    height: float


@dataclass(frozen=True)
class Image:
    id: str
    width: int
    height: int
    original_image_uri: str
    tags: tuple[tuple[str, str], ...]  # (tag id, tag name)
    regions: tuple[Region, ...]
    metadata: Mapping[str, str]


@dataclass(frozen=True)
class Iteration:
    id: str
    name: str
    status: str


@dataclass
class ImageEntry:
    """One image of a CreateImagesFromFiles batch."""

    name: str
    contents: bytes
    tag_ids: Sequence[str] = ()
    regions: Sequence[tuple[str, float, float, float, float]] = ()  # (tag id, left, top, width, height)


@dataclass(frozen=True)
class ImageOutcome:
    """The server's answer for one image of a batch: its status and the stored image, if any."""

    status: str
    image: Image | None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _domain(body: Mapping[str, Any]) -> Domain:
    name = _text(body.get("name"))
    # Domain answers carry no "compact" field; Azure and this server both name their compact domains so.
    return Domain(id=str(body["id"]).lower(), name=name, type=_text(body.get("type")), compact="(compact)" in name,
                  enabled=body.get("enabled", True) is not False)


def _project(body: Mapping[str, Any]) -> Project:
    settings = body.get("settings") or {}
    return Project(
        id=str(body["id"]).lower(),
        name=_text(body.get("name")),
        description=_text(body.get("description")),
        domain_id=str(settings.get("domainId") or "").lower(),
        classification_type=settings.get("classificationType"),
        target_export_platforms=tuple(settings.get("targetExportPlatforms") or ()),
        image_processing_settings=settings.get("imageProcessingSettings"),
        raw=body,
    )


def _tag(body: Mapping[str, Any]) -> Tag:
    return Tag(id=str(body["id"]).lower(), name=_text(body.get("name")), description=_text(body.get("description")),
               type=_text(body.get("type")) or "Regular", image_count=int(body.get("imageCount") or 0))


def _image(body: Mapping[str, Any]) -> Image:
    return Image(
        id=str(body["id"]).lower(),
        width=int(body.get("width") or 0),
        height=int(body.get("height") or 0),
        original_image_uri=_text(body.get("originalImageUri")),
        tags=tuple((str(t["tagId"]).lower(), _text(t.get("tagName"))) for t in body.get("tags") or ()),
        regions=tuple(
            Region(tag_id=str(r["tagId"]).lower(), tag_name=_text(r.get("tagName")), left=float(r["left"]),
                   top=float(r["top"]), width=float(r["width"]), height=float(r["height"]))
            for r in body.get("regions") or ()
        ),
        metadata=dict(body.get("metadata") or {}),
    )


def _iteration(body: Mapping[str, Any]) -> Iteration:
    return Iteration(id=str(body["id"]).lower(), name=_text(body.get("name")), status=_text(body.get("status")))


def _retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - datetime.now(timezone.utc)).total_seconds())


def _refusal(response: httpx.Response) -> ApiError:
    code, message = "", response.text[:500]
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping):
        # CustomVisionError; Azure's gateway answers {"error": {"code", "message"}} for a bad key.
        error = body.get("error") if isinstance(body.get("error"), Mapping) else body
        code, message = _text(error.get("code")), _text(error.get("message")) or message
    request = response.request
    return ApiError(response.status_code, code, message, method=request.method, url=str(request.url))


class CustomVisionClient:
    """The Training API of one resource at ``endpoint``, reached with ``training_key``."""

    def __init__(
        self,
        endpoint: str,
        training_key: str,
        *,
        timeout: float = 120.0,
        max_attempts: int = 8,
        max_retry_seconds: float = 300.0,
        backoff_initial: float = 0.25,
        backoff_max: float = 30.0,
        http: httpx.Client | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.training_key = training_key
        self._http = http or httpx.Client(timeout=timeout, follow_redirects=False,
                                          limits=httpx.Limits(max_connections=32, max_keepalive_connections=16))
        self._backoff = wait_exponential_jitter(multiplier=backoff_initial, max=backoff_max, jitter=backoff_initial)
        self._stop = stop_after_attempt(max_attempts) | stop_after_delay(max_retry_seconds)
        self.retries = 0  # how many answers were asked again, for the report
        self._retries_lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CustomVisionClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------ transport

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, _Transient):
            after = _retry_after_seconds(error.response)
            if after is not None:
                return min(after, 120.0)
        return float(self._backoff(state))

    def _count_retry(self, state: RetryCallState) -> None:
        with self._retries_lock:
            self.retries += 1

    def _send(self, method: str, url: str, *, with_key: bool = True, **kwargs: Any) -> httpx.Response:
        headers = {"Training-Key": self.training_key} if with_key else {}
        retrying = Retrying(
            retry=retry_if_exception(lambda e: isinstance(e, (_Transient, httpx.TransportError))),
            wait=self._wait, stop=self._stop, before_sleep=self._count_retry, reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    response = self._http.request(method, url, headers=headers, **kwargs)
                    if response.status_code in RETRYABLE_STATUSES:
                        raise _Transient(response)
        except _Transient as exhausted:
            raise _refusal(exhausted.response) from None
        except httpx.TransportError as error:
            raise ApiError(0, "NetworkError", f"{type(error).__name__}: {error}", method=method, url=url) from error
        return response

    def _call(self, method: str, path: str, *, ok: Sequence[int] = (200,), **kwargs: Any) -> Any:
        response = self._send(method, f"{self.endpoint}{API_PREFIX}{path}", **kwargs)
        if response.status_code not in ok:
            raise _refusal(response)
        if not response.content:
            return None
        return response.json()

    # ------------------------------------------------------------------------------ domains, projects, tags

    def domains(self) -> list[Domain]:
        return [_domain(body) for body in self._call("GET", "/domains")]

    def domain(self, domain_id: str) -> Domain:
        return _domain(self._call("GET", f"/domains/{domain_id}"))

    def projects(self) -> list[Project]:
        return [_project(body) for body in self._call("GET", "/projects")]

    def project(self, project_id: str) -> Project:
        return _project(self._call("GET", f"/projects/{project_id}"))

    def create_project(self, name: str, *, description: str = "", domain_id: str | None = None,
                       classification_type: str | None = None, target_export_platforms: Sequence[str] = ()) -> Project:
        params: dict[str, str] = {"name": name}
        if description:
            params["description"] = description
        if domain_id:
            params["domainId"] = domain_id
        if classification_type:
            params["classificationType"] = classification_type
        if target_export_platforms:
            params["targetExportPlatforms"] = ",".join(target_export_platforms)
        return _project(self._call("POST", "/projects", params=params))

    def update_project(self, project_id: str, body: Mapping[str, Any]) -> Project:
        return _project(self._call("PATCH", f"/projects/{project_id}", json=body))

    def tags(self, project_id: str, *, iteration_id: str | None = None) -> list[Tag]:
        params = {"iterationId": iteration_id} if iteration_id else None
        return [_tag(body) for body in self._call("GET", f"/projects/{project_id}/tags", params=params)]

    def create_tag(self, project_id: str, name: str, *, description: str = "", tag_type: str = "Regular") -> Tag:
        params = {"name": name, "type": tag_type}
        if description:
            params["description"] = description
        return _tag(self._call("POST", f"/projects/{project_id}/tags", params=params))

    # ------------------------------------------------------------------------------ images

    def image_count(self, project_id: str, *, iteration_id: str | None = None) -> int:
        params = {"iterationId": iteration_id} if iteration_id else None
        return int(self._call("GET", f"/projects/{project_id}/images/count", params=params))

    def image_pages(self, project_id: str, *, iteration_id: str | None = None, take: int = MAX_TAKE) -> Iterator[list[Image]]:
        """Every image of the project, oldest first, one page of ``take`` at a time.

        Oldest first keeps the pages stable while images are added to the project."""
        skip = 0
        while True:
            params: dict[str, str | int] = {"take": take, "skip": skip, "orderBy": "Oldest"}
            if iteration_id:
                params["iterationId"] = iteration_id
            page = [_image(body) for body in self._call("GET", f"/projects/{project_id}/images", params=params)]
            if page:
                yield page
            if len(page) < take:
                return
            skip += len(page)

    def images_by_ids(self, project_id: str, image_ids: Sequence[str]) -> list[Image]:
        found: list[Image] = []
        for start in range(0, len(image_ids), MAX_TAKE):
            params = {"imageIds": ",".join(image_ids[start:start + MAX_TAKE])}
            found += [_image(body) for body in self._call("GET", f"/projects/{project_id}/images/id", params=params)]
        return found

    def original_bytes(self, project_id: str, image: Image) -> bytes:
        """The bytes as uploaded, from ``originalImageUri`` (resized copies are not originals).

        The link is fetched without the training key: on Azure it points at blob storage, another host.
        A relative link (Azure behind a VNET) is fetched through GetArtifact."""
        uri = image.original_image_uri
        if not uri:
            raise ApiError(404, "NotFound", "the image has no originalImageUri")
        if urlsplit(uri).scheme in ("http", "https"):
            response = self._send("GET", uri, with_key=False)
        else:
            response = self._send("GET", f"{self.endpoint}{API_PREFIX}/projects/{project_id}/artifacts",
                                  params={"path": uri})
        if response.status_code != 200:
            raise _refusal(response)
        return response.content

    def create_images_from_files(self, project_id: str, entries: Sequence[ImageEntry], *,
                                 metadata: Mapping[str, str] | None = None) -> list[ImageOutcome]:
        """One batch (at most 64); the server's status for each image, in order."""
        body: dict[str, Any] = {
            "images": [
                {
                    "name": entry.name,
                    "contents": base64.b64encode(entry.contents).decode("ascii"),
                    "tagIds": list(entry.tag_ids),
                    "regions": [{"tagId": t, "left": left, "top": top, "width": width, "height": height}
                                for t, left, top, width, height in entry.regions],
                }
                for entry in entries
            ],
        }
        if metadata:
            body["metadata"] = dict(metadata)
        answer = self._call("POST", f"/projects/{project_id}/images/files", ok=(200, 207), json=body)
        return [ImageOutcome(status=_text(result.get("status")),
                             image=_image(result["image"]) if result.get("image") else None)
                for result in answer.get("images") or ()]

    def create_image_tags(self, project_id: str, pairs: Sequence[tuple[str, str]]) -> None:
        for start in range(0, len(pairs), MAX_TAG_ENTRIES):
            chunk = pairs[start:start + MAX_TAG_ENTRIES]
            self._call("POST", f"/projects/{project_id}/images/tags",
                       json={"tags": [{"imageId": image_id, "tagId": tag_id} for image_id, tag_id in chunk]})

    def create_image_regions(self, project_id: str, regions: Sequence[tuple[str, str, float, float, float, float]]) -> None:
        """(image id, tag id, left, top, width, height); the server skips a box the image already has."""
        for start in range(0, len(regions), MAX_BATCH_IMAGES):
            chunk = regions[start:start + MAX_BATCH_IMAGES]
            self._call("POST", f"/projects/{project_id}/images/regions", ok=(200, 207), json={"regions": [
                {"imageId": image_id, "tagId": tag_id, "left": left, "top": top, "width": width, "height": height}
                for image_id, tag_id, left, top, width, height in chunk
            ]})

    def update_image_metadata(self, project_id: str, image_ids: Sequence[str], metadata: Mapping[str, str]) -> None:
        self._call("POST", f"/projects/{project_id}/images/metadata", ok=(200, 207),
                   params={"imageIds": ",".join(image_ids)}, json=dict(metadata))

    # ------------------------------------------------------------------------------ training

    def train(self, project_id: str) -> Iteration:
        return _iteration(self._call("POST", f"/projects/{project_id}/train"))

    def iterations(self, project_id: str) -> list[Iteration]:
        return [_iteration(body) for body in self._call("GET", f"/projects/{project_id}/iterations")]

    def iteration(self, project_id: str, iteration_id: str) -> Iteration:
        return _iteration(self._call("GET", f"/projects/{project_id}/iterations/{iteration_id}"))

