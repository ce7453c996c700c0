"""``chatmq bench chat``: chat throughput and latency end to end, on the embedded server or a cluster.

Run ``chatmq bench chat --mode embedded|cluster [--quick]`` (or ``python -m chatmq.bench.bench_chat
chat …`` before the CLI mounts it). It

1. starts what it measures on free 127.0.0.1 ports, with the per-connection rate limit raised
   (``rate_limit_per_sec``/``rate_limit_burst``, see ``RATE_LIMIT``) so that the limiter is not
   what is measured: ``embedded`` runs ``chatmq serve`` (``CHATMQ_*`` environment, a data folder of
   its own); ``cluster`` runs a ``LocalCluster`` (every part its own process, nginx in front) on
   the Kafka and MongoDB named by ``CHATMQ_KAFKA_BOOTSTRAP``/``CHATMQ_MONGO_URL``, with a Kafka
   topic prefix and a Mongo database of its own, both dropped afterwards;
2. registers ``2 × --pairs`` users over REST, groups them in groups of ``--group-size`` and
   connects every user over MQTT/TCP with ``ChatConnection`` (raw asyncio, minimal packet
   handling, so that the load generator is not the limit; its CPU share is reported);
3. runs the rows (``ROWS``) for ``--duration`` seconds each: users send to their partner (1:1)
   or their group with a send timestamp in the body; recipients record the latency from
   publish to arrival, PUBACK the delivery and send one ``delivered`` receipt per burst of
   arrivals; the rate is deliveries per second while all senders were sending;
4. after each row waits until every message arrived (while they keep arriving), counts what was lost
   and duplicated, and reads every server process's CPU time from ``/proc``;
5. stops everything (also on Ctrl-C and SIGTERM), prints a Markdown report, writes it to
   ``--markdown`` and every figure to ``--json``.

Speed lives here, never in timed tests: the tests only check that the rows are there and that
nothing was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from array import array
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, TypeVar, cast
from urllib.parse import urlsplit

import httpx
import orjson
import typer

from chatmq.bench.bench_broker import (
    BenchError,
    bench_command,
    echo,
    git_commit,
    machine_info,
    raise_nofile,
    read_cpu_seconds,
)
from chatmq.broker.wire import (
    CONNACK,
    DISCONNECT_BYTES,
    PUBACK,
    PUBLISH,
    SUBACK,
    PacketSplitter,
    decode_publish,
    encode_ack,
    encode_connect,
    encode_publish,
    encode_string,
    encode_subscribe,
)
from chatmq.core import ids
from chatmq.core.ports import free_port
from chatmq.core.settings import Settings
from chatmq.core.tasks import cancel_and_wait
from chatmq.run.assembly import make_store
from chatmq.services.chat.presence import OFFLINE_GRACE_MS
from chatmq.services.store.base import StoredMessage

T = TypeVar("T")
HOST = "127.0.0.1"
Mode = Literal["embedded", "cluster"]
DEFAULT_JSON = "test-artifacts/bench_chat_{mode}.json"
DEFAULT_MARKDOWN = "test-artifacts/bench_chat_{mode}.md"
RATE_LIMIT = {"rate_limit_per_sec": "1000000", "rate_limit_burst": "1000000",
              "auth_rate_per_address": "1000000", "auth_burst_per_address": "1000000",
              # the presence storm connects 1,100 users from one address, 1,000 of them at once
              "max_connections_per_address": "0", "connect_rate_per_address": "0"}
FULL_DURATION, QUICK_DURATION = 15.0, 3.0
FULL_PAIRS, QUICK_PAIRS = 50, 10
WINDOW = 20  # messages per sender not yet delivered to every recipient, in the max-rate rows
DRAIN_SECONDS = 300.0  # after a row, how long at most to wait for what is still on its way
DRAIN_STALL = 60.0  # ... and how long without any delivery or ack
PASSWORD = "bench-password-123"
PROGRESS_EVERY = 2.0
SHARED_SERVERS = ("kafka", "ferretdb", "postgres", "nginx")  # cluster processes not chatmq's (name prefixes)


# --------------------------------------------------------------------------------------------
# The load generator
# --------------------------------------------------------------------------------------------

def now_us() -> int:
    """Wall-clock microseconds: the send timestamp carried in each body."""
    return time.time_ns() // 1000


@dataclass(slots=True)
class Target:
    """Where one sender's messages go: a user (``to``) or a group (``group``), reaching ``recipients``."""

    to: str | None
    group: str | None
    recipients: int


@dataclass
class RowTally:
    """What happened during one row, shared by every connection.

    ``remaining[client id]`` counts the recipients a message has not reached yet; a message whose
    count reaches 0 is complete and frees a place in its sender's window."""

    prefix: str
    remaining: dict[str, int] = field(default_factory=dict)
    owner: dict[str, ChatConnection] = field(default_factory=dict)
    sent: int = 0
    expected: int = 0
    delivered: int = 0
    duplicated: int = 0
    stray: int = 0
    acked: int = 0
    receipts_back: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    send_us: array[int] = field(default_factory=lambda: array("q"))
    latency_us: array[int] = field(default_factory=lambda: array("q"))

    @property
    def outstanding(self) -> int:
        return len(self.remaining)


class Scheduler(Protocol):
    """What a connection tells the running row."""

    tally: RowTally

    def freed(self, sender: ChatConnection) -> None:
        """A message of ``sender`` reached all its recipients."""


