"""A fake InfluxDB v2 write API (``POST /api/v2/write``) on a real local HTTP port, for unit tests.

It keeps every request it answered (``requests``) and the lines it accepted (``accepted``).
``outage`` answers that status to every write while it is > 0 requests long (decremented per
request); ``down()``/``up()`` close and reopen the port; a line containing any string in
``malformed`` makes the whole request a 400, as InfluxDB does for a bad line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class WriteRequest:
    query: dict[str, str]
    authorization: str | None
    lines: list[str]
    status: int


@dataclass
class FakeInflux:
    port: int = 0
    requests: list[WriteRequest] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    outage: int = 0
    outage_status: int = 503
    retry_after: str | None = None
    malformed: list[str] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def up(self) -> None:
        app = web.Application()
        app.router.add_post("/api/v2/write", self._write)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        if self.port == 0:
            server = site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def down(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _write(self, request: web.Request) -> web.Response:
        lines = (await request.text()).split("\n")
        status = 204
        if self.outage > 0:
            self.outage -= 1
            status = self.outage_status
        elif any(bad in line for line in lines for bad in self.malformed):
            status = 400
        self.requests.append(WriteRequest(dict(request.query), request.headers.get("Authorization"), lines, status))
        if status == 204:
            self.accepted.extend(lines)
            return web.Response(status=204)
        headers = {"Retry-After": self.retry_after} if self.retry_after is not None else None
        return web.json_response({"code": "error", "message": f"fake says {status}"}, status=status, headers=headers)
