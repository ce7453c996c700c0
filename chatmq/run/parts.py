"""The parts of a cluster, each run as its own process (``chatmq broker --node n1``, ``chatmq router``, …).

Every part connects to Kafka (``kafka_bootstrap``, topics and groups under ``kafka_prefix``)
and MongoDB (``mongo_url``/``mongo_db``), declares the topics it uses, and runs its workers
in consumer groups, so running more copies of a part shares its partitions among them.
The session registry lives in MongoDB (``StoreRegistry``): shared by every copy and kept
across restarts. What each part runs is ``chatmq.run.assembly.PARTS``, the same list the
embedded server runs all of.

With ``influx_url`` set, every part also writes its metrics to InfluxDB on an interval (``MetricsReporter``).
Every part serves ``/metrics``, ``/healthz`` and ``/readyz`` (on ``ops_port``; the API on its REST port) and
announces itself on ``chat.heartbeats`` (``chatmq.run.ops.operate``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from chatmq.core.lifecycle import Stack
from chatmq.core.settings import Settings
from chatmq.run import assembly
from chatmq.run.ops import operate


def part_stack(part: str, settings: Settings) -> Stack:
    """The process of one cluster part, made operable (``chatmq.run.ops.operate``): ``/metrics``,
    ``/healthz``, ``/readyz`` on the API's port (the ``api`` part) or else on an ops server
    (``ops_port``), and heartbeats on ``chat.heartbeats``."""
    p = assembly.Process.open(settings, part, cluster=True)
    components = assembly.PARTS[part](p)
    name = f"node {settings.node}" if part == "broker" else part
    stack = Stack(name, [*p.base([part]), *components])
    http = p.http
    port = None if http is None else (lambda: http.port)
    return operate(stack, settings, p.bus, part, app=p.app, http_port=port,
                   processes=p.processes if part == "api" else None,
                   http_scheme="http" if http is None else http.scheme)


PARTS: dict[str, Callable[[Settings], Stack]] = {
    part: partial(part_stack, part) for part in ("broker", "router", "group-router", "storage", "api", "push",
                                                 "telemetry")
}
"""The cluster parts by command name (``chatmq <part>``)."""
