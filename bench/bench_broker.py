"""``chatmq bench broker``: the chatmq broker node against Mosquitto, side by side, in one run.

Run ``python -m chatmq.bench.bench_broker broker [--quick] [--messages N] [--idle N]`` (the main
CLI mounts ``app`` as ``chatmq bench``). It

1. installs what it needs when missing: Debian ``mosquitto`` (``apt-get``; the package's system
   service is stopped and disabled, and port 1883 is never used) and the C load generator
   ``bench/mqttrelay.c``, built with ``cc -O2`` into ``.services/bin/mqttrelay``;
2. starts the chatmq plain broker node (``python -m chatmq.run.cli broker --allow-anonymous``, with
   Mosquitto's queue bound of 100,000 and a WebSocket port) and Mosquitto (a generated config)
   on free 127.0.0.1 ports, and waits until each answers an MQTT CONNECT;
3. runs the same loads against each (rows, below), row by row, alternating brokers;
4. stops both (also on Ctrl-C and errors), prints a Markdown table, writes it to ``--markdown``
   and everything measured to ``--json``.

Rows (``docs/benchmarks.md`` says more):

* ``qos0``/``qos1``: mqttrelay, 10 publisher/subscriber pairs on ``bench/<i>``, ``--messages``
  64-byte messages per pair (QoS 1 with an in-flight window of 64 per publisher);
* ``fanin``: 10 publishers to one subscriber on one topic, QoS 0; ``fanout``: one publisher to
  10 subscribers, QoS 1 (``fan_load``, run as the hidden ``fanload`` command: mqttrelay has 1:1
  pairs only);
* ``*_idle``: the same four with ``--idle`` idle clients connected, each subscribed to a topic of
  its own (``IdleClients``: raw-socket asyncio, CONNECT and SUBSCRIBE in one write);
* ``qos0_half``/``qos1_half``: the relay load paced at half the rate the broker reached in
  ``qos0``/``qos1`` (``fan_load`` in ``pairs`` mode with ``--rate``): p99 latency of a loaded,
  not saturated broker;
* ``connect_idle``: how fast the broker took those idle clients (connections per second);
* ``rss_idle``: the broker's ``VmRSS`` growth while those idle clients connected, per client;
* ``ws``/``ws_rss``: ``--idle`` idle clients over WebSocket (``WsIdleClients``), on fresh brokers:
  connections per second and RSS per connection (Debian's Mosquitto has no WebSocket listener:
  ``unsupported``).

Each row climbs a ladder of sizes (``--ladder``): 1/625 of ``--messages``, then 1/25, then
all of it, going up only while the next size should finish within 60% of ``--row-timeout`` at
the rate just measured. A fast broker runs the full size (the small runs cost it a fraction of
a second); a slow one is measured at the largest size it finishes, marked ``*`` in the table.
A run that still overruns ``--row-timeout`` is killed and reported as a timeout, and the broker
is restarted (idle clients reconnected): a killed run leaves messages queued in the broker, which
would reach the next run's subscribers on the same topics and falsify its counts and latencies.
Between runs the benchmark waits until the broker process is idle (CPU time from ``/proc``).

``render`` prints the report of an earlier run from its JSON.

Speed lives here, never in timed tests: ``tests/unit/test_bench_broker.py`` covers the parsing,
formatting, config and packet encoding only.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any, cast

import typer

from chatmq.broker.wire import (
    DISCONNECT_BYTES,
    encode_connect,
    encode_remaining_length,
    encode_string,
    encode_subscribe,
)
from chatmq.core.ports import free_port

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RELAY_SRC = Path(__file__).resolve().with_name("mqttrelay.c")  # beside this module, in every clone
DEFAULT_RELAY_BIN = REPO / ".services" / "bin" / "mqttrelay"
DEFAULT_JSON = Path("test-artifacts/bench_broker.json")
DEFAULT_MARKDOWN = Path("test-artifacts/bench_broker.md")
HOST = "127.0.0.1"

FULL_MESSAGES = 50_000  # per pair: 500,000 messages, about 6 s at QoS 0 on Mosquitto here
QUICK_MESSAGES = 2_000
FULL_IDLE = 10_000
QUICK_IDLE = 1_000
FULL_ROW_TIMEOUT = 30.0
QUICK_ROW_TIMEOUT = 15.0
LADDER_DIVISORS = (625, 25)  # each row runs messages // d first (at least MIN_LADDER_MESSAGES), then all
MIN_LADDER_MESSAGES = 10
MAX_QUEUED = 100_000  # per-client queue bound, the same for both brokers
LADDER_BUDGET = 0.6  # climb only when the next size should take at most this share of --row-timeout

def echo(line: str) -> None:
    """A progress line, on standard error (standard output carries the table)."""
    typer.echo(line, err=True)


class BenchError(Exception):
    """A benchmark could not be set up (a tool missing, a broker that does not start)."""


# --------------------------------------------------------------------------------------------
# mqttrelay output
# --------------------------------------------------------------------------------------------

_RELAY_LINE = re.compile(
    r"port=(?P<port>\d+) qos=(?P<qos>\d) pairs=(?P<pairs>\d+) msgs=(?P<total>\d+) "
    r"elapsed=(?P<elapsed>[\d.]+)s rate=(?P<rate>[\d.]+) msg/s "
    r"p50=(?P<p50>-?[\d.]+)ms p99=(?P<p99>-?[\d.]+)ms lost=(?P<lost>-?\d+)"
)


@dataclass(frozen=True)
class RelayResult:
    """One line of mqttrelay's output. Latencies are -1 when nothing arrived."""

    port: int
    qos: int
    pairs: int
    total: int
    elapsed_s: float
    rate: float
    p50_ms: float
    p99_ms: float
    lost: int


def parse_relay_output(text: str) -> RelayResult | None:
    """The result line in mqttrelay's standard output, or ``None`` when it printed none."""
    for line in reversed(text.splitlines()):
        m = _RELAY_LINE.search(line)
        if m:
            return RelayResult(
                port=int(m["port"]), qos=int(m["qos"]), pairs=int(m["pairs"]), total=int(m["total"]),
                elapsed_s=float(m["elapsed"]), rate=float(m["rate"]), p50_ms=float(m["p50"]),
                p99_ms=float(m["p99"]), lost=int(m["lost"]),
            )
    return None


# --------------------------------------------------------------------------------------------
# Results, ratios, the table and JSON
# --------------------------------------------------------------------------------------------


class Status(enum.StrEnum):
    """How a measurement ended."""

    OK = "ok"
    LOST = "lost"  # finished, but some messages never arrived
    TIMEOUT = "timeout"  # killed after --row-timeout, no figure
    FAILED = "failed"  # the load generator or the broker failed
    NOT_YET = "not yet"  # the row is not implemented yet
    SKIPPED = "skipped"  # left out by --rows
    UNSUPPORTED = "unsupported"  # the broker cannot do what the row measures


@dataclass
class Measurement:
    """One row against one broker."""

    status: Status
    rate: float | None = None  # msg/s
    p50_ms: float | None = None
    p99_ms: float | None = None
    lost: int | None = None
    total: int | None = None  # messages sent in the measured run
    messages_per_pair: int | None = None  # of the measured run
    requested_per_pair: int | None = None  # when larger, the figure comes from a smaller size
    rss_kib_per_conn: float | None = None
    conn_rate: float | None = None  # idle clients connected (CONNECT + SUBSCRIBE answered) per second
    seconds: float = 0.0  # wall time spent on the row, every size of its ladder included
    note: str = ""
    output: str = ""  # what the load generator printed (last lines), for failed rows

    @property
    def reduced(self) -> bool:
        """Whether the figure comes from a run with fewer messages than requested."""
        return (self.messages_per_pair is not None and self.requested_per_pair is not None
                and self.messages_per_pair < self.requested_per_pair)

    def value(self, unit: str) -> float | None:
        """The row's headline figure: msg/s, KiB per connection, connections per second or p99 ms."""
        if unit == "KiB/conn":
            return self.rss_kib_per_conn
        if unit == "p99 ms":
            return self.p99_ms if self.p99_ms is not None and self.p99_ms >= 0 else None
        return self.conn_rate if unit == "conn/s" else self.rate

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the status as its string, ``reduced`` spelled out)."""
        d = asdict(self)
        d["status"] = str(self.status)
        d["reduced"] = self.reduced
        return d


@dataclass
class RowResult:
    """One row: the same load against both brokers."""

    key: str
    title: str
    unit: str  # "msg/s", "KiB/conn", "conn/s" or "p99 ms"
    mosquitto: Measurement
    chatmq: Measurement
    baseline: str | None = None  # the row this one is compared with (idle variants)
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        """chatmq / Mosquitto of the headline figure (higher is better for msg/s and conn/s, lower
        for RSS and latency)."""
        return ratio(self.chatmq.value(self.unit), self.mosquitto.value(self.unit))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "key": self.key, "title": self.title, "unit": self.unit, "ratio": self.ratio,
            "baseline": self.baseline, "notes": list(self.notes),
            "mosquitto": self.mosquitto.to_json(), "chatmq": self.chatmq.to_json(),
        }


def ratio(ours: float | None, theirs: float | None) -> float | None:
    """``ours / theirs``, or ``None`` when either is missing or ``theirs`` is not positive."""
    if ours is None or theirs is None or theirs <= 0:
        return None
    return ours / theirs


def format_ratio(value: float | None) -> str:
    """A ratio for the table: three significant digits, with a percentage below 1 (``0.0412× (4.1%)``)."""
    if value is None:
        return "–"
    return f"{value:.3g}× ({value:.1%})" if value < 1 else f"{value:.3g}×"


def format_figure(m: Measurement, unit: str) -> str:
    """A table cell for a measurement's headline figure; ``*`` marks a smaller size than requested."""
    value = m.value(unit)
    if value is None:
        return str(m.status)
    if unit == "KiB/conn":
        text = f"{value:,.1f} KiB"
    elif unit == "p99 ms":
        text = f"p99 {value:,.1f} ms"
    else:
        text = f"{value:,.0f} {unit}"
    if m.reduced:
        text += "*"
    if m.status is Status.LOST:
        text += " (lost)"
    return text


