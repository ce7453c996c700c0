"""Request bodies are bounded before they are buffered (``BodyLimit``): 413 problem details, by
``Content-Length`` at once or by counting a streamed (chunked) body, on any route."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from chatmq.core.auth import TokenService
from chatmq.services.api import create_app
from chatmq.services.api.body_limit import BodyLimit
from chatmq.services.store.sqlite import SQLiteStore
from tests.unit.conftest import PASSWORD, TOKEN_KEY, RecordingNotifier

V1 = "/api/v1"
LIMIT = 4096
CHUNK = 1024


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    store = SQLiteStore(tmp_path / "db.sqlite")
    await store.start()
    app = create_app(store, TokenService(TOKEN_KEY, 900, 3600), RecordingNotifier(), max_body=LIMIT)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            yield c
    finally:
        await store.stop()


def _too_large(r: httpx.Response, path: str) -> None:
    assert r.status_code == 413, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["connection"] == "close"
    body = r.json()
    assert body["type"] == f"{V1}/problems/payload-too-large"
    assert body["title"] == "Request body too large"
    assert body["detail"] == f"the request body is larger than {LIMIT} bytes"
    assert body["instance"] == path


class Chunks:
    """A streamed body of ``count`` chunks that counts how many were read."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.read = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.count):
            self.read += 1
            yield b"x" * CHUNK


async def test_unauthenticated_huge_post_with_content_length_is_413_unread(client: httpx.AsyncClient) -> None:
    body = Chunks(300 * 1024)  # 300 MB, announced up front
    r = await client.post(f"{V1}/auth/register", content=body,
                          headers={"Content-Length": str(300 * 1024 * CHUNK), "Content-Type": "application/json"})
    _too_large(r, f"{V1}/auth/register")
    assert body.read <= 1  # refused on the header: nothing (beyond what the transport sent first) was read


@pytest.mark.parametrize("path", [f"{V1}/auth/login", f"{V1}/groups", "/no/such/route"])
async def test_unauthenticated_huge_chunked_post_is_413_after_the_limit(client: httpx.AsyncClient, path: str) -> None:
    body = Chunks(300 * 1024)  # 300 MB, no Content-Length: counted as it streams
    r = await client.post(path, content=body, headers={"Content-Type": "application/json"})
    if path.startswith(V1):
        _too_large(r, path)
        assert body.read <= LIMIT // CHUNK + 1  # reading stopped at the limit
    else:
        assert r.status_code == 404  # a route that never reads its body does not read this one either
        assert body.read <= 1


async def test_bodies_within_the_limit_pass(client: httpx.AsyncClient) -> None:
    r = await client.post(f"{V1}/auth/register", json={"username": "alice", "password": PASSWORD,
                                                       "display_name": "a" * 64})
    assert r.status_code == 201
    padded = b'{"username": "alice", "password": "' + PASSWORD.encode() + b'"}' + b" " * (LIMIT - 80)
    r = await client.post(f"{V1}/auth/login", content=padded, headers={"Content-Type": "application/json"})
    assert r.status_code == 200


async def test_a_malformed_content_length_counts_as_too_large(client: httpx.AsyncClient) -> None:
    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("not reached")

    limited = BodyLimit(app, max_body=LIMIT)
    transport = httpx.ASGITransport(app=limited)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.post("/x", content=b"{}", headers={"Content-Length": "lots"})
    assert r.status_code == 413
    with pytest.raises(ValueError, match="positive"):
        BodyLimit(app, max_body=0)


async def test_file_uploads_have_a_limit_of_their_own(tmp_path: Path) -> None:
    """``POST /files`` takes up to ``max_file_size`` and the multipart framing; every other route ``max_body``."""
    from chatmq.services.api.files_routes import MULTIPART_SLACK
    from chatmq.services.store.local_files import LocalFileStore

    store = SQLiteStore(tmp_path / "db.sqlite")
    await store.start()
    app = create_app(store, TokenService(TOKEN_KEY, 900, 3600), RecordingNotifier(), max_body=LIMIT,
                     files=LocalFileStore(tmp_path / "files"), max_file_size=4 * LIMIT)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            body = b"x" * (2 * LIMIT)
            assert (await c.post(f"{V1}/files", content=body)).status_code == 401  # read: no token
            assert (await c.post(f"{V1}/groups", content=body)).status_code == 413
            over = Chunks(4 * LIMIT // CHUNK + MULTIPART_SLACK // CHUNK + 1)
            r = await c.post(f"{V1}/files", content=over, headers={"Content-Length": str(over.count * CHUNK)})
            assert r.status_code == 413
            assert r.json()["detail"] == f"the request body is larger than {4 * LIMIT + MULTIPART_SLACK} bytes"
            assert over.read == 0
    finally:
        await store.stop()
