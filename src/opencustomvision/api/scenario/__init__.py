"""Scenario's API (``/v1``): a second room over the same domain, with Scenario's auth, shapes and errors.

It is a sub-application mounted at ``/v1`` so that its error handlers, body limit and bug catcher answer
in Scenario's error body; the Custom Vision middleware lets ``/v1`` through untouched.
"""

from __future__ import annotations

from fastapi import FastAPI

from opencustomvision.api.body import RequestBodyMiddleware, body_limits
from opencustomvision.api.deps import Services
from opencustomvision.api.errors import UnexpectedErrorMiddleware, install_error_handlers
from opencustomvision.api.scenario import assets, jobs, models, training_images
from opencustomvision.api.scenario.errors import render_scenario_error, send_scenario_error

PREFIX = "/v1"


def create_scenario_app(services: Services) -> FastAPI:
    app = FastAPI(title="OpenCustomVision: Scenario API", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.services = services
    for router in (models.router, assets.router, training_images.router, jobs.router):
        app.include_router(router)
    install_error_handlers(app, render_scenario_error)
    app.add_middleware(RequestBodyMiddleware, **body_limits(services.settings), send=send_scenario_error)
    app.add_middleware(UnexpectedErrorMiddleware, send=send_scenario_error)
    return app
