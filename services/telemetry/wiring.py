"""The InfluxDB components of a process, built from its settings (``influx_*``, ``metrics_interval``).

``influx_components`` is empty when ``influx_url`` is unset. Otherwise it is the shared
``InfluxWriter``, then (given a bus) the ``TelemetryWorker``, then the ``MetricsReporter``:
stacked in that order, they stop in reverse, so the writer outlives its users. The
InfluxDB client is imported here only, so a process without ``influx_url`` does not need
the ``telemetry`` extra; with it and without the extra, ``ConfigError`` says what to install.
"""

from __future__ import annotations

from chatmq.core.bus.base import Bus
from chatmq.core.errors import ConfigError
from chatmq.core.lifecycle import Component
from chatmq.core.settings import Settings


def influx_components(settings: Settings, *, process: str, node: str | None = None,
                      bus: Bus | None = None) -> list[Component]:
    """Writer, telemetry worker (when ``bus`` is given) and metrics reporter of ``process``; see above."""
    s = settings
    if not s.influx_url:
        return []
    try:
        from chatmq.services.telemetry.reporter import MetricsReporter, process_tags
        from chatmq.services.telemetry.worker import TelemetryWorker
        from chatmq.services.telemetry.writer import InfluxWriter
    except ImportError as exc:
        raise ConfigError(f"influx_url is set but the InfluxDB client is missing: pip install "
                          f"'chatmq[telemetry]' ({exc})") from exc
    writer = InfluxWriter(s.influx_url, token=s.influx_token, org=s.influx_org, bucket=s.influx_bucket,
                          batch_size=s.influx_batch_size)
    components: list[Component] = [writer]
    if bus is not None:
        components.append(TelemetryWorker(bus, writer, measurement=s.telemetry_measurement,
                                          batch_size=s.influx_batch_size, linger=s.influx_flush_interval,
                                          extra_tags=s.influx_tags))
    tags = process_tags(process, node, s.influx_tags, s.instance)
    components.append(MetricsReporter(writer, tags, s.metrics_interval))
    return components