class ChatConnection(asyncio.Protocol):
    """One user over MQTT/TCP: CONNECT with its token, SUBSCRIBE to its inbox at QoS 1, then

    * ``send(n)``: ``n`` messages to ``target`` in one write (PUBLISH QoS 1 to its outbox), each with
      client id ``<row prefix><index>.<seq>`` and body ``{"t": send time in µs}``;
    * on arrivals: a PUBACK for each, the latency and the tally, then one ``delivered`` receipt for
      the burst (at most 1,000 ids per receipt). ``ack``, ``receipt``, ``event`` and ``error``
      envelopes are counted in the tally."""

    def __init__(self, index: int, user_id: str, token: str, scheduler: Scheduler,
                 client_id: str | None = None) -> None:
        self.index = index
        self.client_id = client_id or f"bench-{index}-{uuid.uuid4().hex[:8]}"
        self.user_id = user_id
        self._token = token
        self._scheduler = scheduler
        self._reader = PacketSplitter()
        self._outbox = encode_string(f"users/{user_id}/outbox")
        self._pid = 0
        self.seq = 0
        self.target: Target | None = None
        self.seen: set[str] = set()
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # --- connection ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(encode_connect(self.client_id, username=self.user_id, password=self._token)
                             + encode_subscribe(1, [(f"users/{self.user_id}/inbox", 1)]))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(BenchError(f"user {self.index}: connection closed during the handshake "
                                                f"({exc or 'EOF'})"))
        if not self.closed.done():
            self.closed.set_result(None)

    def close(self) -> None:
        """DISCONNECT and close; harmless twice."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(DISCONNECT_BYTES)
            self.transport.close()

    def _next_pid(self) -> int:
        self._pid = self._pid % 65535 + 1
        return self._pid

    # --- sending ------------------------------------------------------------------------
    def send(self, n: int) -> None:
        """Send ``n`` messages to ``target`` in one write."""
        if n <= 0 or self.target is None or self.transport is None or self.transport.is_closing():
            return
        tally = self._scheduler.tally
        target = self.target
        chunks: list[bytes] = []
        t = now_us()
        for _ in range(n):
            self.seq += 1
            cid = f"{tally.prefix}{self.index}.{self.seq}"
            env: dict[str, Any] = {"type": "message", "id": cid, "body": {"t": t}}
            if target.group is not None:
                env["group"] = target.group
            else:
                env["to"] = target.to
            chunks.append(encode_publish(self._outbox, orjson.dumps(env), 1, self._next_pid()))
            tally.remaining[cid] = target.recipients
            tally.owner[cid] = self
        tally.sent += n
        tally.expected += n * target.recipients
        self.transport.write(b"".join(chunks))

    # --- receiving ----------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        out: list[bytes] = []
        ids: list[str] = []
        for packet in self._reader.feed(data):
            kind, body = packet.kind, packet.body
            if kind == PUBLISH:
                message = decode_publish(packet.flags, body)
                if message.packet_id is not None:
                    out.append(encode_ack(PUBACK, message.packet_id))
                self._envelope(orjson.loads(message.payload), ids)
            elif kind == CONNACK:
                if body[1] != 0:
                    self._fail(f"CONNACK refused (code {body[1]})")
                    return
            elif kind == SUBACK:
                if body[-1] > 2:
                    self._fail("inbox subscription refused")
                    return
                if not self.ready.done():
                    self.ready.set_result(None)
        for start in range(0, len(ids), 1000):
            receipt = {"type": "receipt", "status": "delivered", "ids": ids[start:start + 1000]}
            out.append(encode_publish(self._outbox, orjson.dumps(receipt), 1, self._next_pid()))
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(out))

    def _fail(self, reason: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(BenchError(f"user {self.index}: {reason}"))
        if self.transport is not None:
            self.transport.close()

    def _envelope(self, env: dict[str, Any], ids: list[str]) -> None:
        tally = self._scheduler.tally
        kind = env.get("type")
        if kind == "message":
            ids.append(env["id"])
            cid = env.get("client_id") or ""
            if not cid.startswith(tally.prefix):
                tally.stray += 1  # an earlier row's message, or one replayed at connect
                return
            if cid in self.seen:
                tally.duplicated += 1
                return
            self.seen.add(cid)
            tally.delivered += 1
            now = now_us()
            sent = int(env["body"]["t"])
            tally.send_us.append(sent)
            tally.latency_us.append(now - sent)
            left = tally.remaining.get(cid)
            if left is None:
                tally.stray += 1
            elif left <= 1:
                del tally.remaining[cid]
                self._scheduler.freed(tally.owner.pop(cid))
            else:
                tally.remaining[cid] = left - 1
        elif kind == "ack":
            tally.acked += 1
        elif kind == "receipt":
            tally.receipts_back += len(env.get("ids", ()))
        elif kind == "error":
            tally.errors[str(env.get("code"))] += 1


# --------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RowSpec:
    """One row: ``kind`` 1:1, group or the presence storm (``presence``: users of its own, see
    ``presence_storm``); ``paced`` rows send at ``share`` of ``of``'s measured rate;
    ``devices``: connections per user (each user's other devices get a copy of what it sends, so a 1:1
    message makes ``2 × devices - 1`` deliveries)."""

    key: str
    title: str
    kind: Literal["pairs", "groups", "presence"]
    paced: bool = False
    share: float = 1.0
    of: str | None = None
    devices: int = 1


ROWS = (
    RowSpec("one_to_one_max", "1:1, max rate", "pairs"),
    RowSpec("one_to_one_half", "1:1, half the max rate", "pairs", paced=True, share=0.5, of="one_to_one_max"),
    RowSpec("one_to_one_quarter", "1:1, a quarter of the max rate", "pairs", paced=True, share=0.25,
            of="one_to_one_max"),
    RowSpec("groups_max", "groups, max rate", "groups"),
    RowSpec("devices_3_max", "1:1, 3 devices per user, max rate", "pairs", devices=3),
    RowSpec("presence_storm", "presence storm: every user reconnecting", "presence"),
)
ROW_KEYS = tuple(spec.key for spec in ROWS)
DEFAULT_ROWS = tuple(key for key in ROW_KEYS if key != "presence_storm")
"""What ``chatmq bench chat`` runs without ``--rows``: the storm (a minute and more with its setup, on 1,000
users) only when asked for."""


@dataclass
class RowResult:
    """Everything measured in one row. ``rate`` is deliveries per second (a group message reaches
    ``group size - 1`` members), ``send_rate`` messages accepted per second."""

    key: str
    title: str
    rate: float
    send_rate: float
    target_rate: float | None
    seconds: float
    sent: int
    expected: int
    delivered: int
    lost: int
    duplicated: int
    unacked: int
    stray: int
    receipts_back: int
    p50_ms: float | None
    p99_ms: float | None
    client_cpu: float
    cpu: dict[str, float]
    cpu_ms_per_message: dict[str, float]
    errors: dict[str, int]
    notes: list[str] = field(default_factory=list)


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of already sorted values, nearest rank; ``None`` when empty."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return float(sorted_values[rank - 1])


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """This process's garbage collector off (after a collection) until the block ends, then a
    collection: its full passes, up to 78 ms each (timed with ``gc.callbacks``), stalled the load
    generator's loop while the server's messages arrived, and were counted as the server's latency."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


