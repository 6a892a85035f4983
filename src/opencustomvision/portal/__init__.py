"""The web portal: static files served beside the API, a client of the public Training and Prediction APIs only.

``/`` answers the page; its scripts, styles and vendored libraries live under ``/portal/``. Nothing here reads the
database: every number the portal shows comes from the same API calls an SDK user makes.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).parent / "static"
PREFIX = "/portal"
_INLINE_SCRIPT = re.compile(r"<script type=\"importmap\">(.*?)</script>", re.DOTALL)


def content_security_policy(page: str) -> str:
    """Same-origin only, so the page can reach nothing but this server; the import map is allowed by its hash."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(page)
    )
    return (
        f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'self'"
    )


class PortalFiles(StaticFiles):
    """The portal's files. A missing one is a plain 404, not a CustomVisionError: it is no API call."""

    def __init__(self, policy: str) -> None:
        super().__init__(directory=STATIC_DIR)
        self._headers = {"Content-Security-Policy": policy, "X-Content-Type-Options": "nosniff"}

    async def get_response(self, path: str, scope: Scope) -> Response:
        try:
            response = await super().get_response(path, scope)
        except HTTPException as error:
            return PlainTextResponse(str(error.detail), status_code=error.status_code)
        response.headers.update(self._headers)
        return response


class Portal:
    def __init__(self) -> None:
        self.page = (STATIC_DIR / "index.html").read_text()
        self.policy = content_security_policy(self.page)
        self.files = PortalFiles(self.policy)

    async def index(self, request: Request) -> Response:
        return Response(self.page, media_type="text/html", headers={
            "Content-Security-Policy": self.policy, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache",
        })