def format_latency(m: Measurement) -> str:
    """``p50 / p99`` in ms, or ``–``."""
    if m.p50_ms is None or m.p99_ms is None or m.p50_ms < 0:
        return "–"
    return f"{m.p50_ms:.1f} / {m.p99_ms:.1f}"


def format_lost(row: RowResult) -> str:
    """Lost messages as ``Mosquitto / chatmq``."""
    def one(m: Measurement) -> str:
        return "–" if m.lost is None else f"{m.lost:,}"
    if row.mosquitto.lost is None and row.chatmq.lost is None:
        return "–"
    return f"{one(row.mosquitto)} / {one(row.chatmq)}"


def row_notes(row: RowResult, rows: dict[str, RowResult]) -> list[str]:
    """The notes shown for a row: its own, smaller sizes, timeouts, and retention against its baseline."""
    notes = list(row.notes)
    for name, m in (("Mosquitto", row.mosquitto), ("chatmq", row.chatmq)):
        if m.reduced:
            notes.append(f"{name} at {m.messages_per_pair:,}/pair" + (f" ({m.note})" if m.note else ""))
        elif m.note and m.status not in (Status.NOT_YET, Status.SKIPPED, Status.UNSUPPORTED):
            notes.append(f"{name}: {m.note}")
    base = rows.get(row.baseline) if row.baseline else None
    if base is not None:
        kept = [(name, ratio(m.rate, b.rate)) for name, m, b in
                (("Mosquitto", row.mosquitto, base.mosquitto), ("chatmq", row.chatmq, base.chatmq))]
        parts = [f"{name} {r:.0%}" for name, r in kept if r is not None]
        if parts:
            notes.append(f"kept of the {base.key} rate: " + ", ".join(parts))
    return notes


def markdown_table(rows: Sequence[RowResult]) -> str:
    """The result table in Markdown (one line per row, both brokers side by side)."""
    by_key = {r.key: r for r in rows}
    lines = [
        "| row | Mosquitto | chatmq | chatmq / Mosquitto | p50 / p99 ms Mosquitto | p50 / p99 ms chatmq "
        "| lost (M / c) | notes |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        cells = [row.title, format_figure(row.mosquitto, row.unit), format_figure(row.chatmq, row.unit),
                 format_ratio(row.ratio), format_latency(row.mosquitto), format_latency(row.chatmq),
                 format_lost(row), "; ".join(row_notes(row, by_key))]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if any(r.mosquitto.reduced or r.chatmq.reduced for r in rows):
        lines.append("")
        lines.append("\\* measured with fewer messages per pair: the requested size would not finish within "
                     "the row timeout (see notes).")
    return "\n".join(lines) + "\n"


PLOT_WIDTH = 40  # columns for Mosquitto's figure


def text_plot(rows: Sequence[RowResult]) -> str:
    """Bars of each measured msg/s row, Mosquitto's figure ``PLOT_WIDTH`` columns wide and chatmq's
    to the same scale (so the bar lengths show the ratio); a code block for Markdown."""
    lines = [f"msg/s, chatmq beside Mosquitto (Mosquitto = {PLOT_WIDTH} columns)", ""]
    pad = max((len(r.title) for r in rows), default=0)
    for row in rows:
        theirs, ours = row.mosquitto.value(row.unit), row.chatmq.value(row.unit)
        if row.unit != "msg/s" or theirs is None or theirs <= 0:
            continue
        bar_ours = ""
        if ours is not None and ours > 0:
            bar_ours = "█" * min(3 * PLOT_WIDTH, max(1, round(ours / theirs * PLOT_WIDTH)))
        lines.append(f"{row.title:<{pad}}  Mosquitto {'█' * PLOT_WIDTH} {theirs:,.0f}")
        ours_text = str(row.chatmq.status) if ours is None else f"{ours:,.0f}{'*' if row.chatmq.reduced else ''}"
        lines.append(f"{'':<{pad}}  chatmq    {bar_ours} {ours_text}".rstrip())
    return "```text\n" + "\n".join(lines) + "\n```\n"


def measurement_from_json(d: dict[str, Any]) -> Measurement:
    """A ``Measurement`` back from ``Measurement.to_json``."""
    fields = {k: v for k, v in d.items() if k != "reduced"}
    fields["status"] = Status(fields["status"])
    return Measurement(**fields)


def rows_from_json(data: dict[str, Any]) -> list[RowResult]:
    """The rows of a ``report_json`` document."""
    return [RowResult(r["key"], r["title"], r["unit"], measurement_from_json(r["mosquitto"]),
                      measurement_from_json(r["chatmq"]), r.get("baseline"), list(r.get("notes", [])))
            for r in data["rows"]]


def report_markdown(rows: Sequence[RowResult], meta: dict[str, Any]) -> str:
    """The table, a line saying where and how it was measured, and the plot."""
    load = meta.get("load", {})
    machine = meta.get("machine", {})
    where = (f"{meta.get('mode', '?')} run, {meta.get('started', '?')}, commit {meta.get('commit') or '?'}: "
             f"{load.get('pairs', '?')} pairs × {load.get('messages', 0):,} messages of {load.get('size', '?')} "
             f"bytes, {load.get('idle', 0):,} idle clients; {machine.get('cores', '?')} cores "
             f"({machine.get('cpu') or '?'}), Mosquitto {meta.get('mosquitto') or '?'}, amqtt "
             f"{meta.get('amqtt') or '?'}, Python {machine.get('python', '?')}.")
    return where + "\n\n" + markdown_table(rows) + "\n" + text_plot(rows)


def report_json(rows: Sequence[RowResult], meta: dict[str, Any]) -> dict[str, Any]:
    """Everything measured, JSON-ready: ``{"meta": ..., "rows": [...]}``."""
    return {"meta": meta, "rows": [r.to_json() for r in rows]}


# --------------------------------------------------------------------------------------------
# Mosquitto configuration
# --------------------------------------------------------------------------------------------


def mosquitto_config(port: int, log_path: Path, *, as_root: bool | None = None) -> str:
    """A Mosquitto config for the benchmark: one anonymous listener on 127.0.0.1:``port``.

    Persistence is off and the log goes to ``log_path`` (errors, warnings and notices; no line per
    connection, since the idle rows open thousands). As root, Mosquitto would drop to the
    ``mosquitto`` user and could not write the log in our temporary folder, so it stays root.
    """
    if as_root is None:
        as_root = os.geteuid() == 0
    lines = [
        f"listener {port} {HOST}",
        "allow_anonymous true",
        f"max_queued_messages {MAX_QUEUED}",
        "persistence false",
        f"log_dest file {log_path}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "connection_messages false",
    ]
    if as_root:
        lines.append("user root")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# MQTT packets and the idle clients
# --------------------------------------------------------------------------------------------

class IdleClientError(BenchError):
    """An idle client was refused or its connection dropped before SUBACK."""