class CpuMeter:
    """CPU time of named processes (and of this one, as ``client``) since ``start``."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = pids
        self._t0 = 0.0
        self._cpu0: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, pid in self._pids.items():
            with contextlib.suppress(OSError, ValueError, IndexError):
                out[name] = read_cpu_seconds(pid)
        out["client"] = time.process_time()
        return out

    def start(self) -> None:
        self._t0, self._cpu0 = time.monotonic(), self._read()

    def used(self) -> tuple[float, dict[str, float]]:
        """Wall seconds since ``start`` and ``{name: CPU seconds}`` used since then."""
        wall = max(time.monotonic() - self._t0, 1e-9)
        return wall, {name: cpu - self._cpu0[name] for name, cpu in self._read().items() if name in self._cpu0}


class Runner:
    """Drives the rows over connected users (``Scheduler`` for the connections)."""

    def __init__(self, duration: float, window: int, pids: Callable[[], dict[str, int]]) -> None:
        self.duration = duration
        self.window = window
        self.pids = pids
        self.tally = RowTally("warm.")
        self.conns: list[ChatConnection] = []
        self._windowed = False
        self._dirty: dict[int, ChatConnection] = {}
        self._flush_scheduled = False
        self._inflight: Counter[int] = Counter()

    # --- Scheduler ----------------------------------------------------------------------
    def freed(self, sender: ChatConnection) -> None:
        self._inflight[sender.index] -= 1
        if self._windowed:
            self._dirty[sender.index] = sender
            if not self._flush_scheduled:
                self._flush_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, {}
        for conn in dirty.values():
            self._top_up(conn)

    def _top_up(self, conn: ChatConnection) -> None:
        n = self.window - self._inflight[conn.index]
        if n > 0:
            self._inflight[conn.index] += n
            conn.send(n)

    # --- rows ---------------------------------------------------------------------------
    async def warm_up(self, targets: dict[int, Target], timeout: float = 120.0) -> bool:
        """One message from every user of ``targets``, waiting until all arrived (at most ``timeout``
        seconds): every inbox's replay at connect is over (live deliveries wait for it), and the
        first rows do not measure a cold start. Whether everything arrived."""
        self.tally = tally = RowTally("warm.")
        for c in self.conns:
            c.target = targets.get(c.index)
            c.seen = set()
            c.send(1)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if not tally.outstanding and tally.acked >= tally.sent:
                return True
            await asyncio.sleep(0.05)
        return False

    async def run_row(self, spec: RowSpec, targets: dict[int, Target], rate: float | None,
                      progress: Callable[[str], None]) -> RowResult:
        """Run one row: windowed (max rate) when ``rate`` is None, else paced at ``rate`` messages/s
        in total; then wait for stragglers and tally. The load generator's garbage collector is off
        meanwhile (``collector_paused``)."""
        with collector_paused():
            return await self._run_row(spec, targets, rate, progress)

    async def _run_row(self, spec: RowSpec, targets: dict[int, Target], rate: float | None,
                       progress: Callable[[str], None]) -> RowResult:
        self.tally = tally = RowTally(f"{spec.key[:2]}{secrets.token_hex(2)}.")
        self._inflight.clear()
        senders = [c for c in self.conns if c.index in targets]
        for c in self.conns:
            c.target = targets.get(c.index)
            c.seen = set()
        pids = self.pids()  # anew for each row: Kafka or FerretDB may have been restarted meanwhile
        meter = CpuMeter(pids)
        loop = asyncio.get_running_loop()
        warmup = min(2.0, self.duration / 5)
        t0 = loop.time()
        measure_from, measure_to = t0 + warmup, t0 + self.duration
        meter.start()
        self._windowed = rate is None
        if rate is None:
            for c in senders:
                self._top_up(c)
        pacer = None if rate is None else asyncio.create_task(self._pace(senders, rate / len(senders), t0,
                                                                         measure_to))
        delivered_at_from, from_us, measuring = 0, now_us(), False
        next_report = t0 + PROGRESS_EVERY
        try:
            while loop.time() < measure_to:
                await asyncio.sleep(min(0.05, max(0.0, measure_to - loop.time())))
                now = loop.time()
                if not measuring and now >= measure_from:
                    measuring = True
                    delivered_at_from, measure_from, from_us = tally.delivered, now, now_us()
                if now >= next_report:
                    next_report += PROGRESS_EVERY
                    progress(f"{spec.title}: {now - t0:4.1f}/{self.duration:.0f} s, sent {tally.sent:,}, "
                             f"delivered {tally.delivered:,} ({tally.delivered / (now - t0):,.0f}/s), "
                             f"on the way {tally.outstanding:,}")
        finally:
            self._windowed = False
            await cancel_and_wait(pacer)
        end, end_us = loop.time(), now_us()
        window_deliveries = tally.delivered - delivered_at_from
        window_seconds = max(end - measure_from, 1e-9)
        wall, cpu_sending = meter.used()
        drained = await self._drain(tally, progress, spec.title)
        _, cpu_all = meter.used()  # sending and draining: all the work the row's messages caused
        send_seconds = max(end - t0, 1e-9)
        gone = sorted(set(pids) - set(cpu_all))
        notes = [f"{', '.join(gone)} exited during the row (restarted by someone else?)"] if gone else []
        if tally.outstanding:
            notes.append(f"gave up waiting {drained:.0f} s after sending, {tally.outstanding:,} messages still on "
                         f"their way: counted as lost (they may only be late)")
        lat = sorted(lat for sent, lat in zip(tally.send_us, tally.latency_us, strict=True)
                     if from_us <= sent <= end_us)  # messages sent after the warm-up
        if not lat and tally.latency_us:  # a closed loop that never got past its first window
            lat = sorted(tally.latency_us)
            notes.append("latency over all messages: none was sent after the warm-up")
        p50, p99 = percentile(lat, 0.50), percentile(lat, 0.99)
        cpu = {name: round(used / wall, 3) for name, used in merge_postgres(cpu_sending).items()}
        client = cpu.pop("client", 0.0)
        per_message = {name: round(1000 * used / max(tally.sent, 1), 3)
                       for name, used in merge_postgres(cpu_all).items()}
        lost = tally.expected - tally.delivered
        return RowResult(
            key=spec.key, title=spec.title, rate=round(window_deliveries / window_seconds, 1),
            send_rate=round(tally.sent / send_seconds, 1), target_rate=None if rate is None else round(rate, 1),
            seconds=round(end - t0, 2), sent=tally.sent, expected=tally.expected, delivered=tally.delivered,
            lost=lost, duplicated=tally.duplicated, unacked=tally.sent - tally.acked, stray=tally.stray,
            receipts_back=tally.receipts_back,
            p50_ms=None if p50 is None else round(p50 / 1000, 1), p99_ms=None if p99 is None else round(p99 / 1000, 1),
            client_cpu=client, cpu=cpu, cpu_ms_per_message=per_message, errors=dict(tally.errors),
            notes=notes,
        )

    async def _pace(self, senders: list[ChatConnection], per_sender: float, t0: float, until: float) -> None:
        """Open loop: every 10 ms each sender sends what is due at ``per_sender`` messages/s."""
        loop = asyncio.get_running_loop()
        sent = dict.fromkeys((c.index for c in senders), 0)
        while loop.time() < until:
            due = int((loop.time() - t0) * per_sender)
            for c in senders:
                n = due - sent[c.index]
                if n > 0:
                    sent[c.index] = due
                    self._inflight[c.index] += n
                    c.send(n)
            await asyncio.sleep(0.01)

    async def _drain(self, tally: RowTally, progress: Callable[[str], None], title: str) -> float:
        """Wait until every message of the row reached every recipient and was acked, while that
        makes progress: at most ``DRAIN_STALL`` seconds without a delivery or ack, ``DRAIN_SECONDS``
        in all. Then a moment for the last receipts. Returns the seconds waited."""
        loop = asyncio.get_running_loop()
        start = last_change = loop.time()
        seen = (tally.delivered, tally.acked)
        next_report = start + PROGRESS_EVERY
        while tally.outstanding or tally.acked < tally.sent:
            await asyncio.sleep(0.05)
            now = loop.time()
            if (tally.delivered, tally.acked) != seen:
                seen, last_change = (tally.delivered, tally.acked), now
            if now - last_change > DRAIN_STALL or now - start > DRAIN_SECONDS:
                break
            if now >= next_report:
                next_report += PROGRESS_EVERY
                progress(f"{title}: draining, {tally.outstanding:,} on the way, "
                         f"{tally.sent - tally.acked:,} not acked")
        await asyncio.sleep(0.5)
        return loop.time() - start


# --------------------------------------------------------------------------------------------
# History stored before the run
# --------------------------------------------------------------------------------------------

PREFILL_CHUNK = 50_000
PREFILL_PAIRS = 1_000  # conversations the stored messages are spread over


def stored_messages(start: int, count: int) -> list[StoredMessage]:
    """Messages ``start`` .. ``start + count - 1`` of the prefill: 1:1 between ``PREFILL_PAIRS`` pairs of
    users that take no part in the run, bodies the size of the run's."""
    out: list[StoredMessage] = []
    ts = ids.now_ms()
    for i in range(start, start + count):
        pair = i % PREFILL_PAIRS
        sender, to = (f"prefill{2 * pair}", f"prefill{2 * pair + 1}") if i % 2 else \
            (f"prefill{2 * pair + 1}", f"prefill{2 * pair}")
        out.append(StoredMessage(ids.server_id(), f"prefill.{i}", sender, to, None, ids.conversation_key(sender, to),
                                 {"t": ts * 1000, "text": "stored before the run"}, ts))
    return out


