"""``chatmq bench soak``: many clients connecting and disconnecting in waves while others chat, for a
set time; it follows the server's memory and open files and fails on growth that does not come back,
on a lost message, or on a stalled event loop.

Run ``chatmq bench soak [--clients 10000] [--duration 120]``. It

1. raises this process's open-file limit (soft to hard; the server inherits it) and stops with what
   it needs when the hard limit is too low: ``--clients`` plus ``FD_MARGIN``;
2. starts ``chatmq serve`` on free 127.0.0.1 ports with the per-connection rate limits raised
   (``bench_chat.EmbeddedDeployment``) and the per-address connection limits lifted
   (``SOAK_SETTINGS``), registers ``--pairs`` pairs of chatting users, one ping pair
   and ``--wave-users`` users for the waves;
3. connects the chatting users (``bench_chat.ChatConnection``): each pair sends ``--chat-rate``
   messages per second each way, the ping pair one message every ``--ping-interval`` seconds,
   whatever is still on its way (so a stalled server shows in the ping's latency, publish to
   delivery, not as fewer pings); recipients send ``delivered`` receipts;
4. runs waves until ``--duration`` is over (at least two): ``--clients`` raw asyncio clients
   (``bench_broker.IdleClients``: CONNECT with a wave user's token and SUBSCRIBE to its inbox in one
   write, ``--concurrency`` handshakes at a time; on an event loop of their own, ``SideLoop``, so
   that their handshakes do not delay the chats' loop) connect, stay ``--hold`` seconds and go, every
   other wave by DISCONNECT and the others by dropping the connection (a TCP reset); after each
   wave it waits (at most ``SETTLE_SECONDS``) for the server's open files to come back;
5. samples the server's RSS (``VmRSS``) and open files (``/proc/<pid>/fd``) every
   ``--sample-every`` seconds, printing a progress line;
6. stops sending, waits for every chat message to arrive (at most ``DRAIN_SECONDS``), stops the
   server, prints a table per wave and the verdict, and writes everything to ``--json``.

It exits 1 when: RSS or open files after the last wave exceed those after the first wave by more
than ``--rss-tolerance-mib`` / ``--fd-tolerance`` (growth that did not come back); a chat or ping
message was lost; the ping's p99 exceeded ``--max-ping-p99-ms`` (a stalled loop); a wave client
could not connect. Speed is never asserted by the tests; ``tests/e2e/test_bench_soak.py`` runs a
small soak.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import resource
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Coroutine, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from chatmq.bench.bench_broker import (
    BenchError,
    IdleClientError,
    IdleClients,
    bench_command,
    echo,
    git_commit,
    machine_info,
    raise_nofile,
    read_rss_kib,
)
from chatmq.bench.bench_chat import (
    HOST,
    PROGRESS_EVERY,
    BenchUser,
    ChatConnection,
    Deployment,
    RowTally,
    Target,
    deployed,
    make_users,
    percentile,
)
from chatmq.broker.wire import encode_connect, encode_subscribe

DEFAULT_JSON = "test-artifacts/bench_soak.json"
FD_MARGIN = 512  # open files besides the wave clients: chat connections, the server's own, the runtime's
SETTLE_SECONDS = 15.0  # after a wave goes, how long at most to wait for the server's open files to come back
DRAIN_SECONDS = 30.0  # after the run, how long at most to wait for chat messages on their way
SOAK_SETTINGS = {"max_connections_per_address": "0", "connect_rate_per_address": "0"}
"""Every wave client comes from 127.0.0.1: the per-address limits are lifted (the node's own limit,
from its open-file limit, stays), so that the churn, not the limiter, is what is soaked."""


# --------------------------------------------------------------------------------------------
# What is measured
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sample:
    """The server at one moment: ``t`` seconds into the run, ``clients`` wave clients connected."""

    t: float
    wave: int
    clients: int
    rss_kib: int
    fds: int


@dataclass
class Wave:
    """One wave: how fast its clients connected, the peak while they were on, the level after they went."""

    index: int
    clients: int
    how_closed: str
    connect_seconds: float = 0.0
    peak_rss_kib: int = 0
    peak_fds: int = 0
    after: Sample | None = None
    settle_seconds: float = 0.0
    error: str | None = None


@dataclass(frozen=True)
class ChatResult:
    """One chat's messages (``ping`` or ``pairs``): sent, acked, delivered, lost; latency publish to delivery."""

    name: str
    sent: int
    acked: int
    delivered: int
    lost: int
    duplicated: int
    receipts_back: int
    errors: dict[str, int]
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None


