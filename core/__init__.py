"""chatmq: chat and device messaging over MQTT.

The import package is assembled from the repository's top-level folders (see
``pyproject.toml``): ``chatmq`` itself lives in ``core/``, ``chatmq.broker`` in
``broker/``, ``chatmq.services`` in ``services/`` and so on.
"""

__version__ = "0.1.0"
