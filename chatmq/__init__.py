"""chatmq: chat and device messaging over MQTT.

The import package is assembled from the repository's top-level folders (see
``pyproject.toml``): ``chatmq`` itself lives in ``chatmq/`` (``chatmq.core``, the foundation
layer, and ``chatmq.run``, the run layer), ``chatmq.broker`` in ``broker/``,
``chatmq.services`` in ``services/`` and so on. The layers are listed in ``.importlinter``.
"""

__version__ = "0.1.0"