@dataclass(frozen=True)
class Limits:
    rss_tolerance_mib: float
    fd_tolerance: int
    max_ping_p99_ms: float


def read_fd_count(pid: int) -> int:
    """Open file descriptors of a process (entries of ``/proc/<pid>/fd``)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def chat_result(name: str, tally: RowTally) -> ChatResult:
    latencies = sorted(us / 1000 for us in tally.latency_us)
    return ChatResult(name, tally.sent, tally.acked, tally.delivered, tally.outstanding, tally.duplicated,
                      tally.receipts_back, dict(tally.errors), percentile(latencies, 0.5),
                      percentile(latencies, 0.99), latencies[-1] if latencies else None)


def verdict(waves: Sequence[Wave], chats: Sequence[ChatResult], limits: Limits) -> list[str]:
    """Why the soak failed (empty: it passed). Growth is the level after the last wave against the
    level after the first: what the first wave leaves behind (caches, arenas) is allowed once."""
    failures = [f"wave {w.index}: {w.error}" for w in waves if w.error]
    settled = [w for w in waves if w.after is not None]
    if len(settled) < 2:
        failures.append(f"only {len(settled)} wave(s) completed; growth needs two")
    else:
        first, last = settled[0].after, settled[-1].after
        assert first is not None
        assert last is not None
        rss_growth = (last.rss_kib - first.rss_kib) / 1024
        if rss_growth > limits.rss_tolerance_mib:
            failures.append(f"RSS grew by {rss_growth:,.1f} MiB from wave {settled[0].index} to wave "
                            f"{settled[-1].index} and did not come back (tolerance {limits.rss_tolerance_mib:g} MiB)")
        fd_growth = last.fds - first.fds
        if fd_growth > limits.fd_tolerance:
            failures.append(f"open files grew by {fd_growth:,} from wave {settled[0].index} to wave "
                            f"{settled[-1].index} and did not come back (tolerance {limits.fd_tolerance})")
    for chat in chats:
        if chat.sent == 0:
            failures.append(f"{chat.name}: no message was sent")
        if chat.lost:
            failures.append(f"{chat.name}: {chat.lost:,} of {chat.sent:,} messages lost")
        if chat.duplicated:
            failures.append(f"{chat.name}: {chat.duplicated:,} messages delivered twice")
    ping = next((c for c in chats if c.name == "ping"), None)
    if ping is not None and ping.p99_ms is not None and ping.p99_ms > limits.max_ping_p99_ms:
        failures.append(f"ping p99 {ping.p99_ms:,.1f} ms is above {limits.max_ping_p99_ms:g} ms: "
                        f"the server's loop stalled")
    return failures


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

def _mib(kib: int | None) -> str:
    return "–" if kib is None else f"{kib / 1024:,.1f}"


def _ms(v: float | None) -> str:
    return "–" if v is None else f"{v:,.1f}"


def wave_table(waves: Sequence[Wave]) -> str:
    """One line per wave: connect rate, peak, and the level once its clients had gone."""
    lines = ["| wave | clients | closed by | connect s | conn/s | peak RSS MiB | peak fds | RSS after MiB | "
             "fds after | settle s |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for w in waves:
        rate = f"{w.clients / w.connect_seconds:,.0f}" if w.connect_seconds > 0 and not w.error else "–"
        after = w.after
        lines.append(f"| {w.index} | {w.clients:,} | {w.how_closed} | {w.connect_seconds:.1f} | {rate} | "
                     f"{_mib(w.peak_rss_kib)} | {w.peak_fds:,} | {_mib(after.rss_kib if after else None)} | "
                     f"{after.fds if after else '–'} | {w.settle_seconds:.1f} |")
    return "\n".join(lines)


def chat_table(chats: Sequence[ChatResult]) -> str:
    """One line per chat: messages and latency from publish to delivery."""
    lines = ["| chat | sent | acked | delivered | lost | p50 / p99 / max ms | errors |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for c in chats:
        errors = ", ".join(f"{k} {v:,}" for k, v in sorted(c.errors.items())) or "–"
        lines.append(f"| {c.name} | {c.sent:,} | {c.acked:,} | {c.delivered:,} | {c.lost:,} | "
                     f"{_ms(c.p50_ms)} / {_ms(c.p99_ms)} / {_ms(c.max_ms)} | {errors} |")
    return "\n".join(lines)


def report(waves: Sequence[Wave], chats: Sequence[ChatResult], failures: Sequence[str]) -> str:
    verdict_text = "PASS" if not failures else "FAIL\n" + "\n".join(f"- {f}" for f in failures)
    return f"{wave_table(waves)}\n\n{chat_table(chats)}\n\nverdict: {verdict_text}\n"


# --------------------------------------------------------------------------------------------
# The clients
# --------------------------------------------------------------------------------------------

T = TypeVar("T")


class SideLoop:
    """A second event loop, in a thread of its own, for the wave clients: their thousands of
    handshakes must not hold up the ping chat's loop, whose latency is to measure the server."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="soak-waves", daemon=True)
        self._thread.start()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the side loop; its result (or exception) comes back here."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class WaveClients(IdleClients):
    """One wave's clients: client ``i`` connects as wave user ``i mod len(users)`` (a token, clean
    session) and subscribes to that user's inbox."""

    def __init__(self, port: int, users: Sequence[BenchUser], prefix: str) -> None:
        super().__init__(HOST, port, prefix=prefix)
        self.users = users

    def _greeting(self, i: int) -> bytes:
        user = self.users[i % len(self.users)]
        return (encode_connect(f"{self.prefix}-{i}", username=user.user_id, password=user.token)
                + encode_subscribe(1, [(f"users/{user.user_id}/inbox", 1)]))


