"""Device telemetry and the system's metrics to InfluxDB.

* ``reading``: the reading format devices publish, validated at the broker node (no I/O, no
  InfluxDB client: the node imports it).
* ``writer``: ``InfluxWriter``, batches to the InfluxDB v2 write API until accepted.
* ``worker``: ``TelemetryWorker``, readings from ``chat.telemetry`` to points.
* ``reporter``: ``MetricsReporter``, the Prometheus registry to points on an interval.
* ``wiring``: the components a process runs when ``influx_url`` is set.

Only ``reading`` may be imported without the ``telemetry`` extra (influxdb-client, aiohttp).
"""
