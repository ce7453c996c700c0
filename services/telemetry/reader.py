"""``TelemetryReader``: a device's readings read back from the time-series store, through its
Prometheus-compatible query API (VictoriaMetrics, which takes the InfluxDB line protocol chatmq writes and
keeps field ``F`` of measurement ``M`` as the series ``M_F``, the point's tags as labels).

- ``points(device, field, since, until, limit)``: the readings of one field from ``since`` to ``until``
  (ms, both included), oldest first, at most ``limit`` (``/api/v1/export`` with ``max_rows_per_line``, so
  the answer is bounded before it is read; page on with ``since`` = the last ``ts`` + 1).
- ``latest(device)``: each field's newest reading within ``LATEST_WINDOW_MS``: ``last_over_time`` and
  ``tlast_over_time`` (whole seconds) for the older ones, and the raw readings of the last
  ``RECENT_MS`` (which VictoriaMetrics keeps out of queries for its ``-search.latencyOffset``).
- A store that cannot be reached, or answers with an error or more than ``MAX_ANSWER_BYTES``, raises
  ``TelemetryQueryError`` (retriable).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from chatmq.core.errors import ChatMQError
from chatmq.core.ids import now_ms

LATEST_WINDOW_MS = 30 * 24 * 3600 * 1000
RECENT_MS = 120_000
MAX_ANSWER_BYTES = 16 * 1024 * 1024
MAX_SERIES = 64


class TelemetryQueryError(ChatMQError):
    """The time-series store did not answer a query (unreachable, an error, an answer too large)."""

    retriable = True


@dataclass(frozen=True, slots=True)
class Point:
    """One reading of one field: ``ts`` in ms."""

    ts: int
    value: float


def _label(value: str) -> str:
    """``value`` as a quoted label value of a series selector."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class TelemetryReader:
    def __init__(self, url: str, measurement: str, *, timeout: float = 10.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._measurement = measurement
        self._client = httpx.AsyncClient(base_url=url.rstrip("/"), timeout=timeout, transport=transport)

    async def start(self) -> None:
        """Nothing to open: connections are made by the first query."""

    async def stop(self) -> None:
        await self._client.aclose()

    async def points(self, device: str, field: str, since: int, until: int, limit: int) -> list[Point]:
        match = f'{{__name__={_label(f"{self._measurement}_{field}")},device={_label(device)}}}'
        series = await self._export(match, since, until, limit)
        points = sorted(p for _name, ps in series for p in ps)
        return [Point(ts, v) for ts, v in points[:limit]]

    async def latest(self, device: str) -> dict[str, Point]:
        now = now_ms()
        selector = f'{{__name__=~{_label(self._measurement + "_.+")},device={_label(device)}}}'
        window = f"[{LATEST_WINDOW_MS // 1000}s]"
        values, times, recent = await asyncio.gather(
            self._query(f"last_over_time({selector}{window}) keep_metric_names"),
            self._query(f"tlast_over_time({selector}{window}) keep_metric_names"),
            self._export(selector, now - RECENT_MS, now, None))
        best: dict[str, Point] = {}

        def offer(name: str, ts: int, value: float) -> None:
            field = name.removeprefix(self._measurement + "_")
            if field not in best or best[field].ts < ts:
                best[field] = Point(ts, value)

        for key, value in values.items():
            if key in times:
                offer(key[0], int(times[key] * 1000), value)
        for name, points in recent:
            for ts, value in points:
                offer(name, ts, value)
        return dict(sorted(best.items()))

    async def _get(self, path: str, params: dict[str, Any]) -> bytes:
        try:
            async with self._client.stream("GET", path, params=params) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_ANSWER_BYTES:
                        raise TelemetryQueryError(f"the time-series store answered more than {MAX_ANSWER_BYTES} "
                                                  "bytes")
                if response.status_code != 200:
                    raise TelemetryQueryError(f"the time-series store answered {response.status_code}: "
                                              f"{bytes(body[:200]).decode(errors='replace')}")
                return bytes(body)
        except httpx.HTTPError as exc:
            raise TelemetryQueryError(f"the time-series store cannot be reached: {exc}") from exc

    async def _export(self, match: str, since: int, until: int,
                      limit: int | None) -> list[tuple[str, list[tuple[int, float]]]]:
        params: dict[str, Any] = {"match[]": match, "start": f"{since / 1000:.3f}", "end": f"{until / 1000:.3f}"}
        if limit is not None:
            params["max_rows_per_line"] = limit
        out: list[tuple[str, list[tuple[int, float]]]] = []
        for line in (await self._get("/api/v1/export", params)).splitlines()[:MAX_SERIES]:
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
                points = [(int(t), float(v)) for t, v in zip(row["timestamps"], row["values"], strict=True)
                          if isinstance(v, int | float) and math.isfinite(v)]
                out.append((str(row["metric"]["__name__"]), [p for p in points if since <= p[0] <= until]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise TelemetryQueryError(f"the time-series store's export is not understood: {exc}") from exc
        return out

    async def _query(self, query: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """An instant query's vector, by (series name, its other labels)."""
        try:
            answer = orjson.loads(await self._get("/api/v1/query", {"query": query}))
            out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
            for item in answer["data"]["result"][:MAX_SERIES]:
                labels = dict(item["metric"])
                name = str(labels.pop("__name__"))
                value = float(item["value"][1])
                if math.isfinite(value):
                    out[(name, tuple(sorted(labels.items())))] = value
            return out
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError) as exc:
            raise TelemetryQueryError(f"the time-series store's query answer is not understood: {exc}") from exc