def check_handshake(data: bytes, packet_id: int = 1) -> int:
    """Checks CONNACK then SUBACK at the start of ``data`` (9 bytes); returns the granted QoS.

    Raises ``IdleClientError`` on a refusal or anything unexpected."""
    if len(data) < 9:
        raise IdleClientError(f"short handshake reply: {data.hex()}")
    if data[0] != 0x20 or data[1] != 2 or data[3] != 0:
        raise IdleClientError(f"CONNACK refused or malformed: {data[:4].hex()}")
    if data[4] != 0x90 or data[5] != 3 or int.from_bytes(data[6:8], "big") != packet_id:
        raise IdleClientError(f"unexpected reply instead of SUBACK: {data[4:9].hex()}")
    if data[8] > 2:
        raise IdleClientError(f"subscription refused (return code {data[8]:#x})")
    return data[8]


class _IdleProtocol(asyncio.Protocol):
    """One idle client: sends CONNECT and SUBSCRIBE in one write, checks CONNACK and SUBACK, then sits."""

    def __init__(self, greeting: bytes, done: asyncio.Future[int]) -> None:
        self._greeting = greeting
        self._done = done
        self._buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self._greeting)

    def data_received(self, data: bytes) -> None:
        self._take(data)

    def _take(self, data: bytes) -> None:
        """MQTT bytes from the broker: the handshake's replies, then nothing that matters."""
        if self._done.done():
            return  # an idle client ignores anything after its handshake
        self._buf += data
        if len(self._buf) >= 9:
            try:
                self._done.set_result(check_handshake(self._buf))
            except IdleClientError as exc:
                self._done.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done.done():
            self._done.set_exception(IdleClientError(f"connection closed before SUBACK ({exc or 'EOF'})"))


class IdleClients:
    """Idle MQTT clients, each subscribed (QoS 1) to ``idle/<prefix>/<i>``: a chat node's connected users.

    ``await open(...)`` connects them, at most ``concurrency`` handshakes in flight (brokers listen
    with small backlogs); ``await close()`` sends DISCONNECT and closes every connection."""

    def __init__(self, host: str, port: int, *, prefix: str | None = None) -> None:
        self.host = host
        self.port = port
        self.prefix = prefix or f"idle-{os.getpid()}"
        self._transports: list[asyncio.Transport] = []

    def __len__(self) -> int:
        return len(self._transports)

    def _greeting(self, i: int) -> bytes:
        """What client ``i`` sends first: its CONNECT and SUBSCRIBE (packet id 1), in one write."""
        return encode_connect(f"{self.prefix}-{i}") + encode_subscribe(1, [(f"idle/{self.prefix}/{i}", 1)])

    async def _one(self, i: int, timeout: float, attempts: int) -> None:
        loop = asyncio.get_running_loop()
        greeting = self._greeting(i)
        for attempt in range(attempts):
            done: asyncio.Future[int] = loop.create_future()
            transport: asyncio.Transport | None = None
            try:
                async with asyncio.timeout(timeout):
                    transport, _ = await loop.create_connection(
                        functools.partial(self._protocol, greeting, done), self.host, self.port)
                    await done
            except (OSError, TimeoutError, IdleClientError):
                if transport is not None:
                    transport.abort()
                if attempt == attempts - 1:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))
                continue
            assert transport is not None
            self._transports.append(transport)
            return

    async def open(self, n: int, *, concurrency: int = 100, timeout: float = 20.0, attempts: int = 3) -> None:
        """Connects ``n`` more clients; raises (after closing those it opened) when one keeps failing."""
        sem = asyncio.Semaphore(concurrency)
        start = len(self._transports)

        async def guarded(i: int) -> None:
            async with sem:
                await self._one(i, timeout, attempts)

        try:
            async with asyncio.TaskGroup() as tg:
                for i in range(start, start + n):
                    tg.create_task(guarded(i))
        except BaseExceptionGroup as group:
            await self.close()
            first = group.exceptions[0]
            raise IdleClientError(f"could not open {n} idle clients: {first!r}") from first

    def _protocol(self, greeting: bytes, done: asyncio.Future[int]) -> asyncio.Protocol:
        return _IdleProtocol(greeting, done)

    def _goodbye(self) -> bytes:
        return DISCONNECT_BYTES

    async def close(self, *, abort: bool = False) -> None:
        """Sends DISCONNECT on every connection and closes it, or with ``abort`` drops every
        connection at once (a TCP reset, no DISCONNECT: a network failure to the broker); harmless
        when already closed."""
        transports, self._transports = self._transports, []
        goodbye = self._goodbye()
        for t in transports:
            if abort:
                t.abort()
            elif not t.is_closing():
                t.write(goodbye)
                t.close()
        await asyncio.sleep(0)  # let the loop run the close callbacks


WS_PATH = "/mqtt"


