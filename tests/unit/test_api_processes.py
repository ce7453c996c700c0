"""``GET /api/v1/admin/processes`` (admins only) and the health routes in the OpenAPI document."""

from __future__ import annotations

import httpx

from chatmq.services.api import create_app
from chatmq.services.registry.processes import ProcessTable
from tests.unit.conftest import ApiHarness
from tests.unit.test_processes import Clock, beat

URL = "/api/v1/admin/processes"


async def test_admins_see_every_process_with_its_status(api: ApiHarness) -> None:
    admin, someone = await api.user("boss", admin=True), await api.user("someone")
    clock = Clock()
    table = ProcessTable(clock=clock)
    table.apply(beat("router-1", clock.now))
    table.apply(beat("router-2", clock.now, ready=False))
    table.apply(beat("n1", clock.now - 60_000, part="broker", node="n1"))
    app = create_app(api.store, api.tokens, api.notifier)
    app.state.processes = table
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        assert (await client.get(URL)).status_code == 401
        assert (await client.get(URL, headers=api.auth(someone))).status_code == 403
        answer = await client.get(URL, headers=api.auth(admin))
    assert answer.status_code == 200
    listed = {p["instance"]: p for p in answer.json()}
    assert {name: p["status"] for name, p in listed.items()} == {"n1": "missing", "router-1": "ready",
                                                                 "router-2": "not_ready"}
    assert listed["n1"] == {"instance": "n1", "part": "broker", "node": "n1", "host": "h", "pid": 7,
                            "ops_url": "http://h:9100", "started": 1, "last_seen": clock.now - 60_000,
                            "status": "missing", "not_ready": {}}
    assert listed["router-2"]["not_ready"] == {"MongoStore": "no answer"}


async def test_a_process_that_does_not_follow_heartbeats_says_so(api: ApiHarness) -> None:
    admin = await api.user("boss", admin=True)
    answer = await api.client.get(URL, headers=api.auth(admin))
    assert answer.status_code == 503
    assert "heartbeats" in answer.json()["detail"]


async def test_the_openapi_document_shows_processes_and_health(api: ApiHarness) -> None:
    doc = (await api.client.get("/openapi.json")).json()
    processes = doc["paths"][URL]["get"]
    schema = processes["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["items"]["$ref"].endswith("/ProcessOut")
    assert set(doc["components"]["schemas"]["ProcessOut"]["properties"]) >= {"instance", "part", "status",
                                                                             "ops_url", "last_seen"}
    assert {"/healthz", "/readyz", "/metrics"} <= set(doc["paths"])
    assert "503" in doc["paths"]["/readyz"]["get"]["responses"]
    ready = await api.client.get("/readyz")  # an app without a process stack has nothing else to wait for
    assert ready.status_code == 200
    assert ready.json()["ready"] is True
