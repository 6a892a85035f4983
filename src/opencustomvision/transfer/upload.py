"""Creating images in a project the way the server takes them, and reading what it answers.

Images go up through CreateImagesFromFiles in batches of at most 64 that share one metadata
dictionary (the API sets metadata per batch), with their tags and regions in the same request, so
each image lands whole or not at all. Every rule about what an image may be (size, format, boxes,
tag limits) is the server's: its per-image status is the verdict. ``OKDuplicate`` (the same bytes
are already in the project) is success; anything the stored copy lacks of what was asked is added.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from opencustomvision.transfer.client import MAX_BATCH_IMAGES, MAX_ENTRY_TAGS, ApiError, CustomVisionClient, Image, ImageEntry

Box = tuple[str, float, float, float, float]  # tag id, left, top, width, height (normalised)
_SAME_BOX = 1e-9
# Base64 makes a batch a third larger than its images; this keeps one request (and the memory the
# batches in flight hold) well under what servers accept.
MAX_BATCH_BYTES = 48 * 1024 * 1024
# Whole-batch refusals that one bad image can cause; the batch is then sent image by image.
_SPLITTABLE = frozenset({400, 413, 415})


class LoadError(Exception):
    """The bytes of an image could not be had (a missing file, a source image that is gone)."""


@dataclass(frozen=True)
class UploadItem:
    key: str  # the caller's id for the image (a source image id, a file path)
    label: str  # how messages name it
    load: Callable[[], bytes]
    tag_ids: tuple[str, ...] = ()
    regions: tuple[Box, ...] = ()
    metadata: tuple[tuple[str, str], ...] = ()  # sorted pairs: images with equal metadata share batches


@dataclass(frozen=True)
class UploadResult:
    item: UploadItem
    status: str  # "OK", "OKDuplicate", the server's error status or code, or "ErrorSource"
    image_id: str | None = None
    message: str = ""
    regions_added: int = 0

    @property
    def stored(self) -> bool:
        return self.image_id is not None


@dataclass
class Tally:
    """What uploads into one project came to."""

    stored: int = 0  # images the server stored now
    present: int = 0  # images it already held (OKDuplicate, or known to be there before)
    regions: int = 0  # regions stored now
    failed: list[UploadResult] = field(default_factory=list)

    def add(self, results: list[UploadResult]) -> list[UploadResult]:
        """Count a batch's results; those that failed."""
        refused = []
        for result in results:
            self.regions += result.regions_added
            if result.status == "OK":
                self.stored += 1
            elif result.stored:
                self.present += 1
            else:
                refused.append(result)
        self.failed += refused
        return refused

    def failures(self, key: str) -> list[dict[str, str]]:
        return [{key: result.item.key, "status": result.status, "message": result.message} for result in self.failed]


def metadata_key(metadata: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(metadata.items()))