class Chat:
    """A ``bench_chat.Scheduler``: the tally of one chat's connections; sending is paced by ``run``."""

    def __init__(self, name: str, tag: str) -> None:
        self.name = name
        self.tag = tag
        self.tally = RowTally(f"{name}{tag}w.")
        self.senders: list[ChatConnection] = []

    async def warm_up(self, timeout: float = 60.0) -> None:
        """One message from each sender, waiting until all arrived (each inbox's replay at connect is
        over), then a fresh tally: the first messages do not count."""
        for conn in self.senders:
            conn.send(1)
        deadline = time.monotonic() + timeout
        while self.tally.outstanding:
            if time.monotonic() > deadline:
                raise BenchError(f"{self.name}: warm-up messages did not arrive within {timeout:.0f} s")
            await asyncio.sleep(0.05)
        self.tally = RowTally(f"{self.name}{self.tag}.")

    def freed(self, sender: ChatConnection) -> None:
        """A message reached its recipient (open loop: the next one goes at its time anyway)."""

    async def run(self, interval: float, stop: asyncio.Event) -> None:
        """One message from each sender every ``interval`` seconds until ``stop``."""
        loop = asyncio.get_running_loop()
        due = loop.time()
        while not stop.is_set():
            for conn in self.senders:
                conn.send(1)
            due += interval
            delay = due - loop.time()
            if delay < 0:  # fell behind (a stalled loop here): do not burst to catch up
                due = loop.time()
            await asyncio.sleep(max(0.0, delay))


async def connect_chat(chat: Chat, a: BenchUser, b: BenchUser, port: int) -> list[ChatConnection]:
    """``a`` and ``b`` connected, each sending to the other."""
    loop = asyncio.get_running_loop()
    conns = []
    for me, other in ((a, b), (b, a)):
        _, conn = await loop.create_connection(
            functools.partial(ChatConnection, me.index, me.user_id, me.token, chat), HOST, port)
        await asyncio.wait_for(conn.ready, 30)
        conn.target = Target(other.user_id, None, 1)
        conns.append(conn)
    return conns


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Load:
    clients: int
    duration: float
    hold: float
    concurrency: int
    pairs: int
    chat_rate: float
    ping_interval: float
    wave_users: int
    sample_every: float


@dataclass
class Run:
    """Everything the run saw, filled in as it goes."""

    pid: int
    t0: float
    samples: list[Sample] = field(default_factory=list)
    waves: list[Wave] = field(default_factory=list)
    connected: int = 0
    wave: int = 0

    def sample(self) -> Sample:
        s = Sample(round(time.monotonic() - self.t0, 2), self.wave, self.connected, read_rss_kib(self.pid),
                   read_fd_count(self.pid))
        self.samples.append(s)
        if self.waves:
            w = self.waves[-1]
            w.peak_rss_kib = max(w.peak_rss_kib, s.rss_kib)
            w.peak_fds = max(w.peak_fds, s.fds)
        return s


