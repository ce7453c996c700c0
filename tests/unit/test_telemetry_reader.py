"""``TelemetryReader`` against a fake Prometheus-compatible query API (httpx ``MockTransport``), and the
API's answers when no store is configured or it fails. The real victoria-metrics: tests/e2e/test_telemetry.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from chatmq.core.ids import now_ms
from chatmq.services.api import create_app
from chatmq.services.telemetry.reader import MAX_ANSWER_BYTES, Point, TelemetryQueryError, TelemetryReader
from tests.unit.conftest import ApiHarness, FakeControl, RecordingNotifier

V1 = "/api/v1"


def _reader(handler: httpx.MockTransport) -> TelemetryReader:
    return TelemetryReader("http://vm", "telemetry", transport=handler)


async def test_points_merge_series_in_time_order_within_the_range_and_limit() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        lines = [{"metric": {"__name__": "telemetry_temp", "device": "d1", "owner": "u2"},
                  "values": [3.0, 4.0], "timestamps": [3000, 4000]},
                 {"metric": {"__name__": "telemetry_temp", "device": "d1", "owner": "u1"},
                  "values": [1.0, 2.0, 9.0], "timestamps": [1000, 2000, 9000]}]
        return httpx.Response(200, content=b"\n".join(orjson.dumps(line) for line in lines))

    reader = _reader(httpx.MockTransport(answer))
    try:
        assert await reader.points("d1", "temp", 1000, 5000, 3) == [Point(1000, 1.0), Point(2000, 2.0),
                                                                    Point(3000, 3.0)]
    finally:
        await reader.stop()
    params = seen[0].url.params
    assert (params["match[]"], params["start"], params["end"], params["max_rows_per_line"]) == (
        '{__name__="telemetry_temp",device="d1"}', "1.000", "5.000", "3")


async def test_latest_takes_each_fields_newest_of_query_and_recent_export() -> None:
    now = now_ms()

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/export":  # the last two minutes: temp only
            return httpx.Response(200, content=orjson.dumps({"metric": {"__name__": "telemetry_temp"},
                                                             "values": [30.5], "timestamps": [now - 1000]}))
        query = request.url.params["query"]
        value = (now - 600_000) / 1000 if query.startswith("tlast") else 12.0
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"__name__": name, "device": "d1"}, "value": [now / 1000, str(value)]}
            for name in ("telemetry_temp", "telemetry_hum")]}})

    reader = _reader(httpx.MockTransport(answer))
    try:
        latest = await reader.latest("d1")
    finally:
        await reader.stop()
    assert latest == {"hum": Point(now - 600_000, 12.0), "temp": Point(now - 1000, 30.5)}


@pytest.mark.parametrize("response", [httpx.Response(500, content=b"boom"),
                                      httpx.Response(200, content=b"x" * (MAX_ANSWER_BYTES + 1)),
                                      httpx.Response(200, content=b"not json")])
async def test_a_store_that_fails_is_a_retriable_query_error(response: httpx.Response) -> None:
    reader = _reader(httpx.MockTransport(lambda _r: response))
    try:
        with pytest.raises(TelemetryQueryError) as failed:
            await reader.points("d1", "temp", 0, 1000, 10)
    finally:
        await reader.stop()
    assert failed.value.retriable


@pytest.fixture
async def failing_api(api: ApiHarness) -> AsyncIterator[ApiHarness]:
    """``api``'s store behind an app whose time-series store answers 500 to everything."""
    reader = _reader(httpx.MockTransport(lambda _r: httpx.Response(500, content=b"down")))
    app = create_app(api.store, api.tokens, RecordingNotifier(), control=FakeControl(), telemetry=reader)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        yield ApiHarness(client, api.store, api.tokens, api.notifier, api.control)
    await reader.stop()


async def test_read_back_answers_503_without_a_store_or_when_it_fails(api: ApiHarness,
                                                                     failing_api: ApiHarness) -> None:
    me = await api.user("alice")
    device_id = (await api.client.post(f"{V1}/devices", headers=api.auth(me), json={"name": "t"})).json()["device_id"]
    for harness in (api, failing_api):
        for path in (f"/devices/{device_id}/telemetry?field=temp", f"/devices/{device_id}/telemetry/latest"):
            r = await harness.client.get(V1 + path, headers=api.auth(me))
            assert r.status_code == 503, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
    answer = await failing_api.client.get(f"{V1}/devices/{device_id}/telemetry?field=temp", headers=api.auth(me))
    assert answer.headers["retry-after"] == "5"
    assert "500" in answer.json()["detail"]
    missing = await api.client.get(f"{V1}/devices/nosuch/telemetry?field=temp", headers=api.auth(me))
    assert missing.status_code == 404
