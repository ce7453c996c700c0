"""``Service``: a connection to something outside the process (the bus, the store) that a process
starts, checks and stops; ``start()``/``stop()`` pair with ``async with``."""

from __future__ import annotations

import abc
from typing import Self


class Service(abc.ABC):
    """Started once, stopped once (both idempotent in the implementations), answering ``ping``."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def stop(self) -> None: ...

    @abc.abstractmethod
    async def ping(self) -> None:
        """Readiness: raise a ``ChatMQError`` (``BusError``, ``StoreError``) saying why it cannot answer."""