class Uploader:
    """Uploads items to one project, ``batches_in_flight`` batches at a time (each loaded, then sent)."""

    def __init__(self, client: CustomVisionClient, project_id: str, *, batches_in_flight: int = 2,
                 load_workers: int = 8, max_batch_bytes: int = MAX_BATCH_BYTES) -> None:
        self.client = client
        self.project_id = project_id
        self.batches_in_flight = batches_in_flight
        self.load_workers = load_workers
        self.max_batch_bytes = max_batch_bytes

    def run(self, items: Iterable[UploadItem]) -> Iterator[list[UploadResult]]:
        """The results of each batch, as batches finish (not in input order)."""
        with ThreadPoolExecutor(self.load_workers, thread_name_prefix="load") as loads, \
                ThreadPoolExecutor(self.batches_in_flight, thread_name_prefix="upload") as uploads:
            pending: set[Future[list[UploadResult]]] = set()
            for batch in _batches(items):
                pending.add(uploads.submit(self._copy, batch, loads))
                # Each worker loads its batch, then sends it: while one batch is being sent the other loads.
                # One more waits in the queue, so that a worker that finishes starts on the next at once.
                while len(pending) > self.batches_in_flight:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        yield future.result()
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()

    # ------------------------------------------------------------------------------ one batch

    def _copy(self, batch: list[UploadItem], loads: ThreadPoolExecutor) -> list[UploadResult]:
        results: list[UploadResult] = []
        chunk: list[tuple[UploadItem, bytes]] = []
        chunk_bytes = 0
        for item, data in zip(batch, loads.map(_load, batch)):
            if isinstance(data, LoadError):
                results.append(UploadResult(item, "ErrorSource", message=str(data)))
                continue
            if chunk and chunk_bytes + len(data) > self.max_batch_bytes:
                results += self._send(chunk)
                chunk, chunk_bytes = [], 0
            chunk.append((item, data))
            chunk_bytes += len(data)
        if chunk:
            results += self._send(chunk)
        return results

    def _send(self, chunk: list[tuple[UploadItem, bytes]], *, retrying: bool = False) -> list[UploadResult]:
        entries = [ImageEntry(name=item.label, contents=data, tag_ids=item.tag_ids[:MAX_ENTRY_TAGS], regions=item.regions)
                   for item, data in chunk]
        try:
            outcomes = self.client.create_images_from_files(self.project_id, entries, metadata=dict(chunk[0][0].metadata))
        except ApiError as error:
            if error.status in _SPLITTABLE and len(chunk) > 1:
                return [result for one in chunk for result in self._send([one])]
            if error.status in _SPLITTABLE or error.status == 0 or error.status >= 500:
                return [UploadResult(item, error.code or f"HTTP{error.status}", message=error.message) for item, _ in chunk]
            raise  # a wrong key, a project gone: nothing else of this run can succeed either
        if len(outcomes) != len(chunk):
            message = f"the server answered {len(outcomes)} statuses for {len(chunk)} images"
            return [UploadResult(item, "ErrorUnknown", message=message) for item, _ in chunk]
        results: list[UploadResult] = []
        for (item, data), outcome in zip(chunk, outcomes):
            if outcome.status in ("OK", "OKDuplicate") and outcome.image is not None:
                results.append(self._complete(item, outcome.status, outcome.image))
            elif outcome.status == "ErrorStorage" and not retrying:
                # A storage hiccup, or a concurrent upload of the same bytes: once more, on its own.
                results += self._send([(item, data)], retrying=True)
            else:
                results.append(UploadResult(item, outcome.status or "ErrorUnknown", message=_status_message(outcome.status)))
        return results

    def _complete(self, item: UploadItem, status: str, image: Image) -> UploadResult:
        """Add what the stored image lacks: tags past the 20 one entry carries, and for a duplicate
        whatever it was stored without."""
        have_tags = {tag_id for tag_id, _ in image.tags}
        missing_regions = [box for box in item.regions if not any(_same_box(box, region) for region in
                                                                   ((r.tag_id, r.left, r.top, r.width, r.height) for r in image.regions))]
        region_tags = {box[0] for box in missing_regions}
        missing_tags = [tag_id for tag_id in item.tag_ids if tag_id not in have_tags and tag_id not in region_tags]
        missing_metadata = {key: value for key, value in item.metadata if image.metadata.get(key) != value}
        regions_added = len(item.regions) if status == "OK" else 0
        try:
            if missing_regions and status != "OK":
                self.client.create_image_regions(self.project_id, [(image.id, *box) for box in missing_regions])
                regions_added = len(missing_regions)
            if missing_tags:
                self.client.create_image_tags(self.project_id, [(image.id, tag_id) for tag_id in missing_tags])
            if missing_metadata:
                self.client.update_image_metadata(self.project_id, [image.id], missing_metadata)
        except ApiError as error:
            return UploadResult(item, error.code or f"HTTP{error.status}", image_id=None,
                                message=f"stored as {image.id}, but adding its tags, regions or metadata failed: {error.message}")
        return UploadResult(item, status, image_id=image.id, regions_added=regions_added)


def _load(item: UploadItem) -> bytes | LoadError:
    try:
        return item.load()
    except LoadError as error:
        return error
    except ApiError as error:
        return LoadError(f"HTTP {error.status} {error.code}: {error.message}".strip())
    except OSError as error:
        return LoadError(f"{type(error).__name__}: {error.strerror or error}")


def _batches(items: Iterable[UploadItem]) -> Iterator[list[UploadItem]]:
    waiting: dict[tuple[tuple[str, str], ...], list[UploadItem]] = defaultdict(list)
    for item in items:
        group = waiting[item.metadata]
        group.append(item)
        if len(group) == MAX_BATCH_IMAGES:
            yield waiting.pop(item.metadata)
    yield from waiting.values()


def _same_box(wanted: Box, stored: Box) -> bool:
    return wanted[0] == stored[0] and all(abs(a - b) <= _SAME_BOX for a, b in zip(wanted[1:], stored[1:]))


_STATUS_MESSAGES = {
    "ErrorSource": "the image could not be read",
    "ErrorImageFormat": "not a JPEG, PNG, BMP or GIF the server can decode",
    "ErrorImageSize": "too large (more than 6 MB, or a side too long)",
    "ErrorStorage": "the server could not store it",
    "ErrorLimitExceed": "the project holds as many images as it may",
    "ErrorTagLimitExceed": "too many tags on one image",
    "ErrorRegionLimitExceed": "too many regions on one image",
    "ErrorNegativeAndRegularTagOnSameImage": "the Negative tag and a regular tag on one image",
}


def _status_message(status: str) -> str:
    return _STATUS_MESSAGES.get(status, "refused by the server")
