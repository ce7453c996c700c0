"""``InfluxWriter``: points to an InfluxDB v2 write API (``/api/v2/write``), in batches, until accepted.

It speaks through influxdb-client's async client (``InfluxDBClientAsync``, on aiohttp): the
writes are coroutines on the process's own event loop, so a write in progress is
cancelled with its task on stop, and no thread pool sits beside the loop.

Contract of ``write(points)``:

* the points go out in batches of at most ``batch_size`` (line protocol, ms precision);
* it returns once InfluxDB accepted every batch (``WriteResult``); a batch is never
  reported written before that, so a caller may commit what it read afterwards;
* an outage (connection refused, timeout, 5xx, 429, and 401/403/404, which are a wrong
  token, org or bucket an operator can fix) is retried with exponential backoff from
  ``min_backoff`` to ``max_backoff`` seconds, honouring ``Retry-After``; one warning is
  logged when a batch first fails and one line when InfluxDB takes writes again;
* a batch InfluxDB refuses as malformed (400, 413, 422) is split in halves and written
  again until the points it refuses are found one by one: those are logged and skipped
  (counted in ``WriteResult.rejected``), never retried forever;
* with ``give_up_after`` seconds, retrying stops then and ``WriteAbandonedError`` is
  raised (for metrics snapshots, which a newer one replaces); after ``stop()`` a
  retrying write raises it at once.

The token is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.client.write.point import Point
from influxdb_client.client.write_api_async import WriteApiAsync
from influxdb_client.domain.write_precision import WritePrecision

from chatmq.core.errors import ChatMQError
from chatmq.core.metrics import INFLUX_POINTS, INFLUX_WRITE_FAILURES

log = logging.getLogger(__name__)

_MALFORMED = frozenset({400, 413, 422})
_MS = cast(WritePrecision, WritePrecision.MS)


def line(measurement: str, tags: Mapping[str, str], fields: Mapping[str, float], ts_ms: int) -> str:
    """One point in InfluxDB line protocol (ms precision), escaped by influxdb-client's ``Point``;
    empty tag values are left out. Empty when there is no field."""
    point: Any = Point(measurement)  # type: ignore[no-untyped-call]  # influxdb-client's Point is untyped
    for key, value in tags.items():
        if value:
            point.tag(key, value)
    for key, number in fields.items():
        point.field(key, number)
    return str(point.time(ts_ms, _MS).to_line_protocol())


class WriteAbandonedError(ChatMQError):
    """A write was given up (its ``give_up_after`` passed, or the writer stopped) before InfluxDB took it."""

    retriable = True


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one ``write`` did: points accepted, and points InfluxDB refused as malformed (skipped)."""

    written: int
    rejected: int