def ws_frame(payload: bytes, opcode: int = 0x2) -> bytes:
    """One masked client frame (RFC 6455 §5.2) carrying ``payload``; the mask is fixed (a benchmark)."""
    mask = b"\x11\x22\x33\x44"
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def ws_unframe(buf: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """The complete unmasked server frames at the start of ``buf`` as ``(opcode, payload)``, and the rest."""
    frames: list[tuple[int, bytes]] = []
    pos = 0
    while len(buf) - pos >= 2:
        opcode, n = buf[pos] & 0x0F, buf[pos + 1] & 0x7F
        head = 2
        if n == 126:
            if len(buf) - pos < 4:
                break
            n, head = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
        elif n == 127:
            if len(buf) - pos < 10:
                break
            n, head = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
        if len(buf) - pos < head + n:
            break
        frames.append((opcode, buf[pos + head:pos + head + n]))
        pos += head + n
    return frames, buf[pos:]


class _WsIdleProtocol(_IdleProtocol):
    """One idle MQTT-over-WebSocket client: upgrade, then CONNECT and SUBSCRIBE in one frame; answers
    pings; checks CONNACK and SUBACK, then sits."""

    def __init__(self, host: str, greeting: bytes, done: asyncio.Future[int]) -> None:
        super().__init__(ws_frame(greeting), done)
        self._request = (f"GET {WS_PATH} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n").encode()
        self._upgraded = False
        self._frames = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self._frames += data
        if not self._upgraded:
            end = self._frames.find(b"\r\n\r\n")
            if end < 0:
                return
            status = self._frames[:self._frames.find(b"\r\n")]
            if b" 101 " not in status and not self._done.done():
                self._done.set_exception(IdleClientError(f"WebSocket upgrade refused: {status!r}"))
                return
            self._upgraded = True
            self._frames = self._frames[end + 4:]
            self.transport.write(self._greeting)
        frames, self._frames = ws_unframe(self._frames)
        for opcode, payload in frames:
            if opcode == 0x9:  # ping
                self.transport.write(ws_frame(payload, 0xA))
            elif opcode in (0x0, 0x2):
                self._take(payload)


class WsIdleClients(IdleClients):
    """``IdleClients`` over WebSocket (path ``/mqtt``, subprotocol ``mqtt``)."""

    def _protocol(self, greeting: bytes, done: asyncio.Future[int]) -> asyncio.Protocol:
        return _WsIdleProtocol(f"{self.host}:{self.port}", greeting, done)

    def _goodbye(self) -> bytes:
        return ws_frame(DISCONNECT_BYTES)


def raise_nofile(needed: int) -> int:
    """Raises this process's open-file limit (inherited by the brokers it starts) to at least ``needed``
    when the hard limit allows (or root can lift it); returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return soft
    want = needed if hard == resource.RLIM_INFINITY else max(needed, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want) if hard != resource.RLIM_INFINITY
                                                      else hard))
    except (ValueError, OSError):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --------------------------------------------------------------------------------------------
# Installing and building
# --------------------------------------------------------------------------------------------


def find_mosquitto() -> Path | None:
    """The ``mosquitto`` executable (Debian puts it in /usr/sbin, which PATH may lack)."""
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    return Path(found) if found else None


def _run_step(cmd: Sequence[str], what: str, *, env: dict[str, str] | None = None) -> None:
    echo(f"bench: {what}: {' '.join(cmd)}")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise BenchError(f"{what} failed (exit {proc.returncode}):\n{tail}")


def _stop_mosquitto_service() -> None:
    """The Debian package may start a system service on 1883; stop and disable it (best effort)."""
    if Path("/run/systemd/system").is_dir() and shutil.which("systemctl"):
        cmds = [["systemctl", "disable", "--now", "mosquitto"]]
    elif Path("/etc/init.d/mosquitto").exists():
        cmds = [["/etc/init.d/mosquitto", "stop"], ["update-rc.d", "mosquitto", "disable"]]
    else:
        return
    for cmd in cmds:
        if shutil.which(cmd[0]) or Path(cmd[0]).exists():
            subprocess.run(cmd, capture_output=True, check=False)
    echo("bench: stopped and disabled the mosquitto system service (the benchmark never uses port 1883)")


def ensure_mosquitto() -> Path:
    """The mosquitto executable, installed with apt-get when missing (root only)."""
    exe = find_mosquitto()
    if exe is not None:
        return exe
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise BenchError("mosquitto is not installed; install the Debian package: apt-get install -y mosquitto")
    echo("bench: mosquitto not found; installing the Debian package")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run_step(["apt-get", "update"], "apt-get update", env=env)
    _run_step(["apt-get", "install", "-y", "--no-install-recommends", "mosquitto"], "install mosquitto", env=env)
    _stop_mosquitto_service()
    exe = find_mosquitto()
    if exe is None:
        raise BenchError("apt-get installed mosquitto but no mosquitto executable was found")
    return exe


def ensure_relay(src: Path, binary: Path = DEFAULT_RELAY_BIN) -> Path:
    """mqttrelay built from ``src`` with ``cc -O2`` into ``binary``; rebuilt when the source is newer."""
    if not src.is_file():
        raise BenchError(f"mqttrelay source not found: {src} (give it with --relay-src)")
    if binary.is_file() and binary.stat().st_mtime >= src.stat().st_mtime:
        return binary
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise BenchError("no C compiler (cc) to build mqttrelay; install the Debian package gcc")
    binary.parent.mkdir(parents=True, exist_ok=True)
    tmp = binary.with_name(f".{binary.name}.{os.getpid()}")
    _run_step([cc, "-O2", "-o", str(tmp), str(src)], "build mqttrelay")
    tmp.replace(binary)
    return binary


# --------------------------------------------------------------------------------------------
# Broker processes
# --------------------------------------------------------------------------------------------


def read_rss_kib(pid: int) -> int:
    """``VmRSS`` of a process in KiB, from ``/proc/<pid>/status``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


def read_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, from ``/proc/<pid>/stat``."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mqtt_ping(host: str, port: int, timeout: float = 2.0) -> bool:
    """Whether an MQTT broker at ``host:port`` answers CONNECT with an accepting CONNACK."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(encode_connect(f"bench-ping-{os.getpid()}"))
            data = b""
            while len(data) < 4:
                chunk = s.recv(4 - len(data))
                if not chunk:
                    return False
                data += chunk
            s.sendall(DISCONNECT_BYTES)
            return data[0] == 0x20 and data[3] == 0
    except OSError:
        return False


class BrokerProcess:
    """A broker under test, run as a child process in its own session (Ctrl-C reaches us, not it)."""

    def __init__(self, key: str, name: str, cmd: Sequence[str], port: int, log_path: Path,
                 env: dict[str, str] | None = None, ws_port: int | None = None) -> None:
        self.key = key  # "chatmq" or "mosquitto": the key of its results
        self.name = name
        self.cmd = list(cmd)
        self.env = env
        self.ws_port = ws_port  # MQTT over WebSocket (path /mqtt), when the broker has it
        self.port = port
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The broker's process id."""
        assert self.proc is not None, "not started"
        return self.proc.pid

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the broker's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def start(self, ready_timeout: float = 30.0) -> None:
        """Starts the broker and waits until it answers an MQTT CONNECT."""
        echo(f"bench: starting {self.name} on {HOST}:{self.port}")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True,
                                         env={**os.environ, **self.env} if self.env else None)
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.proc.returncode} at start:\n{self.log_tail()}")
            if mqtt_ping(HOST, self.port):
                return
            time.sleep(0.1)
        raise BenchError(f"{self.name} did not accept MQTT connections within {ready_timeout:.0f} s:\n"
                         f"{self.log_tail()}")

    def restart(self) -> None:
        """Stops and starts the broker again, on the same port."""
        self.stop()
        self.start()

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; harmless when not running or already stopped."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        echo(f"bench: stopped {self.name}")

    def settle(self, *, interval: float = 0.5, busy_share: float = 0.05, limit: float = 30.0) -> float:
        """Waits until the broker uses under ``busy_share`` of a core over ``interval`` (at most
        ``limit`` seconds); returns the seconds waited."""
        start = time.monotonic()
        if not self.alive():
            return 0.0
        last = read_cpu_seconds(self.pid)
        while time.monotonic() - start < limit:
            time.sleep(interval)
            if not self.alive():
                break
            now = read_cpu_seconds(self.pid)
            if now - last < busy_share * interval:
                break
            last = now
        return time.monotonic() - start


def chatmq_broker(port: int, workdir: Path, ws_port: int | None = None) -> BrokerProcess:
    """The chatmq plain broker node (``python -m chatmq.run.cli broker --allow-anonymous``), with
    Mosquitto's queue bound; each keeps its own default in-flight window (Mosquitto 20, chatmq 100)."""
    cmd = [sys.executable, "-m", "chatmq.run.cli", "broker", "--allow-anonymous", "--host", HOST,
           "--mqtt-port", str(port)]
    if ws_port is not None:
        cmd += ["--ws-port", str(ws_port)]
    env = {"CHATMQ_BROKER_QUEUE_SIZE": str(MAX_QUEUED)}
    return BrokerProcess("chatmq", "chatmq", cmd, port, workdir / "chatmq.log", env, ws_port)


def mosquitto_broker(exe: Path, port: int, workdir: Path) -> BrokerProcess:
    """Mosquitto with the config of ``mosquitto_config``."""
    conf = workdir / "mosquitto.conf"
    log = workdir / "mosquitto.log"
    conf.write_text(mosquitto_config(port, log))
    return BrokerProcess("mosquitto", "Mosquitto", [str(exe), "-c", str(conf)], port, workdir / "mosquitto.out")


@contextlib.contextmanager
def running_brokers(mosquitto_exe: Path, workdir: Path) -> Iterator[dict[str, BrokerProcess]]:
    """Both brokers started on free ports; both stopped on leaving, whatever happened."""
    brokers = {"mosquitto": mosquitto_broker(mosquitto_exe, free_port(), workdir),
               "chatmq": chatmq_broker(free_port(), workdir, free_port())}
    try:
        for b in brokers.values():
            b.start()
        yield brokers
    finally:
        for b in brokers.values():
            b.stop()


# --------------------------------------------------------------------------------------------
# Fan-in and fan-out load (mqttrelay has 1:1 pairs only)
# --------------------------------------------------------------------------------------------

FAN_TOPICS = {"fanin": "fan/in", "fanout": "fan/out", "pairs": "fan/pairs", "shared": "fan/shared"}
SHARE_GROUP = "$share/bench/"  # the "shared" mode's subscribers: one shared subscription, each message to one
PACE_TICK = 0.005  # a rate-limited publisher sends what is due every 5 ms
FAN_WINDOW = 64  # QoS 1 messages in flight per publisher, as mqttrelay
SAMPLE_EVERY = 16  # one latency sample per this many messages received


@dataclass(frozen=True)
class PublishLayout:
    """Where things are in a PUBLISH of a fixed topic, QoS and payload size.

    Every message of a fan run has the same length, so a receiver counts messages by bytes,
    checks the fixed headers with one strided slice, and builds its PUBACKs with strided slices:
    the per-message work stays in C, so the generator outruns the brokers."""

    topic: str
    qos: int
    size: int

    @property
    def length(self) -> int:
        """Bytes of one PUBLISH packet."""
        body = 2 + len(self.topic.encode()) + (2 if self.qos else 0) + self.size
        return 1 + len(encode_remaining_length(body)) + body

    @property
    def packet_id_offset(self) -> int:
        """Offset of the packet id (QoS 1); also where the payload starts at QoS 0."""
        return self.length - self.size - (2 if self.qos else 0)

    @property
    def payload_offset(self) -> int:
        """Offset of the payload (its first 8 bytes: send time, ns, little-endian)."""
        return self.length - self.size

    def template(self) -> bytes:
        """One PUBLISH with packet id 0 and a zero timestamp."""
        body = encode_string(self.topic) + (b"\x00\x00" if self.qos else b"") + bytes(8) + b"x" * (self.size - 8)
        return bytes([0x30 | (self.qos << 1)]) + encode_remaining_length(len(body)) + body

    def headers_ok(self, chunk: bytes) -> bool:
        """Whether every packet in ``chunk`` (a whole number of packets) starts with a PUBLISH header
        of this QoS (DUP allowed, RETAIN not)."""
        heads = chunk[0::self.length]
        plain = 0x30 | (self.qos << 1)
        return heads.count(plain) + (heads.count(plain | 0x08) if self.qos else 0) == len(heads)


