"""The system's own metrics, as prometheus-client collectors in the process's default registry.

Every process serves them on ``/metrics`` and, when ``influx_url`` is set, writes them to
InfluxDB on an interval. Define each metric here, once, and import it where it is counted.
Names follow Prometheus conventions: ``chatmq_`` prefix, ``_total`` for counters, base units.
"""

from __future__ import annotations

from prometheus_client import Counter

PUSH_RESULTS = Counter(
    "chatmq_push_results_total",
    "Push notifications by provider and result (sent, retried, unregistered, failed).",
    ["provider", "result"],
)
