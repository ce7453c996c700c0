"""The system's own metrics, as prometheus-client collectors in the process's default registry.

Every process serves them on ``/metrics`` and, when ``influx_url`` is set, writes them to
InfluxDB on an interval. Define each metric here, once, and import it where it is counted.
Names follow Prometheus conventions: ``chatmq_`` prefix, ``_total`` for counters, base units.

Two kinds:

* counted where things happen (``Counter``, ``Histogram``, ``Gauge``): code on the message
  path binds its labelled children once (``MESSAGES_IN.labels(node, "message")``) and only calls
  ``inc``/``observe`` per message;
* read at scrape time from live objects (``SOURCES``): a component ``add``s a function
  yielding ``(family, labels, value)`` samples when it starts and removes it when it stops,
  so nothing is counted on the message path (the broker's connections and queues, the
  in-process bus's lag, a Kafka consumer's last measured lag).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

PUSH_RESULTS = Counter(
    "chatmq_push_results_total",
    "Push notifications by provider and result (sent, retried, unregistered, failed).",
    ["provider", "result"],
)
PUSH_UNPUBLISHED = Counter(
    "chatmq_push_unpublished_total",
    "Push records for offline users that could not be put on chat.push (the messages were delivered anyway).",
)

DEVICES_FORGOTTEN = Counter(
    "chatmq_devices_forgotten_total",
    "Devices (MQTT client ids) of users signed out because a new one came beyond max_devices_per_user.",
)

# --- messages ----------------------------------------------------------------------------
MESSAGES_IN = Counter(
    "chatmq_messages_in_total",
    "Outbox publishes a broker node put on the bus, by node and type (message, group_message, receipt, action, "
    "telemetry, command).",
    ["node", "type"],
)
MESSAGES_ACCEPTED = Counter(
    "chatmq_messages_accepted_total",
    "Messages the routers committed to the store, by kind (direct, group) and result (new, duplicate: a "
    "resend acked again).",
    ["kind", "result"],
)
MESSAGES_REFUSED = Counter(
    "chatmq_messages_refused_total",
    "Outbox publishes answered with an error envelope, by error code.",
    ["code"],
)
MESSAGES_OUT = Counter(
    "chatmq_messages_out_total",
    "Inbox envelopes a broker node wrote to its users' connections (one per connection), by node and "
    "envelope type (message, ack, receipt, event, error).",
    ["node", "type"],
)
DELIVERY_LATENCY = Histogram(
    "chatmq_delivery_latency_seconds",
    "From a message's server timestamp to its write to the recipient's connection, measured at the node; "
    "path live (the recipient was online) or replay (sent at its next connect).",
    ["node", "path"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
             3600.0),
)

EVENT_LOOP_LAG = Histogram(
    "chatmq_event_loop_lag_seconds",
    "How late the process's event loop ran a timer (every 0.1 s): the time every client of the process "
    "waited meanwhile.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

# --- the bus -----------------------------------------------------------------------------
BUS_PUBLISH_ERRORS = Counter(
    "chatmq_bus_publish_errors_total",
    "Bus publishes that failed (Kafka away or refusing), by topic.",
    ["topic"],
)
BUS_PUBLISH_RETRIES = Counter(
    "chatmq_bus_publish_retries_total",
    "Publishes a broker node retried while the bus was away, by topic.",
    ["topic"],
)
BUS_RECORDS = Counter(
    "chatmq_bus_records_processed_total",
    "Bus records a consumer group processed and committed in this process, by group.",
    ["group"],
)
BUS_BATCH_FAILURES = Counter(
    "chatmq_bus_batch_failures_total",
    "Batches of bus records whose processing raised (and was retried), by consumer group.",
    ["group"],
)
INFLUX_POINTS = Counter(
    "chatmq_influx_points_total",
    "Points this process handed to InfluxDB, by result: written, rejected (refused as malformed, skipped), "
    "invalid (a telemetry record that is not a valid reading, skipped) or dropped (a metrics snapshot "
    "InfluxDB did not take within one interval).",
    ["result"],
)
INFLUX_WRITE_FAILURES = Counter(
    "chatmq_influx_write_failures_total",
    "InfluxDB write attempts that failed and were retried (server away, 5xx, 429, 401/403/404).",
)


# --- read at scrape time -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Family:
    """A metric read at scrape time: its name (counters without ``_total``), help, type and label names."""

    name: str
    documentation: str
    kind: Literal["gauge", "counter"]
    labels: tuple[str, ...]


CONNECTIONS = Family("chatmq_connections", "Live authenticated MQTT connections, by node, transport (tcp, ws) "
                     "and kind (user, device).", "gauge", ("node", "transport", "kind"))
BROKER_QUEUED = Family("chatmq_broker_queued_messages", "Messages waiting in the per-session outboxes of a "
                       "broker node (not yet written to the client).", "gauge", ("node",))
BROKER_INFLIGHT = Family("chatmq_broker_inflight_messages", "QoS 1/2 messages a broker node sent and its "
                         "clients have not acknowledged yet.", "gauge", ("node",))
BROKER_DELIVERED = Family("chatmq_broker_delivered", "MQTT PUBLISH packets a broker node wrote to its clients.",
                          "counter", ("node",))
BROKER_DROPPED = Family("chatmq_broker_dropped", "Messages a broker node dropped: reason qos0 (a full queue) or "
                        "offline (the full queue of an absent persistent session).", "counter", ("node", "reason"))
BROKER_SLOW = Family("chatmq_broker_slow_disconnects", "Connections a broker node closed because the client "
                     "read too slowly.", "counter", ("node",))
BROKER_DISCONNECTS = Family("chatmq_broker_disconnects", "Client connections of a broker node that ended, by "
                            "reason (client_disconnect, connection_lost, keepalive_timeout, protocol_error, "
                            "packet_too_large, slow_consumer, taken_over, kicked, shutdown, internal_error).",
                            "counter", ("node", "reason"))
BROKER_REFUSED = Family("chatmq_broker_refused_connections", "Connections a broker node closed before their CONNECT "
                        "was processed, by reason (node_full, address_full, connect_rate, connect_timeout).",
                        "counter", ("node", "reason"))
BROKER_QUEUED_BYTES = Family("chatmq_broker_queued_bytes", "Bytes of topic and payload a broker node holds queued "
                             "for its clients (not yet sent).", "gauge", ("node",))
PENDING_MESSAGES = Family("chatmq_pending_messages", "Messages stored and not yet confirmed delivered by their "
                          "recipient (counted by the storage part, or the embedded server, every "
                          "heartbeat_interval; only that process exports it).", "gauge", ())
CONSUMER_LAG = Family("chatmq_bus_consumer_lag", "Records on the bus not yet read by a consumer group, by topic "
                      "and group: the high-water mark minus the group's position (Kafka, as last measured by "
                      "this process's consumer, about once a second), or minus its commit (the in-process bus).",
                      "gauge", ("topic", "group"))

Sample = tuple[Family, tuple[str, ...], float]
"""One value of a scrape-time family: ``(family, label values in the family's order, value)``."""

Source = Callable[[], Iterable[Sample]]


class Sources(Collector):
    """The scrape-time sources of this process, collected as one set of metric families.

    Samples with the same family and labels from several sources are summed (two broker
    nodes of one name never run in one process, but tests may start several servers).
    """

    def __init__(self) -> None:
        self._sources: list[Source] = []
        self._lock = threading.Lock()  # the /metrics handler may run in another thread

    def add(self, source: Source) -> Callable[[], None]:
        """Collect ``source`` from now on; returns the function that removes it (safe to call twice)."""
        with self._lock:
            self._sources.append(source)

        def remove() -> None:
            with self._lock:
                if source in self._sources:
                    self._sources.remove(source)

        return remove

    def describe(self) -> list[Metric]:
        """Nothing up front: the registry then checks no names for this collector (they vary)."""
        return []

    def samples(self) -> dict[Family, dict[tuple[str, ...], float]]:
        """Every source's samples now, summed by family and labels."""
        with self._lock:
            sources = list(self._sources)
        out: dict[Family, dict[tuple[str, ...], float]] = {}
        for source in sources:
            try:
                samples = list(source())
            except Exception:  # a live object changed under a reader in another thread: skip it this time
                log.debug("metrics source %r failed", source, exc_info=True)
                continue
            for family, labels, value in samples:
                values = out.setdefault(family, {})
                values[labels] = values.get(labels, 0.0) + value
        return out

    def collect(self) -> Iterator[Metric]:
        for family, values in self.samples().items():
            metric: GaugeMetricFamily | CounterMetricFamily
            if family.kind == "gauge":
                metric = GaugeMetricFamily(family.name, family.documentation, labels=family.labels)
            else:
                metric = CounterMetricFamily(family.name, family.documentation, labels=family.labels)
            for labels, value in values.items():
                metric.add_metric(list(labels), value)
            yield metric


SOURCES = Sources()
REGISTRY.register(SOURCES)