async def sampler(run: Run, every: float, chats: Sequence[Chat], stop: asyncio.Event) -> None:
    """A sample every ``every`` seconds, and a progress line every ``PROGRESS_EVERY``."""
    next_report = 0.0
    while not stop.is_set():
        s = run.sample()
        if s.t >= next_report:
            next_report = s.t + PROGRESS_EVERY
            p99 = percentile(sorted(chats[0].tally.latency_us[-50:]), 0.99)
            delivered = sum(c.tally.delivered for c in chats)
            echo(f"soak: {s.t:6.1f} s  wave {s.wave}  clients {s.clients:,}  RSS {s.rss_kib / 1024:,.1f} MiB  "
                 f"fds {s.fds:,}  ping p99 (last 50) {_ms(None if p99 is None else p99 / 1000)} ms  "
                 f"chat delivered {delivered:,}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


async def settle(run: Run, level: int, tolerance: int) -> float:
    """Wait until the server's open files are within ``tolerance`` of ``level`` (at most
    ``SETTLE_SECONDS``); the seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < SETTLE_SECONDS:
        if read_fd_count(run.pid) <= level + tolerance:
            break
        await asyncio.sleep(0.2)
    return time.monotonic() - start


async def waves(run: Run, load: Load, port: int, users: Sequence[BenchUser], tag: str, limits: Limits) -> None:
    """Waves until ``duration`` is over, at least two; stops at the first wave that fails. The wave
    clients run on a ``SideLoop``."""
    side = SideLoop()
    try:
        await _waves(side, run, load, port, users, tag, limits)
    finally:
        side.close()


async def _waves(side: SideLoop, run: Run, load: Load, port: int, users: Sequence[BenchUser], tag: str,
                 limits: Limits) -> None:
    while run.wave < 2 or time.monotonic() - run.t0 < load.duration:
        run.wave += 1
        how = "DISCONNECT" if run.wave % 2 else "reset"
        wave = Wave(run.wave, load.clients, how)
        run.waves.append(wave)
        before = read_fd_count(run.pid)
        clients = WaveClients(port, users, f"soak{tag}-w{run.wave}")
        t = time.monotonic()
        try:
            await side.run(clients.open(load.clients, concurrency=load.concurrency, timeout=60.0))
        except IdleClientError as exc:
            wave.error = str(exc)
            wave.connect_seconds = time.monotonic() - t
            return
        wave.connect_seconds = time.monotonic() - t
        run.connected = len(clients)
        run.sample()
        await asyncio.sleep(load.hold)
        run.sample()
        await side.run(clients.close(abort=how == "reset"))
        run.connected = 0
        wave.settle_seconds = await settle(run, before, limits.fd_tolerance)
        wave.after = run.sample()
        echo(f"soak: wave {wave.index}: {load.clients:,} clients connected in {wave.connect_seconds:.1f} s, "
             f"closed by {how}; after: RSS {wave.after.rss_kib / 1024:,.1f} MiB, fds {wave.after.fds:,}")


async def drain(chats: Sequence[Chat]) -> None:
    """Wait until every chat message arrived and was acked (at most ``DRAIN_SECONDS``)."""
    deadline = time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < deadline:
        if all(not c.tally.outstanding and c.tally.acked >= c.tally.sent for c in chats):
            return
        await asyncio.sleep(0.1)


async def soak_run(deployment: Deployment, load: Load, limits: Limits) -> tuple[Run, list[ChatResult]]:
    tag = secrets.token_hex(3)
    echo(f"soak: registering {2 * load.pairs + 2 + load.wave_users} users")
    users = await make_users(deployment.api_url, 2 * load.pairs + 2 + load.wave_users, tag)
    ping, pairs = Chat("ping", tag), Chat("pairs", tag)
    ping_conns = await connect_chat(ping, users[0], users[1], deployment.mqtt_port)
    ping.senders = ping_conns[:1]  # one way: one sender, one clock
    pair_conns: list[ChatConnection] = []
    for k in range(load.pairs):
        pair_conns += await connect_chat(pairs, users[2 + 2 * k], users[3 + 2 * k], deployment.mqtt_port)
    pairs.senders = pair_conns
    await ping.warm_up()
    await pairs.warm_up()
    run = Run(deployment.pids()["serve"], time.monotonic())
    stop_chat, stop_sampling = asyncio.Event(), asyncio.Event()
    tasks = [asyncio.create_task(ping.run(load.ping_interval, stop_chat)),
             asyncio.create_task(pairs.run(1.0 / load.chat_rate, stop_chat)),
             asyncio.create_task(sampler(run, load.sample_every, (ping, pairs), stop_sampling))]
    try:
        await waves(run, load, deployment.mqtt_port, users[2 + 2 * load.pairs:], tag, limits)
        stop_chat.set()
        await drain((ping, pairs))
    finally:
        stop_chat.set()
        stop_sampling.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for conn in ping_conns + pair_conns:
            conn.close()
        await asyncio.sleep(0.1)
    return run, [chat_result("ping", ping.tally), chat_result("pairs", pairs.tally)]


def soak(
    clients: Annotated[int, typer.Option(help="Clients in each wave.", min=1)] = 10_000,
    duration: Annotated[float, typer.Option(help="Seconds of waves (at least two waves run).", min=1)] = 120.0,
    hold: Annotated[float, typer.Option(help="Seconds a wave's clients stay connected.", min=0)] = 5.0,
    concurrency: Annotated[int, typer.Option(help="Handshakes in flight while a wave connects.", min=1)] = 200,
    pairs: Annotated[int, typer.Option(help="User pairs chatting throughout.", min=1)] = 3,
    chat_rate: Annotated[float, typer.Option(help="Messages per second each chatting user sends.", min=0.1)] = 10.0,
    ping_interval: Annotated[float, typer.Option(help="Seconds between the ping chat's messages.", min=0.01)] = 0.1,
    wave_users: Annotated[int, typer.Option(help="Users the wave clients log in as (round robin).", min=1)] = 10,
    sample_every: Annotated[float, typer.Option(help="Seconds between samples of RSS and open files.",
                                                min=0.1)] = 1.0,
    rss_tolerance_mib: Annotated[float, typer.Option(help="RSS growth allowed, last wave against the first "
                                                          "(MiB).")] = 32.0,
    fd_tolerance: Annotated[int, typer.Option(help="Open-file growth allowed, last wave against the first.")] = 16,
    max_ping_p99_ms: Annotated[float, typer.Option(help="Ping p99 (publish to delivery) above which the loop "
                                                        "counts as stalled (ms).")] = 500.0,
    json_path: Annotated[Path, typer.Option("--json", help="Where to write the JSON.")] = Path(DEFAULT_JSON),
) -> None:
    """Soak: clients connecting and disconnecting in waves while others chat; fails on growth that does
    not come back, on loss, or on a stalled loop."""
    load = Load(clients, duration, hold, concurrency, pairs, chat_rate, ping_interval, wave_users, sample_every)
    limits = Limits(rss_tolerance_mib, fd_tolerance, max_ping_p99_ms)
    needed = clients + FD_MARGIN
    if raise_nofile(needed) < needed:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        typer.echo(f"bench: {clients:,} clients need {needed:,} open files in this process and in the server; "
                   f"the hard limit is {hard:,}: raise it (ulimit -Hn {needed}, or LimitNOFILE / limits.conf) "
                   f"or use fewer --clients", err=True)
        raise typer.Exit(2)
    started = datetime.now(UTC)
    workdir = Path(tempfile.mkdtemp(prefix="chatmq-bench-soak-"))
    try:
        with bench_command("server stopped"), deployed("embedded", workdir, SOAK_SETTINGS) as deployment:
            run, chats = asyncio.run(soak_run(deployment, load, limits))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    failures = verdict(run.waves, chats, limits)
    typer.echo(report(run.waves, chats, failures))
    meta = {"started": started.isoformat(timespec="seconds"), "seconds": round(time.monotonic() - run.t0, 1),
            "load": asdict(load), "limits": asdict(limits), "commit": git_commit(), "machine": machine_info()}
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps({"meta": meta, "waves": [asdict(w) for w in run.waves],
                                     "chats": [asdict(c) for c in chats],
                                     "samples": [asdict(s) for s in run.samples], "failures": failures},
                                    indent=2) + "\n")
    echo(f"bench: wrote {json_path}")
    if failures:
        raise typer.Exit(1)
