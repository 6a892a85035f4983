"""Scenario's API (``/v1``): a second room over the same domain, with Scenario's auth, shapes and errors.

It is a sub-application mounted at ``/v1`` so that its error handlers, body limit and bug catcher answer
in Scenario's error body; the Custom Vision middleware lets ``/v1`` through untouched.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as SqlAlchemyTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from opencustomvision.api.body import RequestBodyMiddleware, body_limits
from opencustomvision.api.deps import Services
from opencustomvision.api.errors import UnexpectedErrorMiddleware
from opencustomvision.api.scenario import assets, jobs, models, training_images
from opencustomvision.api.scenario.errors import (
    database_unavailable_handler, decode_busy_handler, domain_error_handler, http_error_handler, send_scenario_error,
    validation_error_handler,
)
from opencustomvision.domain.errors import DomainError
from opencustomvision.imaging.budget import DecodeBusy

PREFIX = "/v1"


def create_scenario_app(services: Services) -> FastAPI:
    app = FastAPI(title="OpenCustomVision: Scenario API", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.services = services
    for router in (models.router, assets.router, training_images.router, jobs.router):
        app.include_router(router)
    app.add_exception_handler(DomainError, domain_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(ValidationError, validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(DecodeBusy, decode_busy_handler)
    app.add_exception_handler(OperationalError, database_unavailable_handler)
    app.add_exception_handler(SqlAlchemyTimeout, database_unavailable_handler)
    app.add_middleware(RequestBodyMiddleware, **body_limits(services.settings), send=send_scenario_error)
    app.add_middleware(UnexpectedErrorMiddleware, send=send_scenario_error)
    return app
