"""``GET /health``: whether this replica reaches its database and whether any worker is alive to run jobs.

Not part of Custom Vision's API: for load balancers, orchestrators and people. 200 when the database answers and
a worker has shown a sign of life in the last 30 s; 503 otherwise, saying which part is missing.
"""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from opencustomvision.api.deps import ServicesDep
from opencustomvision.domain.jobs import QueueHealth, queue_health

router = APIRouter()
WORKER_ALIVE_WITHIN = timedelta(seconds=30)


@router.get("/health")
async def health(services: ServicesDep) -> JSONResponse:
    def read() -> QueueHealth:
        with services.sessions() as session:
            return queue_health(session, alive_within=WORKER_ALIVE_WITHIN)

    try:
        state = await run_in_threadpool(read)
    except SQLAlchemyError as error:
        return JSONResponse({"status": "unavailable", "database": f"unreachable: {type(error).__name__}"}, status_code=503)
    healthy = bool(state.live_workers)
    return JSONResponse(
        {
            "status": "ok" if healthy else "degraded",
            "database": "ok",
            "workers": [{"id": beat.id, "started": beat.started.isoformat(), "lastSeen": beat.last_seen.isoformat()}
                        for beat in state.live_workers],
            "jobs": {"queued": state.queued, "running": state.running,
                     "oldestQueued": state.oldest_queued.isoformat() if state.oldest_queued else None},
        },
        status_code=200 if healthy else 503,
    )
