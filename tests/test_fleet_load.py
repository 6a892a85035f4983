"""The short version of bench/scale.py's upload load, on the fleet: concurrent clients uploading batches with
duplicates through nginx to both replicas; every image lands exactly once (count and SHA-256 of each stored
original) and no answer is a 5xx."""

from __future__ import annotations

import uuid

import pytest

from bench.scale import check_exactly_once, stored_hashes, upload_load
from tests.conftest import Fleet

pytestmark = pytest.mark.slow


def test_concurrent_uploads_with_duplicates_land_exactly_once(fleet: Fleet) -> None:
    with fleet.client() as client:
        project_id = client.post("/projects", params={"name": f"fleet-load-{uuid.uuid4().hex[:8]}"}).json()["id"]
    load = upload_load(fleet.endpoint, fleet.training_key, project_id, clients=4, uploads=40, seed=7, duplicate_fraction=0.2,
                       max_batch=16)
    assert load.image_statuses["OKDuplicate"] > 0, "the load sent no duplicates"
    assert check_exactly_once(load, stored_hashes(fleet.endpoint, fleet.training_key, project_id)) == []