async def prefill_store(settings: Settings, count: int, *, cluster: bool) -> None:
    """Store ``count`` messages in the store of ``mode`` (``cluster``: MongoDB at ``mongo_url``, else SQLite in
    ``data_dir``, whatever the environment says; ``Store.import_messages``, ``PREFILL_CHUNK`` at a time: on
    SQLite one transaction each), with a progress line per chunk."""
    store = make_store(settings, cluster=cluster)
    await store.start()
    try:
        t0 = time.monotonic()
        for start in range(0, count, PREFILL_CHUNK):
            n = min(PREFILL_CHUNK, count - start)
            await store.import_messages(stored_messages(start, n))
            done = start + n
            echo(f"bench: prefill: {done:,}/{count:,} messages stored ({done / (time.monotonic() - t0):,.0f}/s)")
    finally:
        await store.stop()


# --------------------------------------------------------------------------------------------
# What is measured: chatmq serve, or a LocalCluster
# --------------------------------------------------------------------------------------------

class Deployment(Protocol):
    """A running chatmq the benchmark talks to."""

    mqtt_port: int
    api_url: str

    def pids(self) -> dict[str, int]:
        """The processes whose CPU time is reported, by name."""
        ...

    def stop(self) -> None: ...


def find_pids(needle: str) -> list[int]:
    """Processes whose command line contains ``needle`` (from ``/proc``)."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if needle.encode() in (entry / "cmdline").read_bytes().replace(b"\0", b" "):
                found.append(int(entry.name))
    return found


def _args(pid: int) -> list[str]:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    return []


def _url_port(url: str, default: int) -> int:
    with contextlib.suppress(ValueError):
        return urlsplit(url).port or default
    return default


def _children(parent: int) -> list[int]:
    """Direct children of ``parent`` (field 4 of ``/proc/<pid>/stat``)."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                    found.append(int(entry.name))
    return found


def merge_postgres(used: dict[str, float]) -> dict[str, float]:
    """``used`` with PostgreSQL's processes (``postgres``, ``postgres-2``, ...) summed as ``postgres``."""
    out: dict[str, float] = {}
    for name, value in used.items():
        key = "postgres" if name.startswith("postgres") else name
        out[key] = out.get(key, 0.0) + value
    return out


def store_server_pids(mongo_url: str) -> list[tuple[str, int]]:
    """The FerretDB serving ``mongo_url`` and, when it runs on PostgreSQL, PostgreSQL's processes.

    FerretDB is a ``ferretdb`` process whose command line has the URL's port (as
    ``scripts/services.sh`` starts it: ``-listen-addr 127.0.0.1:<port>``), or every ``ferretdb``
    process when none has. When its command line gives ``-postgresql-url``, the postmaster started
    with that port (``postgres -D … -c port=<port>``) and its children (one backend per FerretDB
    connection, and PostgreSQL's own workers) are ``postgres``, ``postgres-2``, ...
    """
    port = _url_port(mongo_url, 27017)
    ferret = [p for p in find_pids("ferretdb") if p != os.getpid()]
    ferret = [p for p in ferret if any(a.endswith(f":{port}") for a in _args(p))] or ferret
    out = [("ferretdb", pid) for pid in ferret]
    for pid in ferret:
        args = _args(pid)
        if "-postgresql-url" not in args[:-1]:
            continue
        pg_port = _url_port(args[args.index("-postgresql-url") + 1], 5432)
        for master in find_pids("postgres -D"):
            if f"port={pg_port}" in _args(master):
                out += [("postgres", master), *(("postgres", child) for child in _children(master))]
    return out


class EmbeddedDeployment:
    """``chatmq serve`` in its own session, on free ports, storing in ``workdir/data``."""

    def __init__(self, workdir: Path, timeout: float = 60.0, settings: dict[str, str] | None = None) -> None:
        """``settings`` are added to ``RATE_LIMIT`` (names as in the configuration table)."""
        self.mqtt_port, ws_port, http_port = free_port(), free_port(), free_port()
        self.api_url = f"http://{HOST}:{http_port}"
        self.log_path = workdir / "serve.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1",
               **{f"CHATMQ_{k.upper()}": v for k, v in {**RATE_LIMIT, **(settings or {})}.items()}}
        env.pop("CHATMQ_CONFIG", None)
        cmd = [sys.executable, "-m", "chatmq.run.cli", "serve", "--host", HOST, "--mqtt-port", str(self.mqtt_port),
               "--ws-port", str(ws_port), "--http-port", str(http_port), "--data-dir", str(workdir / "data")]
        echo(f"bench: starting chatmq serve (mqtt {self.mqtt_port}, http {http_port}, data {workdir / 'data'})")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         env=env, cwd=workdir, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"chatmq serve exited with {self.proc.returncode}:\n{self._log_tail()}")
            if "ready" in self.log_path.read_text(errors="replace"):
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{self.api_url}/healthz", timeout=1).status_code == 200:
                        return
            time.sleep(0.1)
        self.stop()
        raise BenchError(f"chatmq serve did not become ready in {timeout:.0f} s:\n{self._log_tail()}")

    def _log_tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])

    def pids(self) -> dict[str, int]:
        return {"serve": self.proc.pid}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        echo(f"bench: stopped chatmq serve (exit {self.proc.returncode})")


class ClusterDeployment:
    """A ``LocalCluster`` (two broker nodes, nginx in front) with a Kafka topic prefix and a Mongo
    database of its own (``bench<hex>``), both dropped by ``stop``. The raised rate limit is given
    to every part through a config file (the cluster hands its parts only its own ``CHATMQ_*``
    variables): ``config/cluster.toml`` plus ``RATE_LIMIT``."""

    def __init__(self, workdir: Path, kafka: str, mongo: str, prefill: int = 0) -> None:
        from chatmq.run.cluster import CLUSTER_CONFIG, LocalCluster

        self.name = f"bench{secrets.token_hex(5)}"
        self.kafka, self.mongo = kafka, mongo
        config = workdir / "cluster.toml"
        # the cluster's settings but those RATE_LIMIT sets (a key twice is not TOML; the file has no tables)
        kept = [line for line in CLUSTER_CONFIG.read_text().splitlines(keepends=True)
                if line.split("=", 1)[0].strip() not in RATE_LIMIT]
        config.write_text("".join(kept) + "\n# chatmq bench chat: the limiter is not what is measured\n"
                          + "".join(f"{k} = {v}\n" for k, v in RATE_LIMIT.items()))
        settings = Settings.load(config, kafka_bootstrap=kafka, mongo_url=mongo, kafka_prefix=f"{self.name}.",
                                 mongo_db=self.name, data_dir=workdir / "cluster", jwt_secret=secrets.token_hex(24))
        self.cluster = LocalCluster(settings, data_dir=workdir / "cluster", mqtt_port=free_port(),
                                    ws_port=free_port(), http_port=free_port(), config_file=config)
        self.mqtt_port = self.cluster.mqtt_port
        self.api_url = self.cluster.api_url
        try:
            if prefill:
                _run_loop(prefill_store(settings, prefill, cluster=True))
            echo(f"bench: starting a cluster (topics {self.name}.*, database {self.name}, logs "
                 f"{workdir / 'cluster' / 'logs'})")
            self.cluster.start()
        except BaseException:
            self._drop()
            raise

    def pids(self) -> dict[str, int]:
        out = {name: part.proc.pid for name, part in self.cluster.parts.items() if part.proc is not None}
        servers = [("kafka", pid) for pid in find_pids("kafka.Kafka")] + store_server_pids(self.mongo)
        servers += [("nginx", pid) for pid in find_pids(str(self.cluster.data_dir / "nginx"))]
        seen: Counter[str] = Counter()
        for name, pid in servers:
            if pid != os.getpid():
                seen[name] += 1
                out[name if seen[name] == 1 else f"{name}-{seen[name]}"] = pid
        return out

    def stop(self) -> None:
        self.cluster.stop()
        echo("bench: stopped the cluster")
        self._drop()

    def _drop(self) -> None:
        """Drop the Mongo database and the Kafka topics of this run."""
        import pymongo

        with contextlib.suppress(Exception):
            client: pymongo.MongoClient[dict[str, Any]]
            with pymongo.MongoClient(self.mongo, serverSelectionTimeoutMS=5000) as client:
                client.drop_database(self.name)
        with contextlib.suppress(Exception):
            asyncio.run(_delete_topics(self.kafka, f"{self.name}."))
        echo(f"bench: dropped database {self.name} and topics {self.name}.*")


