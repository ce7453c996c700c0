"""Lifecycle of every chatmq process: components with ``start``/``stop``, stacked in order.

A process (the embedded server, or one part of a cluster) is a ``Stack`` of components
started in dependency order and stopped in reverse.

Readiness: a component may also have ``async def check()`` raising an exception that says
why it cannot serve (the store does not answer, the bus is unreachable, a consume loop
ended). ``Stack.readiness()`` is ready when every component started and every check passed.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from chatmq.core.bus.base import Bus, TopicSpec
from chatmq.core.errors import ChatMQError

log = logging.getLogger("chatmq")


class Component(Protocol):
    """Anything a process starts and stops: stores, buses, workers, servers."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@runtime_checkable
class Reloadable(Protocol):
    """A component that reads its files again on SIGHUP without dropping what it serves (``ServerTls``);
    ``reload()`` logs a failure and keeps what it had."""

    def reload(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Readiness:
    """Whether a process can serve: ``components`` maps each component's name to ``ok`` or why not."""

    ready: bool
    components: dict[str, str]

    @property
    def not_ready(self) -> dict[str, str]:
        return {name: state for name, state in self.components.items() if state != "ok"}


class Stack:
    """``components`` started in order and stopped in reverse; ``name`` is logged."""

    check_timeout = 2.0
    """Seconds a component's readiness check may take before it counts as not ready."""

    def __init__(self, name: str, components: list[Component]) -> None:
        self.name = name
        self.components = components
        self._started: list[Component] = []

    def component_names(self) -> list[str]:
        """A name per component, in order: its class name, numbered when a class comes again."""
        names: list[str] = []
        for component in self.components:
            base = type(component).__name__.lstrip("_")
            name, n = base, 1
            while name in names:
                n += 1
                name = f"{base}#{n}"
            names.append(name)
        return names

    async def readiness(self) -> Readiness:
        """Every component's state: ``not started``, ``ok``, or the reason its ``check()`` gave (or
        that it took longer than ``check_timeout``). Checks run concurrently."""
        started = {id(c) for c in self._started}

        async def state(component: Component) -> str:
            if id(component) not in started:
                return "not started"
            check: Callable[[], object] | None = getattr(component, "check", None)
            if check is None:
                return "ok"
            try:
                async with asyncio.timeout(self.check_timeout):
                    await check()  # type: ignore[misc]
            except TimeoutError:
                return f"no answer within {self.check_timeout:g}s"
            except Exception as exc:
                return str(exc) or type(exc).__name__
            return "ok"

        states = await asyncio.gather(*(state(c) for c in self.components))
        components = dict(zip(self.component_names(), states, strict=True))
        return Readiness(all(s == "ok" for s in states), components)

    async def start(self) -> None:
        """Start everything; on a failure stop what started and raise ``ChatMQError`` saying why."""
        try:
            for component in self.components:
                await component.start()
                self._started.append(component)
        except Exception as exc:
            await self.stop()
            if isinstance(exc, ChatMQError):
                raise
            raise ChatMQError(f"{self.name} cannot start: {exc}") from exc

    async def stop(self) -> None:
        """Stop what started, in reverse order; a failing component is logged and the rest still stop."""
        while self._started:
            component = self._started.pop()
            try:
                await component.stop()
            except Exception:
                log.exception("%s: stopping %s failed", self.name, type(component).__name__)

    def reloadable(self) -> list[Reloadable]:
        """The components with a ``reload()`` (TLS certificates), in order."""
        return [c for c in self.components if isinstance(c, Reloadable)]

    def reload(self) -> None:
        """SIGHUP: ``reload()`` every component that has one (each logs how it went)."""
        log.info("%s: SIGHUP, reloading", self.name)
        for component in self.reloadable():
            component.reload()

    async def run_until_signalled(self, ready: str = "ready") -> None:
        """Start, log ``ready``, serve until SIGINT/SIGTERM, then stop cleanly. SIGHUP calls ``reload()`` when
        a component has something to reload (otherwise SIGHUP keeps its default: it ends the process)."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if self.reloadable():
            loop.add_signal_handler(signal.SIGHUP, self.reload)
        await self.start()
        # what start-up made (modules, the app, the components: ~110,000 objects in ``chatmq serve``) lives
        # as long as the process: out of the collector's full passes, each of which walked it all (~50 ms
        # of a stalled loop, several times a minute under load)
        gc.freeze()
        log.info("%s", ready)
        try:
            await stop.wait()
        finally:
            log.info("shutting down")
            await self.stop()
            log.info("stopped")


class BusTopics:
    """Starts the bus and declares ``specs`` (creating the topics that are missing); stops the bus."""

    def __init__(self, bus: Bus, specs: list[TopicSpec]) -> None:
        self._bus, self._specs = bus, specs

    async def start(self) -> None:
        await self._bus.start()
        await self._bus.ensure_topics(self._specs)

    async def stop(self) -> None:
        await self._bus.stop()

    async def check(self) -> None:
        await self._bus.ping()
