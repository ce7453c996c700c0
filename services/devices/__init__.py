"""Device management in the cloud: the consumer of ``chat.devices`` (``DeviceWorker``: presence,
shadows) and what the API uses to reach it (``BusDeviceLink``)."""
