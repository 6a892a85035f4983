"""/v1/jobs: the training jobs of the resource's models, in Scenario's job shape."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from opencustomvision.api.deps import SessionDep
from opencustomvision.api.scenario import ids
from opencustomvision.api.scenario.auth import ScenarioResource
from opencustomvision.api.scenario.common import answer
from opencustomvision.api.scenario.presenters import present_job
from opencustomvision.domain.scenario_training import get_training_job

router = APIRouter()


@router.get("/jobs/{job_id}")
def get_job(job_id: str, session: SessionDep, resource: ScenarioResource) -> Response:
    job, iteration = get_training_job(session, resource, ids.decode(ids.JOB, job_id, what="Job"))
    return answer({"job": present_job(job, iteration)})