class InfluxWriter:
    """Writes points to ``url`` (bucket ``bucket`` of ``org``) in batches of ``batch_size``."""

    def __init__(self, url: str, *, token: str | None, org: str, bucket: str, batch_size: int = 1000,
                 timeout: float = 10.0, min_backoff: float = 0.5, max_backoff: float = 30.0) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.url, self.org, self.bucket, self.batch_size = url, org, bucket, batch_size
        self._token = token
        self._timeout_ms = int(timeout * 1000)
        self._min_backoff, self._max_backoff = min_backoff, max_backoff
        self._client: InfluxDBClientAsync | None = None
        self._write_api: WriteApiAsync | None = None
        self._closed = asyncio.Event()
        self._failing = False
        self.written = 0
        self.rejected = 0
        self._written_total, self._rejected_total = INFLUX_POINTS.labels("written"), INFLUX_POINTS.labels("rejected")
        self._shown_url = _without_credentials(url)

    async def start(self) -> None:
        """Open the HTTP client (aiohttp needs the running loop)."""
        self._closed.clear()
        self._client = InfluxDBClientAsync(url=self.url, token=self._token or "", org=self.org,
                                           timeout=self._timeout_ms)
        self._write_api = self._client.write_api()

    async def stop(self) -> None:
        """Wake writes that are retrying (they raise ``WriteAbandonedError``) and close the client."""
        self._closed.set()
        if self._client is not None:
            client, self._client, self._write_api = self._client, None, None
            with contextlib.suppress(Exception):
                await client.close()  # type: ignore[no-untyped-call]

    async def __aenter__(self) -> InfluxWriter:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def write(self, points: Sequence[str], *, give_up_after: float | None = None) -> WriteResult:
        """Write ``points`` (lines from ``line``); returns when InfluxDB has them (see the module docstring)."""
        deadline = None if give_up_after is None else time.monotonic() + give_up_after
        written = rejected = 0
        for start in range(0, len(points), self.batch_size):
            lines = points[start:start + self.batch_size]
            ok, bad = await self._write_lines([p for p in lines if p], deadline)
            written, rejected = written + ok, rejected + bad + sum(1 for p in lines if not p)
        self.written += written
        self.rejected += rejected
        self._written_total.inc(written)
        self._rejected_total.inc(rejected)
        return WriteResult(written, rejected)

    async def _write_lines(self, lines: list[str], deadline: float | None) -> tuple[int, int]:
        """Write one batch, retrying outages; split it while InfluxDB calls it malformed."""
        if not lines:
            return 0, 0
        status = await self._retrying(lines, deadline)
        if status is None:
            return len(lines), 0
        if len(lines) == 1:
            log.warning("InfluxDB refused a point as malformed (HTTP %d); skipped: %.200s", status, lines[0])
            return 0, 1
        half = len(lines) // 2
        a_ok, a_bad = await self._write_lines(lines[:half], deadline)
        b_ok, b_bad = await self._write_lines(lines[half:], deadline)
        return a_ok + b_ok, a_bad + b_bad

    async def _retrying(self, lines: list[str], deadline: float | None) -> int | None:
        """None once InfluxDB accepted ``lines``; the HTTP status when it refused them as malformed."""
        pause = self._min_backoff
        attempt = 0
        body = "\n".join(lines).encode()  # once: the same body goes out on every attempt
        while True:
            if self._closed.is_set() or self._write_api is None:
                raise WriteAbandonedError("the InfluxDB writer is stopped")
            attempt += 1
            try:
                await self._write_api.write(self.bucket, self.org, body, write_precision=_MS)
            except InfluxDBError as exc:
                status = getattr(exc, "status", None) or 0
                if status in _MALFORMED:
                    self._recovered(attempt)
                    return int(status)
                wait = _retry_after(exc) or pause
                self._failed(f"HTTP {status or '?'}: {_message(exc)}", attempt, wait)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:  # the server is away or too slow
                wait = pause
                self._failed(f"{type(exc).__name__}: {exc}", attempt, wait)
            else:
                self._recovered(attempt)
                return None
            if deadline is not None and time.monotonic() + wait > deadline:
                raise WriteAbandonedError(f"InfluxDB did not take {len(lines)} points in time")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), wait)
            pause = min(pause * 2, self._max_backoff)

    def _failed(self, why: str, attempt: int, wait: float) -> None:
        INFLUX_WRITE_FAILURES.inc()
        if not self._failing:
            self._failing = True
            log.warning("InfluxDB at %s does not take writes (%s); retrying every %g s at most",
                        self._shown_url, why, self._max_backoff)
        else:
            log.debug("InfluxDB write attempt %d failed (%s); next in %.1f s", attempt, why, wait)

    def _recovered(self, attempt: int) -> None:
        if self._failing:
            self._failing = False
            log.info("InfluxDB at %s takes writes again (after %d attempts)", self._shown_url, attempt)


def _without_credentials(url: str) -> str:
    """``url`` without a ``user:password@`` part, for logs."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def _retry_after(exc: InfluxDBError) -> float | None:
    value: Any = getattr(exc, "retry_after", None)
    try:
        return min(max(0.0, float(value)), 300.0) if value is not None else None
    except (TypeError, ValueError):
        return None


def _message(exc: InfluxDBError) -> str:
    message: Any = getattr(exc, "message", "") or ""
    if isinstance(message, bytes):
        message = message.decode(errors="replace")
    return str(message)[:200]

