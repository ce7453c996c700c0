"""How the API serves the web client's files (``chatmq.services.api.web``); no browser needed."""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi import FastAPI

from chatmq.services.api.web import mount_web_client


def client_for(directory: Path) -> httpx.AsyncClient:
    app = FastAPI()
    mount_web_client(app, directory)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_missing_build_answers_with_how_to_build_it(tmp_path: Path) -> None:
    async with client_for(tmp_path / "dist") as client:
        page = await client.get("/")
        assert page.status_code == 503
        assert "scripts/web.sh" in page.text
        assert (await client.get("/web/app.js")).status_code == 404


async def test_built_client_is_served_at_root_and_under_web(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "index.html").write_text("<!doctype html><title>chat</title>")
    (dist / "app.js").write_text("console.log(1)")
    (tmp_path / "secret.txt").write_text("not served")
    async with client_for(dist) as client:
        page = await client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "<title>chat</title>" in page.text
        script = await client.get("/web/app.js")
        assert script.status_code == 200
        assert "javascript" in script.headers["content-type"]
        assert (await client.get("/web/nothing.js")).status_code == 404
        assert (await client.get("/web/%2e%2e/secret.txt")).status_code == 404
