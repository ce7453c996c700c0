"""Device-side code for chatmq: the Python SDK, the command-line chat client, simulators.

- ``chatmq.devices.sdk``: ``ChatClient``, a blocking, thread-backed client that speaks
  the public contract (REST under ``/api/v1`` with httpx, MQTT with paho-mqtt 2.x).
- ``chatmq.devices.cli``: the ``typer`` app mounted as ``chatmq client ...``.
"""
