"""The browser client's files, served by the API: ``/`` is the page, ``/web/…`` its assets.

The files are built from ``web/`` by ``scripts/web.sh`` into ``web/dist/`` (not kept in git).
When they are missing, ``/`` answers 503 with a page that says how to build them; the REST
API works either way.
"""

from __future__ import annotations

from pathlib import Path

import anyio
from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>chatmq: web client not built</title></head>
<body><h1>The web client is not built</h1>
<p>Run <code>scripts/web.sh</code> in the chatmq checkout (it needs Node.js and npm) and reload this page.
The REST API is under <a href="/docs">/api/v1</a>.</p></body></html>
"""


def default_web_dir() -> Path:
    """``web/dist`` of the checkout this package runs from (an editable install)."""
    return Path(__file__).resolve().parents[2] / "web" / "dist"


def mount_web_client(app: FastAPI, directory: Path | None = None) -> None:
    """Serve ``directory`` (default ``default_web_dir()``): ``GET /`` its ``index.html``,
    ``/web/<file>`` any file in it. Looked up per request, so a build made while the server
    runs is picked up on reload."""
    root = directory if directory is not None else default_web_dir()

    @app.get("/", include_in_schema=False, response_model=None)
    def index() -> Response:  # sync: FastAPI runs it in a thread, so the file check may block
        page = root / "index.html"
        if not page.is_file():
            return HTMLResponse(NOT_BUILT, status_code=503)
        return FileResponse(page, headers={"Cache-Control": "no-cache"})

    app.mount("/web", _BuiltFiles(directory=root, check_dir=False), name="web")


class _BuiltFiles(StaticFiles):
    """``StaticFiles`` that answers 404, rather than failing, while its directory is missing."""

    async def check_config(self) -> None:
        if self.directory is not None and await anyio.Path(self.directory).is_dir():
            await super().check_config()
