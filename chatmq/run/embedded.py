"""The embedded mode: every part (``chatmq.run.assembly.PARTS``) in one process, joined by the
in-process bus, storing in SQLite under ``data_dir``."""

from __future__ import annotations

from chatmq.broker.node import ChatBroker
from chatmq.core.lifecycle import Stack
from chatmq.core.settings import Settings
from chatmq.run.assembly import PARTS, Process
from chatmq.run.components import BrokerNode, HttpServer
from chatmq.run.ops import operate


class EmbeddedServer(Stack):
    """Every part in one process; ``start()`` brings them up in dependency order, ``stop()`` in reverse."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.process = p = Process.open(settings, "serve", cluster=False)
        parts = list(PARTS)
        components = [component for part in parts for component in PARTS[part](p)]
        # the broker and api parts made these
        assert p.node is not None
        assert p.http is not None
        self.node: BrokerNode = p.node
        self.http: HttpServer = p.http
        super().__init__("chatmq", [*(_Prebound(http) for http in p.servers), *p.base(parts), *components])
        operate(self, settings, p.bus, "embedded", app=p.app, http_port=lambda: self.http.port,
                http_scheme=self.http.scheme, processes=p.processes)

    @property
    def broker(self) -> ChatBroker | None:
        return self.node.broker


class _Prebound:
    """Takes the HTTP port first, so a taken port fails before anything else starts."""

    def __init__(self, http: HttpServer) -> None:
        self._http = http

    async def start(self) -> None:
        self._http.bind()

    async def stop(self) -> None:
        """The HTTP server closes the socket."""
