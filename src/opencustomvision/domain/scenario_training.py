"""Training a Scenario model: the project's TrainProject (same rules, same job queue), and its job as Scenario sees it."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from opencustomvision.domain import jobs
from opencustomvision.domain.errors import DomainError
from opencustomvision.domain.iterations import TRAINING, TrainingRequest, cancel_training, plan_training, start_training
from opencustomvision.domain.projects import get_project
from opencustomvision.domain.scenario_models import latest_iterations
from opencustomvision.storage.models import Iteration, Job, Project, Resource

# Scenario's job statuses for ours.
JOB_STATUSES = {jobs.QUEUED: "queued", jobs.RUNNING: "in-progress", jobs.SUCCEEDED: "success",
                jobs.FAILED: "failure", jobs.CANCELED: "canceled"}


@dataclass(frozen=True)
class ModelTraining:
    iteration: Iteration
    job: Job


def train_model(session: Session, project: Project, *, advanced_enabled: bool, dry_run: bool = False) -> ModelTraining | None:
    """Queue the project's training, as TrainProject does (Regular); a dry run only checks it would start."""
    request = TrainingRequest()
    if dry_run:
        plan_training(session, project, request, advanced_enabled=advanced_enabled)
        return None
    queued = start_training(session, project, request, advanced_enabled=advanced_enabled)
    job = session.get(Job, queued.job_id)
    assert job is not None
    return ModelTraining(queued.iteration, job)


def cancel_model_training(session: Session, project: Project) -> Iteration:
    latest = latest_iterations(session, [project.id]).get(project.id)
    if latest is None or latest.status != TRAINING:
        raise DomainError("BadRequest", "The model is not training: there is nothing to cancel.")
    return cancel_training(session, latest)


def training_job_of(session: Session, iteration: Iteration | None) -> Job | None:
    return jobs.latest_job(session, jobs.TRAINING_JOB, iteration.id) if iteration is not None else None


def get_training_job(session: Session, resource: Resource, job_id: str) -> tuple[Job, Iteration | None]:
    """A training job of one of the resource's projects; any other job answers as absent."""
    job = session.get(Job, job_id)
    if job is None or job.kind != jobs.TRAINING_JOB or job.project_id is None:
        raise DomainError("NotFound", "This job was not found.")
    try:
        get_project(session, resource.id, job.project_id)
    except DomainError:
        raise DomainError("NotFound", "This job was not found.") from None
    return job, session.get(Iteration, job.subject_id)