async def _delete_topics(bootstrap: str, prefix: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="chatmq-bench-admin")
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()


@contextlib.contextmanager
def deployed(mode: Mode, workdir: Path, settings: dict[str, str] | None = None,
             prefill: int = 0) -> Iterator[Deployment]:
    """Start what ``mode`` names in ``workdir``, its store first filled with ``prefill`` stored messages;
    stop it (and drop its data) afterwards. ``settings`` (embedded only) are added to ``RATE_LIMIT``."""
    deployment: Deployment
    if mode == "embedded":
        if prefill:
            _run_loop(prefill_store(Settings.load(None, data_dir=workdir / "data"), prefill, cluster=False))
        deployment = EmbeddedDeployment(workdir, settings=settings)
    else:
        kafka, mongo = os.environ.get("CHATMQ_KAFKA_BOOTSTRAP"), os.environ.get("CHATMQ_MONGO_URL")
        if not (kafka and mongo):
            raise BenchError("--mode cluster needs CHATMQ_KAFKA_BOOTSTRAP and CHATMQ_MONGO_URL "
                             "(scripts/services.sh up kafka mongo)")
        deployment = ClusterDeployment(workdir, kafka, mongo, prefill)
    try:
        yield deployment
    finally:
        deployment.stop()


# --------------------------------------------------------------------------------------------
# Users, groups, connections
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BenchUser:
    index: int
    user_id: str
    token: str


async def make_users(api_url: str, count: int, tag: str, concurrency: int = 8) -> list[BenchUser]:
    """Register and log in ``count`` users (``b<tag>_<i>``), ``concurrency`` requests at a time, with a
    progress line every ``PROGRESS_EVERY`` seconds (two password hashes each: 1,100 users take minutes)."""
    sem = asyncio.Semaphore(concurrency)
    made = [0]

    async def progress() -> None:
        started = time.monotonic()
        while True:
            await asyncio.sleep(PROGRESS_EVERY)
            echo(f"bench:   registered and logged in {made[0]:,} of {count:,} users "
                 f"({time.monotonic() - started:.0f} s)")

    async def one(client: httpx.AsyncClient, i: int) -> BenchUser:
        name = f"b{tag}_{i}"
        async with sem:
            r = await client.post("/api/v1/auth/register", json={"username": name, "password": PASSWORD})
            if r.status_code != 201:
                raise BenchError(f"register {name}: {r.status_code} {r.text[:200]}")
            r = await client.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
            if r.status_code != 200:
                raise BenchError(f"login {name}: {r.status_code} {r.text[:200]}")
            body = r.json()
            made[0] += 1
            return BenchUser(i, body["user_id"], body["access_token"])

    reporter = asyncio.create_task(progress())
    try:
        async with httpx.AsyncClient(base_url=api_url, timeout=60) as client:
            return list(await asyncio.gather(*(one(client, i) for i in range(count))))
    finally:
        reporter.cancel()