def pubacks_for(chunk: bytes, layout: PublishLayout) -> bytes:
    """The PUBACKs for every QoS 1 PUBLISH in ``chunk`` (a whole number of packets), in order."""
    n = len(chunk) // layout.length
    out = bytearray(4 * n)
    out[0::4] = b"\x40" * n
    out[1::4] = b"\x02" * n
    off = layout.packet_id_offset
    out[2::4] = chunk[off::layout.length][:n]
    out[3::4] = chunk[off + 1::layout.length][:n]
    return bytes(out)


class _FanConn(asyncio.Protocol):
    """A fan-run connection: handshake (CONNACK, and SUBACK when subscribing), then publish or receive."""

    def __init__(self, greeting: bytes, reply_len: int, receiver: _Receiver | None) -> None:
        self.greeting = greeting
        self.reply_len = reply_len
        self.receiver = receiver
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.writable = asyncio.Event()
        self.writable.set()
        self.acked = 0  # PUBACKs received (a publisher's connection gets nothing else)
        self.ack_event = asyncio.Event()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed.add_done_callback(lambda f: f.cancelled() or f.exception())  # read: no "never retrieved"
        self._buf = b""
        self._ack_bytes = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self.transport.write(self.greeting)

    def data_received(self, data: bytes) -> None:
        if not self.ready.done():
            self._buf += data
            if len(self._buf) < self.reply_len:
                return
            reply, data, self._buf = self._buf[:self.reply_len], self._buf[self.reply_len:], b""
            try:
                if reply[0] != 0x20 or reply[3] != 0:
                    raise IdleClientError(f"CONNACK refused: {reply[:4].hex()}")
                if self.reply_len > 4:
                    check_handshake(reply)
            except IdleClientError as exc:
                self.ready.set_exception(exc)
                return
            self.ready.set_result(None)
        if not data:
            return
        if self.receiver is not None:
            assert self.transport is not None
            self.receiver.feed(data, self.transport)
        else:
            self._ack_bytes += len(data)
            self.acked = self._ack_bytes // 4
            self.ack_event.set()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        err = IdleClientError(f"broker closed a connection ({exc or 'EOF'})")
        for fut in (self.ready, self.closed):
            if not fut.done():
                fut.set_exception(err)
        self.writable.set()
        self.ack_event.set()


class _Receiver:
    """Counts fixed-length PUBLISH packets, samples latency, acknowledges QoS 1 in batches."""

    def __init__(self, layout: PublishLayout, expected: int, progress: Callable[[int], None]) -> None:
        self.layout = layout
        self.expected = expected
        self.count = 0
        self.latencies_ns: list[int] = []
        self.error: str | None = None
        self._progress = progress
        self._pending = b""

    def feed(self, data: bytes, transport: asyncio.Transport) -> None:
        """Takes bytes from the broker."""
        buf = self._pending + data if self._pending else data
        size = self.layout.length
        n = len(buf) // size
        if n:
            chunk = buf[:n * size]
            if not self.layout.headers_ok(chunk):
                self.error = "unexpected packet in a subscriber's stream"
                transport.close()
                return
            if self.layout.qos:
                transport.write(pubacks_for(chunk, self.layout))
            now = time.monotonic_ns()
            off = self.layout.payload_offset
            for j in range((-self.count) % SAMPLE_EVERY, n, SAMPLE_EVERY):
                self.latencies_ns.append(now - int.from_bytes(chunk[j * size + off:j * size + off + 8], "little"))
            self.count += n
            self._progress(n)
        self._pending = buf[n * size:]


async def _publish(conn: _FanConn, layout: PublishLayout, messages: int, rate: float | None = None) -> None:
    """Sends ``messages`` PUBLISH packets, QoS 1 with a window of ``FAN_WINDOW``; with ``rate``, at
    most that many per second (what is due every ``PACE_TICK``), else as fast as the broker takes them."""
    assert conn.transport is not None
    template = layout.template()
    size, pid_off, pay_off = layout.length, layout.packet_id_offset, layout.payload_offset
    sent = 0
    start = time.monotonic()
    while sent < messages:
        if rate is not None:
            due = min(messages, int((time.monotonic() - start) * rate) + 1)
            if due <= sent:
                await asyncio.sleep(PACE_TICK)
                continue
        else:
            due = messages
        if layout.qos:
            while sent - conn.acked >= FAN_WINDOW:
                conn.ack_event.clear()
                await conn.ack_event.wait()
                if conn.closed.done():
                    conn.closed.result()
            n = min(FAN_WINDOW - (sent - conn.acked), due - sent)
        else:
            await conn.writable.wait()
            if conn.closed.done():
                conn.closed.result()
            n = min(256, due - sent)
        buf = bytearray(template * n)
        stamp = time.monotonic_ns().to_bytes(8, "little")
        for k in range(n):
            base = k * size
            buf[base + pay_off:base + pay_off + 8] = stamp
            if layout.qos:
                buf[base + pid_off:base + pid_off + 2] = ((sent + k) % 65000 + 1).to_bytes(2, "big")
        conn.transport.write(buf)
        sent += n
        if not layout.qos:
            await asyncio.sleep(0)


