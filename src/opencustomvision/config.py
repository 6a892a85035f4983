"""Settings read from the environment, with a working embedded default."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from opencustomvision.jobs.notify import SmtpSettings


def _allowlist(raw: str) -> frozenset[str]:
    return frozenset(entry.strip().lower() for entry in raw.split(",") if entry.strip())


def _smtp_from_env() -> SmtpSettings | None:
    host = os.environ.get("OCV_SMTP_HOST")
    if not host:
        return None
    return SmtpSettings(
        host=host,
        port=int(os.environ.get("OCV_SMTP_PORT", "25")),
        sender=os.environ.get("OCV_SMTP_FROM", "opencustomvision@localhost"),
        username=os.environ.get("OCV_SMTP_USER") or None,
        password=os.environ.get("OCV_SMTP_PASSWORD") or None,
        starttls=os.environ.get("OCV_SMTP_STARTTLS", "") in ("1", "true", "yes"),
    )


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    training_key: str | None = None
    prediction_key: str | None = None
    prediction_resource_id: str | None = None
    scenario_api_key: str | None = None
    scenario_api_secret: str | None = None
    url_allowlist: frozenset[str] = field(default_factory=frozenset)
    signed_url_ttl_seconds: int = 3600
    # 64 images of 6 MB, base64-encoded in a JSON batch, with room to spare.
    max_request_bytes: int = 600 * 1024 * 1024
    smtp: SmtpSettings | None = None
    # The most an Advanced training may spend (reservedBudgetInHours can only lower it); 0 turns Advanced
    # training off: it measured below Regular on bench/accuracy.py (docs/models.md), so it is opt-in.
    advanced_training_max_seconds: float = 0.0
    # A request body that goes quiet this long, or arrives slower than this (after 30 s), is cut off with 408.
    body_idle_timeout_seconds: float = 15.0
    body_min_bytes_per_second: float = 16384.0
    # Pixels decoded at once across the process, and how long a request waits for room before a 503.
    decode_budget_pixels: int = 200_000_000
    decode_wait_seconds: float = 30.0
    # Blobs no row points at are removed once this old (an upload under way in another process is younger).
    orphan_blob_grace_seconds: float = 3600.0

    @classmethod
    def from_env(cls, data_dir: str | Path | None = None) -> "Settings":
        directory = Path(data_dir or os.environ.get("OCV_DATA_DIR") or "./ocv-data").resolve()
        database_url = os.environ.get("OCV_DATABASE_URL") or f"sqlite:///{directory / 'ocv.sqlite3'}"
        return cls(
            data_dir=directory,
            database_url=database_url,
            training_key=os.environ.get("OCV_TRAINING_KEY") or None,
            prediction_key=os.environ.get("OCV_PREDICTION_KEY") or None,
            prediction_resource_id=os.environ.get("OCV_PREDICTION_RESOURCE_ID") or None,
            scenario_api_key=os.environ.get("OCV_SCENARIO_API_KEY") or None,
            scenario_api_secret=os.environ.get("OCV_SCENARIO_API_SECRET") or None,
            url_allowlist=_allowlist(os.environ.get("OCV_URL_ALLOWLIST", "")),
            signed_url_ttl_seconds=int(os.environ.get("OCV_SIGNED_URL_TTL_SECONDS", "3600")),
            max_request_bytes=int(os.environ.get("OCV_MAX_REQUEST_BYTES", str(600 * 1024 * 1024))),
            smtp=_smtp_from_env(),
            advanced_training_max_seconds=60 * float(os.environ.get("OCV_ADVANCED_TRAINING_MAX_MINUTES", "0")),
            body_idle_timeout_seconds=float(os.environ.get("OCV_BODY_IDLE_TIMEOUT_SECONDS", "15")),
            body_min_bytes_per_second=float(os.environ.get("OCV_BODY_MIN_BYTES_PER_SECOND", "16384")),
            decode_budget_pixels=int(float(os.environ.get("OCV_DECODE_BUDGET_MEGAPIXELS", "200")) * 1_000_000),
            decode_wait_seconds=float(os.environ.get("OCV_DECODE_WAIT_SECONDS", "30")),
            orphan_blob_grace_seconds=float(os.environ.get("OCV_ORPHAN_BLOB_GRACE_SECONDS", "3600")),
        )

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"