async def make_groups(api_url: str, users: list[BenchUser], size: int) -> dict[int, Target]:
    """Groups of ``size`` consecutive users (the last users left over join none); returns each member's
    ``Target``."""
    targets: dict[int, Target] = {}
    async with httpx.AsyncClient(base_url=api_url, timeout=60) as client:
        for g in range(len(users) // size):
            members = users[g * size:(g + 1) * size]
            r = await client.post("/api/v1/groups", json={"name": f"bench {g}",
                                                          "members": [m.user_id for m in members[1:]]},
                                  headers={"Authorization": f"Bearer {members[0].token}"})
            if r.status_code != 201:
                raise BenchError(f"create group: {r.status_code} {r.text[:200]}")
            gid = r.json()["group_id"]
            for m in members:
                targets[m.index] = Target(None, gid, size - 1)
    return targets


def pair_targets(users: list[BenchUser], devices: int = 1) -> dict[int, Target]:
    """Users 2k and 2k+1 chat with each other, both ways; with ``devices`` connections per user a message
    reaches the recipient's ``devices`` and the sender's other ``devices - 1``."""
    targets: dict[int, Target] = {}
    for a, b in zip(users[0::2], users[1::2], strict=False):
        targets[a.index] = Target(b.user_id, None, 2 * devices - 1)
        targets[b.index] = Target(a.user_id, None, 2 * devices - 1)
    return targets


#: Added to a user's index for each of its further devices (they never send: no target has their index).
DEVICE_INDEX = 1_000_000


async def add_devices(runner: Runner, users: list[BenchUser], port: int, devices: int) -> int:
    """Connect each user's devices up to ``devices`` (receive-only connections with client ids of their
    own), then wait until their first sync (the last ``sync_window`` of their conversations) is over:
    no arrival for a second. Returns the messages that first sync brought."""
    have = 1 + max((c.index // DEVICE_INDEX for c in runner.conns), default=0)
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(50)
    before = runner.tally.stray

    async def one(u: BenchUser, k: int) -> ChatConnection:
        async with sem:
            _, conn = await loop.create_connection(
                lambda: ChatConnection(u.index + k * DEVICE_INDEX, u.user_id, u.token, runner), HOST, port)
            await asyncio.wait_for(conn.ready, 30)
            return conn

    runner.conns += await asyncio.gather(*(one(u, k) for k in range(have, devices) for u in users))
    seen, quiet_since = runner.tally.stray, loop.time()
    while loop.time() - quiet_since < 1.0:
        await asyncio.sleep(0.1)
        if runner.tally.stray != seen:
            seen, quiet_since = runner.tally.stray, loop.time()
    return runner.tally.stray - before


async def connect_all(runner: Runner, users: list[BenchUser], port: int, concurrency: int = 50) -> None:
    """Connect every user (``concurrency`` handshakes at a time) and wait for each SUBACK."""
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(concurrency)

    async def one(u: BenchUser) -> ChatConnection:
        async with sem:
            _, conn = await loop.create_connection(lambda: ChatConnection(u.index, u.user_id, u.token, runner),
                                                   HOST, port)
            await asyncio.wait_for(conn.ready, 30)
            return conn

    runner.conns = list(await asyncio.gather(*(one(u) for u in users)))


# --------------------------------------------------------------------------------------------
# The presence storm
# --------------------------------------------------------------------------------------------

FULL_STORM_USERS, QUICK_STORM_USERS = 1_000, 100
STORM_CLIQUE = 10  # storm users that are each other's mutual contacts, and of one watcher
STORM_WAIT = 60.0  # at most this long for a phase's changes to be seen (after the offline grace)
OFFLINE_GRACE_US = OFFLINE_GRACE_MS * 1000
PresenceKey = tuple[str, str, str]  # (who sees it, whose change, state)


@dataclass
class PresenceTally:
    """The presence changes a storm expects each watcher to see, and what arrived.

    ``expect(watcher, user, state, from_us)`` before the change is made: ``from_us`` is when it may first be
    announced (the reconnect's start for ``online``; the disconnect plus the 5 s grace for ``offline``), and
    the latency is counted from there. An arrival that was not expected (between reconnecting contacts, whose
    order decides who sees whom) is ``extra``; one seen twice is ``duplicated``."""

    expected: dict[PresenceKey, int] = field(default_factory=dict)
    seen: set[PresenceKey] = field(default_factory=set)
    duplicated: int = 0
    extra: int = 0
    latency_us: dict[str, array[int]] = field(default_factory=dict)  # state -> latency of each change seen
    last_us: dict[str, int] = field(default_factory=dict)  # state -> arrival of its last expected change

    def expect(self, watcher: str, user: str, state: str, from_us: int) -> None:
        self.expected[(watcher, user, state)] = from_us

    def arrived(self, watcher: str, env: dict[str, Any], at_us: int) -> None:
        key = (watcher, str(env.get("user")), str(env.get("state")))
        start = self.expected.get(key)
        if start is None:
            self.extra += 1
        elif key in self.seen:
            self.duplicated += 1
        else:
            self.seen.add(key)
            self.latency_us.setdefault(key[2], array("q")).append(at_us - start)
            self.last_us[key[2]] = max(self.last_us.get(key[2], 0), at_us)

    def outstanding(self, state: str | None = None) -> int:
        """Expected changes (of ``state``) not seen yet."""
        return sum(1 for key in self.expected if key not in self.seen and state in (None, key[2]))


class StormScheduler:
    """The ``Scheduler`` of the storm's connections: they send no messages; presence goes to ``presence``."""

    def __init__(self) -> None:
        self.tally = RowTally("storm.")
        self.presence = PresenceTally()

    def freed(self, sender: ChatConnection) -> None:  # pragma: no cover - the storm sends no messages
        pass


class PresenceConnection(ChatConnection):
    """A ``ChatConnection`` that hands ``presence`` envelopes to its ``StormScheduler``'s tally."""

    def __init__(self, index: int, user: BenchUser, scheduler: StormScheduler, client_id: str) -> None:
        super().__init__(index, user.user_id, user.token, scheduler, client_id)
        self._storm = scheduler

    def _envelope(self, env: dict[str, Any], ids: list[str]) -> None:
        if env.get("type") == "presence":
            self._storm.presence.arrived(self.user_id, env, now_us())
        else:
            super()._envelope(env, ids)


@dataclass(frozen=True)
class StormTimes:
    """When the storm's phases began (µs): the first disconnect, the first reconnect."""

    disconnect_us: int
    reconnect_us: int


def storm_result(spec: RowSpec, tally: PresenceTally, changes: int, times: StormTimes, client_cpu: float,
                 cpu: dict[str, float], cpu_all: dict[str, float], notes: list[str]) -> RowResult:
    """The storm's row: ``rate`` presence envelopes delivered per second and ``send_rate`` changes per second,
    both over the phases' busy time (offline: from the end of the grace to the last offline seen; online: from
    the first reconnect to the last online seen); ``seconds`` from the first disconnect until every watcher saw
    every change; ``sent`` the changes made, ``cpu_ms_per_message`` CPU ms per change; latency per change seen,
    from when it could first be announced."""
    last_off, last_on = tally.last_us.get("offline"), tally.last_us.get("online")
    busy_us = ((last_off - times.disconnect_us - OFFLINE_GRACE_US) if last_off else 0) \
        + ((last_on - times.reconnect_us) if last_on else 0)
    busy = max(busy_us / 1e6, 1e-6)
    delivered = len(tally.seen)
    lat = sorted(v for values in tally.latency_us.values() for v in values)
    p50, p99 = percentile(lat, 0.50), percentile(lat, 0.99)
    end_us = max(last_off or 0, last_on or 0, times.disconnect_us)
    notes = [*notes, "presence envelopes/s; a message is one presence change (offline or online)"]
    for state in ("offline", "online"):
        values = sorted(v / 1000 for v in tally.latency_us.get(state, ()))
        if values:
            notes.append(f"{state} p50 / p99 {_ms(percentile(values, 0.5))} / {_ms(percentile(values, 0.99))} ms")
    if tally.extra:
        notes.append(f"{tally.extra:,} presence envelopes between reconnecting contacts (not counted: the order "
                     f"of the reconnects decides who sees whom)")
    return RowResult(
        key=spec.key, title=spec.title, rate=round((delivered + tally.extra) / busy, 1),
        send_rate=round(changes / busy, 1), target_rate=None, seconds=round((end_us - times.disconnect_us) / 1e6, 2),
        sent=changes, expected=len(tally.expected), delivered=delivered, lost=len(tally.expected) - delivered,
        duplicated=tally.duplicated, unacked=0, stray=0, receipts_back=0,
        p50_ms=None if p50 is None else round(p50 / 1000, 1), p99_ms=None if p99 is None else round(p99 / 1000, 1),
        client_cpu=client_cpu, cpu=cpu,
        cpu_ms_per_message={name: round(1000 * used / max(changes, 1), 3) for name, used in cpu_all.items()},
        errors={}, notes=notes,
    )


async def add_contacts(api_url: str, pairs: Sequence[tuple[BenchUser, BenchUser]], concurrency: int = 16) -> None:
    """Make each pair mutual contacts (``PUT /contacts/{id}`` both ways), ``concurrency`` requests at a time."""
    sem = asyncio.Semaphore(concurrency)

    async def put(client: httpx.AsyncClient, owner: BenchUser, contact: BenchUser) -> None:
        async with sem:
            r = await client.put(f"/api/v1/contacts/{contact.user_id}",
                                 headers={"Authorization": f"Bearer {owner.token}"})
            if r.status_code != 204:
                raise BenchError(f"add contact: {r.status_code} {r.text[:200]}")

    async with httpx.AsyncClient(base_url=api_url, timeout=60) as client:
        await asyncio.gather(*(put(client, a, b) for x, y in pairs for a, b in ((x, y), (y, x))))


async def _until_seen(tally: PresenceTally, state: str, timeout: float, progress: Callable[[str], None]) -> None:
    """Wait until every expected ``state`` change was seen, or ``timeout`` seconds passed."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    next_report = start + PROGRESS_EVERY
    while tally.outstanding(state) and loop.time() - start < timeout:
        await asyncio.sleep(0.05)
        if loop.time() >= next_report:
            next_report += PROGRESS_EVERY
            progress(f"{state}: {tally.outstanding(state):,} changes not seen yet")


async def presence_storm(deployment: Deployment, spec: RowSpec, count: int, tag: str,
                         progress: Callable[[str], None]) -> RowResult:
    """``count`` users in cliques of ``STORM_CLIQUE`` mutual contacts (presence visible to contacts, the
    default), each clique also the mutual contacts of one watcher that stays connected. All connect (the
    watchers first) and the watchers see them come online; then, measured, every storm user disconnects at
    once, and once the watchers saw them all go offline (after the 5 s grace) they all reconnect at once. Each
    watcher expects each change of its clique once (``PresenceTally``)."""
    watchers_n = math.ceil(count / STORM_CLIQUE)
    echo(f"bench: presence storm: registering {count} users and {watchers_n} watchers")
    users = await make_users(deployment.api_url, count + watchers_n, f"{tag}p")
    storm, watchers = users[:count], users[count:]
    cliques = [(watchers[k], storm[k * STORM_CLIQUE:(k + 1) * STORM_CLIQUE]) for k in range(watchers_n)]
    pairs = [(a, b) for w, members in cliques for i, a in enumerate([w, *members]) for b in members[i:]]
    echo(f"bench: presence storm: {len(pairs):,} mutual contacts")
    await add_contacts(deployment.api_url, pairs)
    watcher_of = {u.user_id: w.user_id for w, members in cliques for u in members}
    scheduler = StormScheduler()
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(200)

    async def connect(u: BenchUser, expect: str | None) -> PresenceConnection:
        async with sem:
            if expect is not None:
                scheduler.presence.expect(watcher_of[u.user_id], u.user_id, expect, now_us())
            _, conn = await loop.create_connection(
                lambda: PresenceConnection(u.index, u, scheduler, f"storm-{tag}-{u.index}"), HOST,
                deployment.mqtt_port)
            await asyncio.wait_for(conn.ready, 60)
            return conn

    conns: list[PresenceConnection] = []
    try:
        conns += await asyncio.gather(*(connect(w, None) for w in watchers))
        conns += await asyncio.gather(*(connect(u, "online") for u in storm))
        await _until_seen(scheduler.presence, "online", STORM_WAIT, progress)
        if scheduler.presence.outstanding():
            raise BenchError(f"presence storm: {scheduler.presence.outstanding():,} of {count:,} users not seen "
                             f"online by their watcher within {STORM_WAIT:.0f} s of connecting")
        echo(f"bench: presence storm: {count} users online; every one disconnects, then reconnects")
        scheduler.presence = tally = PresenceTally()
        meter = CpuMeter(deployment.pids())
        meter.start()
        leaving, conns = conns[watchers_n:], conns[:watchers_n]
        disconnect_us = now_us()
        for conn in leaving:
            tally.expect(watcher_of[conn.user_id], conn.user_id, "offline", now_us() + OFFLINE_GRACE_US)
            conn.close()
        await _until_seen(tally, "offline", OFFLINE_GRACE_MS / 1000 + STORM_WAIT, progress)
        reconnect_us = now_us()
        conns += await asyncio.gather(*(connect(u, "online") for u in storm))
        await _until_seen(tally, "online", STORM_WAIT, progress)
        await asyncio.sleep(0.5)  # a moment for duplicates
        wall, cpu_all = meter.used()
    finally:
        for c in conns:
            c.close()
        await asyncio.sleep(0.2)
    used = merge_postgres(cpu_all)
    cpu = {name: round(v / wall, 3) for name, v in used.items()}
    client = cpu.pop("client", 0.0)
    notes = [f"{count:,} users in cliques of {STORM_CLIQUE} mutual contacts, each clique watched by one more "
             f"contact; offline latency counted from the end of the 5 s grace"]
    if tally.outstanding():
        notes.append(f"gave up {STORM_WAIT:.0f} s after a phase: {tally.outstanding():,} changes not seen, "
                     f"counted as lost")
    return storm_result(spec, tally, 2 * count, StormTimes(disconnect_us, reconnect_us), client, cpu, used, notes)


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Load:
    mode: Mode
    pairs: int
    group_size: int
    duration: float
    window: int
    prefill: int = 0
    storm_users: int = FULL_STORM_USERS


async def run_all(deployment: Deployment, load: Load, rows: Sequence[RowSpec]) -> list[RowResult]:
    """The chat rows of ``rows`` (``run_rows``), then the presence storm when it is one of them."""
    chat_rows = [spec for spec in rows if spec.kind != "presence"]
    results = await run_rows(deployment, load, chat_rows) if chat_rows else []
    for spec in rows:
        if spec.kind == "presence":
            echo(f"bench: row {spec.title}")
            result = await presence_storm(deployment, spec, load.storm_users, secrets.token_hex(3),
                                          lambda line: echo(f"bench:   {line}"))
            echo(f"bench:   {result.rate:,.0f} presence envelopes/s, every change seen after {result.seconds} s, "
                 f"p50 {result.p50_ms} ms, p99 {result.p99_ms} ms, lost {result.lost}, duplicated "
                 f"{result.duplicated}")
            results.append(result)
    return results


async def run_rows(deployment: Deployment, load: Load, rows: Sequence[RowSpec]) -> list[RowResult]:
    """Users, groups and connections, then each row in turn."""
    tag = secrets.token_hex(3)
    echo(f"bench: registering {2 * load.pairs} users")
    users = await make_users(deployment.api_url, 2 * load.pairs, tag)
    groups = await make_groups(deployment.api_url, users, load.group_size)
    runner = Runner(load.duration, load.window, deployment.pids)
    echo(f"bench: connecting {len(users)} users over MQTT/TCP; {len(groups) // load.group_size} groups "
         f"of {load.group_size}")
    await connect_all(runner, users, deployment.mqtt_port)
    t = time.monotonic()
    if not await runner.warm_up(pair_targets(users)):
        raise BenchError("warm-up: not every user got its first message within 120 s")
    echo(f"bench: warm-up: every user sent and got one message ({time.monotonic() - t:.1f} s)")
    results: dict[str, RowResult] = {}
    try:
        for spec in rows:
            rate = None
            if spec.paced:
                base = results.get(spec.of or "")
                if base is None or base.send_rate <= 0:
                    continue
                rate = base.send_rate * spec.share
            if spec.devices > 1:
                synced = await add_devices(runner, users, deployment.mqtt_port, spec.devices)
                echo(f"bench: {spec.devices} devices per user connected (their first sync brought {synced:,} "
                     f"messages)")
            echo(f"bench: row {spec.title}" + ("" if rate is None else f" at {rate:,.0f} messages/s"))
            targets = pair_targets(users, spec.devices) if spec.kind == "pairs" else groups
            result = await runner.run_row(spec, targets, rate, lambda line: echo(f"bench:   {line}"))
            results[spec.key] = result
            echo(f"bench:   {result.rate:,.0f} deliveries/s, p50 {result.p50_ms} ms, p99 {result.p99_ms} ms, "
                 f"lost {result.lost}, duplicated {result.duplicated}, client CPU {result.client_cpu:.0%}")
    finally:
        for c in runner.conns:
            c.close()
        await asyncio.sleep(0.2)
    return list(results.values())


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

def _ms(v: float | None) -> str:
    return "–" if v is None else f"{v:,.1f}"


def markdown_table(rows: Sequence[RowResult]) -> str:
    """The headline table: one line per row."""
    lines = [
        "| row | delivered msg/s | sent msg/s | p50 / p99 ms | lost / duplicated | client CPU | notes |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        notes = list(r.notes)
        if r.target_rate is not None:
            notes.append(f"paced at {r.target_rate:,.0f} msg/s")
        if r.unacked:
            notes.append(f"{r.unacked:,} not acked")
        if r.errors:
            notes.append("errors: " + ", ".join(f"{k} {v:,}" for k, v in sorted(r.errors.items())))
        if r.stray:
            notes.append(f"{r.stray:,} from earlier rows")
        lines.append(f"| {r.title} | {r.rate:,.0f} | {r.send_rate:,.0f} | {_ms(r.p50_ms)} / {_ms(r.p99_ms)} | "
                     f"{r.lost:,} / {r.duplicated:,} | {r.client_cpu:.0%} | {'; '.join(notes)} |")
    return "\n".join(lines)


def cpu_table(rows: Sequence[RowResult]) -> str:
    """CPU per process and row: the share of one core while sending (100% = one core busy), and CPU
    milliseconds per message sent, counted over sending and draining (all the work the row's
    messages caused; less sensitive to other load on the machine than rates are)."""
    names = sorted({n for r in rows for n in r.cpu_ms_per_message if n != "client"},
                   key=lambda n: (-max(r.cpu_ms_per_message.get(n, 0) for r in rows), n))

    def cell(r: RowResult, name: str) -> str:
        share = r.client_cpu if name == "client" else r.cpu.get(name, 0.0)
        return f"{share:.0%} · {r.cpu_ms_per_message.get(name, 0.0):.3f}"

    lines = ["| process | " + " | ".join(r.title for r in rows) + " |", "|---|" + "---:|" * len(rows)]
    for name, label in [("client", "load generator (this process)"), *((n, n) for n in names)]:
        lines.append(f"| {label} | " + " | ".join(cell(r, name) for r in rows) + " |")
    servers = "Kafka, FerretDB, PostgreSQL, nginx" if any(n.startswith("postgres") for n in names) \
        else "Kafka, FerretDB, nginx"
    for label, pick in (("chatmq processes", lambda n: not n.startswith(SHARED_SERVERS)),
                        (servers, lambda n: n.startswith(SHARED_SERVERS))):
        totals = [sum(v for n, v in r.cpu_ms_per_message.items() if n != "client" and pick(n)) for r in rows]
        if any(totals):
            lines.append(f"| {label}: ms per message | " + " | ".join(f"{v:.3f}" for v in totals) + " |")
    return "\n".join(lines)


def describe(meta: dict[str, Any]) -> str:
    """One line saying where and how the figures were measured."""
    m, load = meta["machine"], meta["load"]
    return (f"{meta['mode']} mode, {meta['run']} run, {meta['started']}, commit {meta.get('commit') or '?'}: "
            f"{load['pairs']} pairs ({2 * load['pairs']} users) and groups of {load['group_size']}, "
            f"{load['duration']:g} s per row, window {load['window']} per sender at max rate; "
            + (f"{load['prefill']:,} messages stored before the run; " if load.get("prefill") else "")
            + f"rate limit raised to {RATE_LIMIT['rate_limit_per_sec']}/s (burst {RATE_LIMIT['rate_limit_burst']}) "
            f"on every server process; {m['cores']} cores ({m['cpu']}), Python {m['python']}.")


def report_markdown(rows: Sequence[RowResult], meta: dict[str, Any]) -> str:
    """The report: where, the table, then CPU per process."""
    return (f"{describe(meta)}\n\n{markdown_table(rows)}\n\nCPU per process: share of one core while "
            f"sending · CPU ms per message (sending and draining):\n\n{cpu_table(rows)}\n")


def rows_from_json(data: dict[str, Any]) -> list[RowResult]:
    """The rows of a JSON written by ``chat``."""
    return [RowResult(**r) for r in data["rows"]]


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------

def _run_loop(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


app = typer.Typer(help="The chat benchmark.", no_args_is_help=True, pretty_exceptions_enable=False)


@app.command()
def chat(
    mode: Annotated[str, typer.Option(help="embedded (chatmq serve) or cluster (LocalCluster on Kafka and "
                                           "MongoDB).")] = "embedded",
    quick: Annotated[bool, typer.Option("--quick", help=f"Short rows ({QUICK_DURATION:g} s, {QUICK_PAIRS} pairs) "
                                                        f"for a smoke run.")] = False,
    duration: Annotated[float | None, typer.Option(help=f"Seconds of sending per row (default {FULL_DURATION:g}; "
                                                        f"--quick {QUICK_DURATION:g}).", min=0.5)] = None,
    pairs: Annotated[int | None, typer.Option(help=f"User pairs (default {FULL_PAIRS}; --quick {QUICK_PAIRS}).",
                                              min=1)] = None,
    group_size: Annotated[int, typer.Option(help="Members per group.", min=2)] = 5,
    window: Annotated[int, typer.Option(help="Messages per sender on their way at max rate.", min=1)] = WINDOW,
    prefill: Annotated[int, typer.Option(help="Messages to store before the run (history the hot path must not "
                                              "read: the rates should not move).", min=0)] = 0,
    rows: Annotated[str | None, typer.Option(help=f"Rows to run, comma-separated, of {', '.join(ROW_KEYS)} "
                                                  f"(default: all but presence_storm).")] = None,
    storm_users: Annotated[int | None, typer.Option(help=f"Users reconnecting in the presence storm (default "
                                                         f"{FULL_STORM_USERS}; --quick {QUICK_STORM_USERS}).",
                                                    min=STORM_CLIQUE)] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Where to write the JSON "
                                                   f"(default {DEFAULT_JSON}).")] = None,
    markdown_path: Annotated[Path | None, typer.Option("--markdown", help="Where to write the report "
                                                       f"(default {DEFAULT_MARKDOWN}).")] = None,
) -> None:
    """Chat end to end: users in pairs and in groups, msg/s and latency from publish to arrival."""
    if mode not in ("embedded", "cluster"):
        typer.echo("bench: --mode is embedded or cluster", err=True)
        raise typer.Exit(2)
    chosen = DEFAULT_ROWS if rows is None else tuple(k.strip() for k in rows.split(",") if k.strip())
    unknown = [k for k in chosen if k not in ROW_KEYS]
    if unknown or not chosen:
        typer.echo(f"bench: --rows takes row names of {', '.join(ROW_KEYS)}"
                   + (f"; not {', '.join(unknown)}" if unknown else ""), err=True)
        raise typer.Exit(2)
    specs = [spec for spec in ROWS if spec.key in chosen]
    load = Load(cast(Mode, mode), pairs or (QUICK_PAIRS if quick else FULL_PAIRS), group_size,
                duration or (QUICK_DURATION if quick else FULL_DURATION), window, prefill,
                storm_users or (QUICK_STORM_USERS if quick else FULL_STORM_USERS))
    json_out = json_path or Path(DEFAULT_JSON.format(mode=mode))
    md_out = markdown_path or Path(DEFAULT_MARKDOWN.format(mode=mode))
    started = datetime.now(UTC)
    t0 = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix=f"chatmq-bench-{mode}-"))
    try:
        with bench_command("servers stopped"):
            raise_nofile(4 * load.pairs + 2 * load.storm_users + 1024)
            with deployed(load.mode, workdir, prefill=load.prefill) as deployment:
                results = _run_loop(run_all(deployment, load, specs))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    meta = {"started": started.isoformat(timespec="seconds"), "seconds": round(time.monotonic() - t0, 1),
            "mode": mode, "run": "quick" if quick else "full", "load": asdict(load), "commit": git_commit(),
            "machine": machine_info(), "rate_limit": RATE_LIMIT}
    report = report_markdown(results, meta)
    typer.echo(report)
    for path, text in ((json_out, json.dumps({"meta": meta, "rows": [asdict(r) for r in results]}, indent=2)
                        + "\n"), (md_out, report)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    echo(f"bench: wrote {json_out} and {md_out}")
    bad = [r.title for r in results if r.lost or r.duplicated]
    if bad:
        typer.echo(f"bench: messages lost or duplicated in: {', '.join(bad)}", err=True)
        raise typer.Exit(1)


@app.command()
def render(json_file: Annotated[Path, typer.Argument(help="JSON written by 'bench chat'.")]) -> None:
    """Prints the Markdown report of an earlier run from its JSON."""
    data = json.loads(json_file.read_text())
    typer.echo(report_markdown(rows_from_json(data), data["meta"]), nl=False)


if __name__ == "__main__":
    app()