async def fan_load(host: str, port: int, mode: str, clients: int, messages: int, qos: int, size: int,
                   deadline: float = 120.0, stall: float = 10.0,
                   rate: float | None = None) -> tuple[RelayResult, str | None]:
    """A fan-in (``clients`` publishers → one subscriber), fan-out (one publisher → ``clients``
    subscribers), shared (``clients`` publishers → ``clients`` members of one shared subscription
    ``$share/bench/…``, each message delivered to one of them) or pairs (``clients``
    publisher/subscriber pairs, each on its own topic, like mqttrelay) run of ``messages`` per
    publisher, with ``rate`` the total publishes per second (else as fast as the broker takes
    them); returns mqttrelay's figures (``pairs`` = clients, ``total`` =
    deliveries expected) and an error, if any. The run ends when every delivery arrived, after
    ``deadline`` seconds, or when, once deliveries have begun, nothing arrived for ``stall``
    seconds after the last publish (a broker that dropped messages: Mosquitto drops QoS 1 messages
    past ``max_queued_messages``). A slow broker that has delivered nothing yet is waited for."""
    if mode not in FAN_TOPICS:
        raise ValueError(f"mode must be fanin, fanout, shared or pairs, not {mode!r}")
    loop = asyncio.get_running_loop()
    base = f"{FAN_TOPICS[mode]}/{os.getpid()}"  # no run sees another's messages
    if mode == "pairs":
        pub_layouts = sub_layouts = [PublishLayout(f"{base}/{i:05d}", qos, size) for i in range(clients)]
    elif mode == "fanin":
        pub_layouts, sub_layouts = [PublishLayout(base, qos, size)] * clients, [PublishLayout(base, qos, size)]
    elif mode == "shared":
        pub_layouts = sub_layouts = [PublishLayout(base, qos, size)] * clients
    else:
        pub_layouts, sub_layouts = [PublishLayout(base, qos, size)], [PublishLayout(base, qos, size)] * clients
    pubs, subs = len(pub_layouts), len(sub_layouts)
    per_sub = messages * (pubs if mode in ("fanin", "shared") else 1)
    total = per_sub * (1 if mode == "shared" else subs)  # shared: each message reaches one member
    per_pub_rate = rate / pubs if rate else None
    got = 0
    last = time.monotonic()
    all_in: asyncio.Future[None] = loop.create_future()

    def progress(n: int) -> None:
        nonlocal got, last
        got += n
        last = time.monotonic()
        if got >= total and not all_in.done():
            all_in.set_result(None)

    prefix = f"fan-{os.getpid()}"
    conns: list[_FanConn] = []
    receivers: list[_Receiver] = []

    async def connect(cid: str, receiver: _Receiver | None) -> _FanConn:
        greeting = encode_connect(cid)
        if receiver is not None:
            topic_filter = SHARE_GROUP + receiver.layout.topic if mode == "shared" else receiver.layout.topic
            greeting += encode_subscribe(1, [(topic_filter, qos)])
        conn = _FanConn(greeting, 9 if receiver is not None else 4, receiver)
        await loop.create_connection(lambda: conn, host, port)
        conns.append(conn)
        try:
            async with asyncio.timeout(20):
                await conn.ready
        except TimeoutError:
            raise IdleClientError(f"{cid}: no CONNACK/SUBACK within 20 s") from None
        return conn

    error: str | None = None
    t0 = time.monotonic()
    try:
        for i, sub_layout in enumerate(sub_layouts):
            receivers.append(_Receiver(sub_layout, per_sub, progress))
            await connect(f"{prefix}-sub-{i}", receivers[-1])
        publishers = [await connect(f"{prefix}-pub-{i}", None) for i in range(pubs)]
        t0 = last = time.monotonic()
        async with asyncio.timeout(deadline):
            async with asyncio.TaskGroup() as tg:
                for conn, pub_layout in zip(publishers, pub_layouts, strict=True):
                    tg.create_task(_publish(conn, pub_layout, messages, per_pub_rate))
            while not all_in.done():  # all sent: wait for the rest, unless deliveries have stopped
                await asyncio.wait([all_in], timeout=0.25)
                if got and time.monotonic() - last > stall:
                    error = f"stalled: nothing more arrived for {stall:.0f} s after the last publish"
                    break
    except TimeoutError:
        error = f"deadline: not all in after {deadline:.0f} s"
    except (OSError, IdleClientError, BaseExceptionGroup) as exc:
        error = repr(exc.exceptions[0] if isinstance(exc, BaseExceptionGroup) else exc)
    finally:
        for conn in conns:
            if conn.transport is not None and not conn.transport.is_closing():
                conn.transport.write(DISCONNECT_BYTES)
                conn.transport.close()
    error = error or next((r.error for r in receivers if r.error), None)
    lat = sorted(x for r in receivers for x in r.latencies_ns)
    elapsed = last - t0
    result = RelayResult(
        port=port, qos=qos, pairs=clients, total=total, elapsed_s=elapsed,
        rate=got / elapsed if elapsed > 0 else 0.0,
        p50_ms=lat[len(lat) // 2] / 1e6 if lat else -1.0, p99_ms=lat[int(len(lat) * 0.99)] / 1e6 if lat else -1.0,
        lost=total - got,
    )
    return result, error


def format_relay_line(r: RelayResult) -> str:
    """A result line in mqttrelay's format (``parse_relay_output`` reads it back)."""
    return (f"port={r.port} qos={r.qos} pairs={r.pairs} msgs={r.total} elapsed={r.elapsed_s:.2f}s "
            f"rate={r.rate:.0f} msg/s p50={r.p50_ms:.1f}ms p99={r.p99_ms:.1f}ms lost={r.lost}")


# --------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowSpec:
    """What a row measures."""

    key: str
    title: str
    kind: str  # "relay", "fanin", "fanout", "shared", "halfrate", "connect", "rss", "ws_connect", "ws_rss" or "not yet"
    qos: int = 0
    idle: bool = False
    baseline: str | None = None
    unit: str = "msg/s"
    reason: str = ""  # why the row is not yet measured
    rate_of: str | None = None  # "halfrate": the row whose rate, halved, this one runs at
    version: int = 4  # the MQTT protocol level of the load (5: MQTT 5, mqttrelay's VERSION; relay rows only)


def row_specs(idle: int) -> list[RowSpec]:
    """Every row of the table, in order."""
    n = f"{idle:,} idle"
    return [
        RowSpec("qos0", "QoS 0 relay", "relay", qos=0),
        RowSpec("qos1", "QoS 1 relay", "relay", qos=1),
        RowSpec("qos0_v5", "QoS 0 relay, MQTT 5", "relay", qos=0, version=5, baseline="qos0"),
        RowSpec("qos1_v5", "QoS 1 relay, MQTT 5", "relay", qos=1, version=5, baseline="qos1"),
        RowSpec("fanin", "fan-in QoS 0 (10 → 1)", "fanin", qos=0),
        RowSpec("fanout", "fan-out QoS 1 (1 → 10)", "fanout", qos=1),
        RowSpec("shared", "shared subscription QoS 1 (10 → $share of 10)", "shared", qos=1),
        RowSpec("qos0_half", "QoS 0 relay at half its max rate", "halfrate", qos=0, unit="p99 ms", rate_of="qos0"),
        RowSpec("qos1_half", "QoS 1 relay at half its max rate", "halfrate", qos=1, unit="p99 ms", rate_of="qos1"),
        RowSpec("qos0_idle", f"QoS 0 relay + {n}", "relay", qos=0, idle=True, baseline="qos0"),
        RowSpec("qos1_idle", f"QoS 1 relay + {n}", "relay", qos=1, idle=True, baseline="qos1"),
        RowSpec("fanin_idle", f"fan-in QoS 0 + {n}", "fanin", qos=0, idle=True, baseline="fanin"),
        RowSpec("fanout_idle", f"fan-out QoS 1 + {n}", "fanout", qos=1, idle=True, baseline="fanout"),
        RowSpec("connect_idle", f"connecting {idle:,} idle subscribers", "connect", idle=True, unit="conn/s"),
        RowSpec("rss_idle", "RSS per idle TCP connection", "rss", idle=True, unit="KiB/conn"),
        RowSpec("ws", f"connecting {idle:,} WebSocket subscribers", "ws_connect", idle=True, unit="conn/s"),
        RowSpec("ws_rss", "RSS per idle WebSocket connection", "ws_rss", idle=True, unit="KiB/conn"),
    ]


ROW_KEYS = tuple(s.key for s in row_specs(0))


@dataclass(frozen=True)
class Load:
    """The sizes of a run."""

    pairs: int = 10  # relay pairs; also the clients on the wide side of fan-in and fan-out
    messages: int = FULL_MESSAGES  # per publisher
    size: int = 64
    idle: int = FULL_IDLE
    row_timeout: float = FULL_ROW_TIMEOUT
    ladder: bool = True


def _tail(text: str, lines: int = 6) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def load_command(spec: RowSpec, relay: Path, port: int, load: Load, messages: int) -> list[str]:
    """The load generator's command line for a row: mqttrelay, or this module's ``fanload``."""
    if spec.kind == "relay":
        version = [str(spec.version)] if spec.version != 4 else []
        return [str(relay), HOST, str(port), str(load.pairs), str(messages), str(spec.qos), str(load.size), *version]
    return [sys.executable, "-m", "chatmq.bench.bench_broker", "fanload", spec.kind, HOST, str(port),
            str(load.pairs), str(messages), str(spec.qos), str(load.size),
            "--deadline", str(load.row_timeout + 30)]  # we kill it first: a timeout, as with mqttrelay


def run_load_once(cmd: Sequence[str], timeout: float, messages: int) -> Measurement:
    """One load generator run, killed after ``timeout`` seconds; its result line parsed."""
    t0 = time.monotonic()
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        printed = [p.decode(errors="replace") if isinstance(p, bytes) else (p or "") for p in (exc.stdout, exc.stderr)]
        return Measurement(Status.TIMEOUT, messages_per_pair=messages, seconds=time.monotonic() - t0,
                           note=f"no result within {timeout:.0f} s at {messages:,}/pair",
                           output=_tail("".join(printed)))
    seconds = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    result = parse_relay_output(proc.stdout)
    if result is None:
        return Measurement(Status.FAILED, messages_per_pair=messages, seconds=seconds,
                           note=f"load generator exited {proc.returncode}: {_tail(out, 1)}", output=_tail(out))
    return Measurement(
        Status.OK if result.lost == 0 else Status.LOST,
        rate=result.rate, p50_ms=result.p50_ms, p99_ms=result.p99_ms, lost=result.lost, total=result.total,
        messages_per_pair=messages, seconds=seconds, output=_tail(out),
        note="" if result.lost == 0 else f"{result.lost:,} of {result.total:,} lost",
    )


def ladder_sizes(load: Load) -> list[int]:
    """Messages per publisher of a row's runs, smallest first, ending with ``load.messages``."""
    if not load.ladder:
        return [load.messages]
    steps = {max(MIN_LADDER_MESSAGES, load.messages // d) for d in LADDER_DIVISORS}
    return sorted({s for s in steps if s < load.messages} | {load.messages})


def estimated_seconds(m: Measurement, messages: int) -> float | None:
    """How long a run of ``messages`` per publisher should take at ``m``'s rate."""
    if not m.rate or not m.total or not m.messages_per_pair:
        return None
    return m.total * messages / m.messages_per_pair / m.rate


def run_ladder(run: Callable[[int], Measurement], load: Load, *, reset: Callable[[], None] = lambda: None,
               label: str = "") -> Measurement:
    """Runs ``run(messages)`` up the ladder of ``ladder_sizes``; returns the largest size that
    finished, or the failure when none did. After a timeout, ``reset()`` restarts the broker."""
    sizes = ladder_sizes(load)
    best: Measurement | None = None
    spent = 0.0
    for i, messages in enumerate(sizes):
        echo(f"bench:   {label}{load.pairs} x {messages:,} msgs")
        m = run(messages)
        spent += m.seconds
        echo(f"bench:     -> {_summary(m)}")
        if m.status in (Status.TIMEOUT, Status.FAILED):
            if m.status is Status.TIMEOUT:
                echo("bench:     restarting the broker (a killed run leaves messages queued in it)")
                reset()
            if best is not None:
                best.note = f"{messages:,}/pair: {m.status}"
            best = best or m
            break
        best = m
        if i + 1 < len(sizes):
            est = estimated_seconds(m, sizes[i + 1])
            if est is None or est > LADDER_BUDGET * load.row_timeout:
                full = estimated_seconds(m, sizes[-1])
                why = (f"{sizes[-1]:,}/pair would take about {full:,.0f} s at this rate"
                       if full is not None else "nothing arrived")
                m.note = f"{m.note}; {why}" if m.note else why
                break
    assert best is not None
    best.requested_per_pair = load.messages
    best.seconds = spent
    return best


def run_load_row(spec: RowSpec, relay: Path, broker: BrokerProcess, load: Load,
                 reset: Callable[[], None]) -> Measurement:
    """A load row against one broker (see ``run_ladder``)."""

    def run(messages: int) -> Measurement:
        waited = broker.settle()
        if waited > 2:
            echo(f"bench:   {broker.name}: waited {waited:.0f} s for the broker to go idle")
        return run_load_once(load_command(spec, relay, broker.port, load, messages), load.row_timeout, messages)

    m = run_ladder(run, load, reset=reset, label=f"{broker.name}: {spec.kind} QoS {spec.qos}, ")
    if not broker.alive():
        m.status, m.note = Status.FAILED, f"broker died: {broker.log_tail(3)}"
    return m


HALF_RATE_SECONDS = 5.0  # how long a half-rate run lasts


def run_halfrate_row(spec: RowSpec, broker: BrokerProcess, load: Load, full: Measurement | None) -> Measurement:
    """``spec.rate_of``'s load (pairs, QoS) paced at half the rate ``full`` measured on this broker,
    for ``HALF_RATE_SECONDS``: the latency of a loaded but not saturated broker."""
    if full is None or not full.rate:
        return Measurement(Status.FAILED, note=f"needs the {spec.rate_of} row's rate")
    rate = full.rate / 2
    messages = max(MIN_LADDER_MESSAGES, int(rate * HALF_RATE_SECONDS / load.pairs))
    broker.settle()
    echo(f"bench:   {broker.name}: QoS {spec.qos} pairs at {rate:,.0f} msg/s, {load.pairs} x {messages:,} msgs")
    cmd = [sys.executable, "-m", "chatmq.bench.bench_broker", "fanload", "pairs", HOST, str(broker.port),
           str(load.pairs), str(messages), str(spec.qos), str(load.size), "--rate", f"{rate:.0f}",
           "--deadline", str(load.row_timeout + 30)]
    m = run_load_once(cmd, load.row_timeout + HALF_RATE_SECONDS, messages)
    echo(f"bench:     -> {_summary(m)}")
    m.note = (f"{m.note}; " if m.note else "") + (f"paced at {rate:,.0f} msg/s, got {m.rate:,.0f}"
                                                  if m.rate else f"paced at {rate:,.0f} msg/s")
    return m


def _summary(m: Measurement) -> str:
    if m.rate is None:
        return f"{m.status} {m.note}".strip()
    return (f"{m.rate:,.0f} msg/s p50 {m.p50_ms:.1f} ms p99 {m.p99_ms:.1f} ms lost {m.lost} "
            f"({m.seconds:.1f} s)")


@dataclass(frozen=True)
class Opened:
    """How a broker took ``count`` idle clients: seconds, and its RSS before and after (KiB)."""

    count: int
    seconds: float
    rss_before: int
    rss_after: int

    def rss(self) -> Measurement:
        """RSS growth per connection."""
        return Measurement(Status.OK, rss_kib_per_conn=(self.rss_after - self.rss_before) / self.count,
                           seconds=self.seconds,
                           note=f"RSS {self.rss_before / 1024:,.0f} → {self.rss_after / 1024:,.0f} MiB")

    def connect_rate(self) -> Measurement:
        """Connections (CONNECT and SUBSCRIBE answered) per second, all held at once."""
        return Measurement(Status.OK, conn_rate=self.count / self.seconds if self.seconds > 0 else None,
                           seconds=self.seconds, note=f"{self.count:,} in {self.seconds:.1f} s")


def open_measured(loop: asyncio.AbstractEventLoop, broker: BrokerProcess, clients: IdleClients, n: int,
                  what: str) -> Opened:
    """Opens ``n`` of ``clients`` on an idle ``broker``, timing it and reading its RSS before and after
    (once it is idle again). Raises ``IdleClientError``."""
    broker.settle()
    before = read_rss_kib(broker.pid)
    echo(f"bench:   {broker.name}: opening {n:,} {what} (RSS {before:,} KiB)")
    t0 = time.monotonic()
    loop.run_until_complete(clients.open(n))
    seconds = time.monotonic() - t0
    broker.settle()
    opened = Opened(n, seconds, before, read_rss_kib(broker.pid))
    echo(f"bench:     -> {n:,} in {seconds:.1f} s; RSS {opened.rss_after:,} KiB, "
         f"{opened.rss().rss_kib_per_conn:.1f} KiB per connection")
    return opened


def run_idle_phase(relay: Path, broker: BrokerProcess, load: Load, specs: Sequence[RowSpec],
                   results: dict[str, dict[str, Measurement]]) -> None:
    """Opens ``load.idle`` idle clients on ``broker``, measures RSS per connection, runs the idle rows."""
    loop = asyncio.new_event_loop()  # kept (not running) between rows: the idle connections stay open
    clients = IdleClients(HOST, broker.port)
    try:
        try:
            opened = open_measured(loop, broker, clients, load.idle, "idle subscribed clients")
        except IdleClientError as exc:
            for spec in specs:
                results[spec.key][broker.key] = Measurement(Status.FAILED, note=str(exc))
            return

        def reset() -> None:
            loop.run_until_complete(clients.close())
            broker.restart()
            echo(f"bench:   {broker.name}: reconnecting {load.idle:,} idle clients")
            try:
                loop.run_until_complete(clients.open(load.idle))
            except IdleClientError as exc:
                echo(f"bench:   {broker.name}: {exc}; the next rows run without idle clients")

        for spec in specs:
            if spec.kind == "rss":
                results[spec.key][broker.key] = opened.rss()
            elif spec.kind == "connect":
                results[spec.key][broker.key] = opened.connect_rate()
            else:
                results[spec.key][broker.key] = run_load_row(spec, relay, broker, load, reset)
    finally:
        _close_loop(loop, clients)


WS_KINDS = ("ws_connect", "ws_rss")


def run_ws_phase(broker: BrokerProcess, load: Load, specs: Sequence[RowSpec],
                 results: dict[str, dict[str, Measurement]]) -> None:
    """Opens ``load.idle`` idle WebSocket clients on a fresh ``broker`` and measures how fast they
    connected and its RSS per connection; a broker without WebSocket is ``unsupported``."""
    if broker.ws_port is None:
        for spec in specs:
            results[spec.key][broker.key] = Measurement(
                Status.UNSUPPORTED, note="Debian's Mosquitto 2.0.11 is built without WebSocket support")
        return
    loop = asyncio.new_event_loop()
    clients = WsIdleClients(HOST, broker.ws_port, prefix=f"ws-{os.getpid()}")
    try:
        try:
            opened = open_measured(loop, broker, clients, load.idle, "idle WebSocket clients")
        except IdleClientError as exc:
            for spec in specs:
                results[spec.key][broker.key] = Measurement(Status.FAILED, note=str(exc))
            return
        for spec in specs:
            results[spec.key][broker.key] = opened.rss() if spec.kind == "ws_rss" else opened.connect_rate()
    finally:
        _close_loop(loop, clients)


def _close_loop(loop: asyncio.AbstractEventLoop, clients: IdleClients) -> None:
    """Cancels what still runs on ``loop`` (after Ctrl-C), disconnects the idle clients, closes the loop."""
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(clients.close())
    loop.close()


def run_benchmark(load: Load, mosquitto_exe: Path, relay: Path, only: set[str] | None = None) -> list[RowResult]:
    """Runs every row against both brokers, alternating; fresh brokers for the plain rows and for
    the idle rows."""
    specs = row_specs(load.idle)
    names = ("mosquitto", "chatmq")
    results: dict[str, dict[str, Measurement]] = {s.key: {} for s in specs}
    for spec in specs:
        if only is not None and spec.key not in only:
            for n in names:
                results[spec.key][n] = Measurement(Status.SKIPPED)
        elif spec.kind == "not yet":
            for n in names:
                results[spec.key][n] = Measurement(Status.NOT_YET, note=spec.reason)
    pending = [s for s in specs if not results[s.key]]
    plain = [s for s in pending if not s.idle]
    ws = [s for s in pending if s.kind in WS_KINDS]
    idle = [s for s in pending if s.idle and s.kind not in WS_KINDS]
    with tempfile.TemporaryDirectory(prefix="chatmq-bench-") as tmp:
        if plain:
            echo("bench: rows without idle clients (fresh brokers)")
            with running_brokers(mosquitto_exe, _workdir(Path(tmp), "plain")) as brokers:
                for spec in plain:
                    echo(f"bench: row {spec.key}: {spec.title}")
                    for n in names:
                        if spec.kind == "halfrate":
                            full = results.get(spec.rate_of or "", {}).get(n)
                            results[spec.key][n] = run_halfrate_row(spec, brokers[n], load, full)
                        else:
                            results[spec.key][n] = run_load_row(spec, relay, brokers[n], load, brokers[n].restart)
        if idle:
            echo(f"bench: rows with {load.idle:,} idle clients (fresh brokers)")
            with running_brokers(mosquitto_exe, _workdir(Path(tmp), "idle")) as brokers:
                for n in names:
                    run_idle_phase(relay, brokers[n], load, idle, results)
        if ws:
            echo(f"bench: rows with {load.idle:,} idle WebSocket clients (fresh brokers)")
            with running_brokers(mosquitto_exe, _workdir(Path(tmp), "ws")) as brokers:
                for n in names:
                    run_ws_phase(brokers[n], load, ws, results)
    rows = [RowResult(s.key, s.title, s.unit, results[s.key]["mosquitto"], results[s.key]["chatmq"], s.baseline)
            for s in specs]
    for row in rows:
        if row.key in ("rss_idle", "ws_rss"):
            row.notes.append("broker VmRSS growth while the idle clients connected, per client (lower is better)")
        if row.mosquitto.status is Status.NOT_YET:
            row.notes.append(f"not yet: {row.mosquitto.note}")
    return rows


def _workdir(tmp: Path, name: str) -> Path:
    path = tmp / name
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------------------------
# Machine description
# --------------------------------------------------------------------------------------------


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def mosquitto_version(exe: Path) -> str | None:
    """Mosquitto's version as it prints it (``mosquitto -h``)."""
    try:
        out = subprocess.run([str(exe), "-h"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"mosquitto version (\S+)", out.stdout + out.stderr)
    return m[1] if m else None


def machine_info() -> dict[str, Any]:
    """Where the numbers came from: CPU, cores, memory, kernel, Python."""
    cpu = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kib = int(Path("/proc/meminfo").read_text().splitlines()[0].split()[1])
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_kib / 2**20, 1) if mem_kib else None,
        "kernel": platform.release(), "python": platform.python_version(),
    }


def git_commit() -> str | None:
    """The checked-out commit of the repository (read only)."""
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------

def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def bench_command(stopped: str) -> Iterator[None]:
    """A benchmark command's run: SIGTERM stops it as Ctrl-C does (so what it started is stopped),
    and a ``BenchError`` or an interrupt ends the command with exit 1 or 130 and one line on
    stderr (``stopped`` says what was stopped)."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    except BenchError as exc:
        typer.echo(f"bench: {exc}", err=True)
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        typer.echo(f"bench: interrupted; {stopped}", err=True)
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


app = typer.Typer(help="Benchmarks.", no_args_is_help=True, pretty_exceptions_enable=False)


@app.callback()
def _bench() -> None:
    """Benchmarks: the broker node against Mosquitto."""


@app.command()
def broker(
    messages: Annotated[int | None, typer.Option(help=f"Messages per pair (default {FULL_MESSAGES:,}; "
                                                     f"--quick {QUICK_MESSAGES:,}).", min=1)] = None,
    idle: Annotated[int | None, typer.Option(help=f"Idle subscribed clients (default {FULL_IDLE:,}; "
                                                 f"--quick {QUICK_IDLE:,}).", min=1)] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Small sizes for a smoke run.")] = False,
    pairs: Annotated[int, typer.Option(help="Publisher/subscriber pairs.", min=1)] = 10,
    size: Annotated[int, typer.Option(help="Payload bytes (at least 8: a timestamp).", min=8)] = 64,
    row_timeout: Annotated[float | None, typer.Option(
        help=f"Seconds before a relay run is killed (default {FULL_ROW_TIMEOUT:.0f}; "
             f"--quick {QUICK_ROW_TIMEOUT:.0f}).")] = None,
    ladder: Annotated[bool, typer.Option(help="Run 1/625 and 1/25 of --messages first; go up only while the next "
                                              "size should finish within the row timeout.")] = True,
    rows: Annotated[str | None, typer.Option(help="Comma-separated row keys to run (default: all): "
                                                 + ",".join(ROW_KEYS) + ".")] = None,
    relay_src: Annotated[Path, typer.Option(help="mqttrelay.c to build.")] = DEFAULT_RELAY_SRC,
    json_path: Annotated[Path, typer.Option("--json", help="Where to write the JSON.")] = DEFAULT_JSON,
    markdown_path: Annotated[Path, typer.Option("--markdown", help="Where to write the table.")] = DEFAULT_MARKDOWN,
) -> None:
    """The chatmq broker node and Mosquitto, same loads, one run: msg/s, latency, RSS, ratios."""
    load = Load(
        pairs=pairs, size=size,
        messages=messages or (QUICK_MESSAGES if quick else FULL_MESSAGES),
        idle=idle or (QUICK_IDLE if quick else FULL_IDLE),
        row_timeout=row_timeout or (QUICK_ROW_TIMEOUT if quick else FULL_ROW_TIMEOUT),
        ladder=ladder,
    )
    only = {k.strip() for k in rows.split(",") if k.strip()} if rows else None
    if only is not None and not only <= set(ROW_KEYS):
        typer.echo(f"bench: unknown rows: {', '.join(sorted(only - set(ROW_KEYS)))}; known: {', '.join(ROW_KEYS)}",
                   err=True)
        raise typer.Exit(2)
    with bench_command("brokers stopped"):
        mosq = ensure_mosquitto()
        relay = ensure_relay(relay_src)
        limit = raise_nofile(load.idle + 1024)
        if limit < load.idle + 256:
            raise BenchError(f"open-file limit {limit} is too low for {load.idle:,} idle clients; "
                             f"lower --idle or raise ulimit -n")
        echo(f"bench: mosquitto {mosquitto_version(mosq)} at {mosq}; mqttrelay at {relay}; open files {limit:,}")
        started = datetime.now(UTC)
        t0 = time.monotonic()
        results = run_benchmark(load, mosq, relay, only)
    meta = {
        "started": started.isoformat(timespec="seconds"), "seconds": round(time.monotonic() - t0, 1),
        "mode": "quick" if quick else "full", "load": asdict(load), "commit": git_commit(),
        "machine": machine_info(), "mosquitto": mosquitto_version(mosq), "amqtt": _version("amqtt"),
        "chatmq": _version("chatmq"), "relay_src": str(relay_src),
    }
    report = report_markdown(results, meta)
    typer.echo(report)
    for path, text in ((json_path, json.dumps(report_json(results, meta), indent=2) + "\n"),
                       (markdown_path, report)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    echo(f"bench: wrote {json_path} and {markdown_path}")


@app.command()
def render(json_file: Annotated[Path, typer.Argument(help="JSON written by 'bench broker'.")] = DEFAULT_JSON) -> None:
    """Prints the Markdown report (table and plot) of an earlier run from its JSON."""
    data = json.loads(json_file.read_text())
    typer.echo(report_markdown(rows_from_json(data), data["meta"]), nl=False)


@app.command("fanload", hidden=True)
def fanload(
    mode: Annotated[str, typer.Argument(help="fanin, fanout, shared or pairs")],
    host: str,
    port: int,
    clients: int,
    messages: Annotated[int, typer.Argument(help="per publisher")],
    qos: int,
    size: int,
    deadline: Annotated[float, typer.Option(help="Seconds before giving up.")] = 120.0,
    rate: Annotated[float | None, typer.Option(help="Total publishes per second (default: flat out).")] = None,
) -> None:
    """The fan-in/fan-out/pairs load generator run by ``bench broker``: prints a line in mqttrelay's
    format; exits 0 when all arrived, 1 when some were lost (or the deadline passed), 2 on errors."""
    coro = fan_load(host, port, mode, clients, messages, qos, size, deadline, rate=rate)
    try:
        import uvloop

        result, error = uvloop.run(coro)
    except ImportError:
        result, error = asyncio.run(coro)
    if error is not None and not error.startswith(("deadline", "stalled")):
        typer.echo(f"fanload: {error}", err=True)
        raise typer.Exit(2)
    typer.echo(format_relay_line(result))
    if error is not None:
        typer.echo(f"fanload: {error}", err=True)
    raise typer.Exit(0 if result.lost == 0 else 1)


if __name__ == "__main__":
    app()
