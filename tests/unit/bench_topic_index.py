"""Benchmark: ``TopicIndex.match`` against amqtt 0.12.1's per-publish scan of every filter.

Run ``python -m tests.unit.bench_topic_index [--json PATH] [--sizes 10,1000] [--min-time S]``.
It prints a Markdown table and writes JSON (default ``test-artifacts/bench_topic_index.json``).
Not collected by pytest (the name does not start with ``test_``).

Workload, for each size N: N exact per-user subscriptions ``users/{i}/inbox`` (one subscriber
each, QoS 1) plus a few wildcard ones (``users/+/inbox``, ``users/+/outbox``, ``devices/#``,
``$SYS/broker/#``); publishes go to ``users/{i}/inbox`` for random i (fixed seed).

The baseline is the routing loop of amqtt 0.12.1 ``Broker._run_broadcast``: for every
``(filter, [(session, qos), ...])`` in ``Broker._subscriptions`` it calls amqtt's own
``Broker._matches`` (the real function, bound to a stand-in that has only the ``logger`` it
reads), logs a debug line for each filter that does not match (the f-string is built whether
or not debug is on, as in amqtt), and collects ``(session, broadcast.get("qos", sub_qos))`` for
each that does. The ACL check and the sending that follow are left out on both sides: only
"who gets this publish" is measured. Before timing, both sides are checked to give the same
subscribers and QoS (amqtt's duplicates folded to the maximum QoS).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from amqtt.broker import Broker

from chatmq.broker.topic_index import TopicIndex

DEFAULT_JSON = Path("test-artifacts/bench_topic_index.json")
DEFAULT_SIZES = (10, 1_000, 10_000, 100_000)
AMQTT_VERSION = "0.12.1"
WILDCARDS = (
    ("audit", "users/+/inbox", 0),
    ("archiver", "users/+/outbox", 1),
    ("telemetry", "devices/#", 0),
    ("monitor", "$SYS/broker/#", 0),
)


class Client:
    """A subscriber key standing in for a session or connection handler (identity hash)."""

    __slots__ = ("client_id",)

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id

    def __repr__(self) -> str:
        return f"Client({self.client_id})"


class AmqttRouting:
    """amqtt's per-publish scan. ``_matches`` is amqtt's own ``Broker._matches`` function."""

    _matches: Callable[[str, str], bool] = Broker._matches

    def __init__(self) -> None:
        self.logger = logging.getLogger("amqtt.broker")  # Broker.__init__: getLogger(__name__)
        self._subscriptions: dict[str, list[tuple[Client, int]]] = {}

    def add_subscription(self, session: Client, topic_filter: str, qos: int) -> None:
        """As ``Broker.add_subscription`` (amqtt 0.12.1), minus the ACL and retained replay."""
        if topic_filter not in self._subscriptions:
            self._subscriptions[topic_filter] = []
        if all(s.client_id != session.client_id for s, _ in self._subscriptions[topic_filter]):
            self._subscriptions[topic_filter].append((session, qos))

    def route(self, broadcast: dict[str, Any]) -> list[tuple[Client, int]]:
        """The loop of ``Broker._run_broadcast`` up to the per-session ACL check."""
        targets: list[tuple[Client, int]] = []
        for k_filter, subscriptions in self._subscriptions.items():
            # Skip all subscriptions which do not match the topic
            if not self._matches(broadcast["topic"], k_filter):
                self.logger.debug(f"Topic '{broadcast['topic']}' does not match filter '{k_filter}'")
                continue

            for target_session, sub_qos in subscriptions:
                qos = broadcast.get("qos", sub_qos)
                targets.append((target_session, qos))
        return targets


@dataclass
class Result:
    exact_subscriptions: int
    wildcard_subscriptions: int
    index_matches_per_s: float
    amqtt_matches_per_s: float
    speedup: float
    index_us_per_match: float
    amqtt_us_per_match: float
    index_build_s: float


def fold_max(targets: list[tuple[Client, int]]) -> dict[Client, int]:
    out: dict[Client, int] = {}
    for client, qos in targets:
        out[client] = max(qos, out.get(client, -1))
    return out


def rate(run_batch: Callable[[], int], min_time: float, repeat: int) -> float:
    """Best operations per second over ``repeat`` rounds of at least ``min_time`` seconds each."""
    best = 0.0
    for _ in range(repeat):
        ops = 0
        start = time.perf_counter()
        elapsed = 0.0
        while elapsed < min_time:
            ops += run_batch()
            elapsed = time.perf_counter() - start
        best = max(best, ops / elapsed)
    return best


def bench_size(size: int, min_time: float, repeat: int, rng: random.Random) -> Result:
    clients = [Client(f"c{i}") for i in range(size)]
    extra = {name: Client(name) for name, _, _ in WILDCARDS}

    index: TopicIndex[Client] = TopicIndex()
    start = time.perf_counter()
    for i, client in enumerate(clients):
        index.subscribe(client, f"users/{i}/inbox", 1)
    for name, topic_filter, qos in WILDCARDS:
        index.subscribe(extra[name], topic_filter, qos)
    build_s = time.perf_counter() - start

    amqtt = AmqttRouting()
    for i, client in enumerate(clients):
        amqtt.add_subscription(client, f"users/{i}/inbox", 1)
    for name, topic_filter, qos in WILDCARDS:
        amqtt.add_subscription(extra[name], topic_filter, qos)

    topics = [f"users/{rng.randrange(size)}/inbox" for _ in range(1000)]
    checks = [*topics[:50], "devices/d1/telemetry", "$SYS/broker/load", "users/x/outbox", "nobody/here"]
    for topic in checks:
        got, expected = index.match(topic), fold_max(amqtt.route({"topic": topic}))
        if got != expected:
            raise SystemExit(f"mismatch on {topic!r}: index {got} != amqtt {expected}")

    match = index.match

    def index_batch() -> int:
        for topic in topics:
            match(topic)
        return len(topics)

    broadcasts = [{"topic": t, "data": b"x", "session": None} for t in topics]
    position = 0

    def amqtt_batch() -> int:
        # One publish per call: at 100,000 filters one publish takes tens of milliseconds.
        nonlocal position
        amqtt.route(broadcasts[position % len(broadcasts)])
        position += 1
        return 1

    index_rate = rate(index_batch, min_time, repeat)
    amqtt_rate = rate(amqtt_batch, min_time, repeat)
    return Result(
        exact_subscriptions=size,
        wildcard_subscriptions=len(WILDCARDS),
        index_matches_per_s=round(index_rate, 1),
        amqtt_matches_per_s=round(amqtt_rate, 1),
        speedup=round(index_rate / amqtt_rate, 1),
        index_us_per_match=round(1e6 / index_rate, 3),
        amqtt_us_per_match=round(1e6 / amqtt_rate, 3),
        index_build_s=round(build_s, 4),
    )


def markdown(results: Sequence[Result]) -> str:
    lines = [
        "| exact subs | wildcard subs | TopicIndex matches/s | amqtt scan matches/s | speedup "
        "| TopicIndex µs/match | amqtt µs/match |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.exact_subscriptions:,} | {r.wildcard_subscriptions} | {r.index_matches_per_s:,.0f} "
            f"| {r.amqtt_matches_per_s:,.0f} | {r.speedup:,.1f}× | {r.index_us_per_match:.2f} "
            f"| {r.amqtt_us_per_match:,.2f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.unit.bench_topic_index", description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"where to write JSON (default {DEFAULT_JSON})")
    parser.add_argument(
        "--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="comma-separated subscription counts"
    )
    parser.add_argument("--min-time", type=float, default=0.3, help="seconds per timing round (default 0.3)")
    parser.add_argument("--repeat", type=int, default=3, help="timing rounds; the best counts (default 3)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    amqtt_version = version("amqtt")
    if amqtt_version != AMQTT_VERSION:
        print(f"warning: amqtt {amqtt_version} installed; the baseline describes {AMQTT_VERSION}", file=sys.stderr)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    rng = random.Random(args.seed)
    results = [bench_size(size, args.min_time, args.repeat, rng) for size in sizes]

    table = markdown(results)
    print(table)
    report = {
        "benchmark": "topic_index.match vs amqtt Broker._run_broadcast filter scan",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "amqtt": amqtt_version,
        "min_time_s": args.min_time,
        "repeat": args.repeat,
        "seed": args.seed,
        "wildcards": [{"subscriber": n, "filter": f, "qos": q} for n, f, q in WILDCARDS],
        "results": [asdict(r) for r in results],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nJSON written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
