"""Who may open an MQTT connection to a node, and how long a refused login waits.

``ConnectionPolicy`` holds the bounds a node puts on connections before and during their CONNECT
(settings ``max_packet_size``, ``connect_timeout``, ``max_connections``,
``max_connections_per_address``, ``connect_rate_per_address``/``connect_burst_per_address``,
``auth_failure_delay``/``auth_failure_delay_max``). ``AddressGate`` applies them per client
address; it is pure (the clock is passed in or read from ``time.monotonic``) and does no I/O:

* ``admit(address)`` says why a new connection must be closed before its CONNECT is read
  (``Refusal``), or None and counts it until ``release(address)``;
* ``auth_failed(address)`` returns how long to wait before the CONNACK refusal: the base delay,
  doubled for each earlier failure from that address within ``FAILURE_MEMORY`` seconds, capped.

Its tables stay bounded: an address's entry goes when it has no connection, a full bucket and no
recent failure.
"""

from __future__ import annotations

import enum
import resource
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chatmq.broker.ratelimit import TokenBucket

if TYPE_CHECKING:
    from chatmq.core.settings import Settings

FD_RESERVE = 256
"""Open files ``max_connections = 0`` keeps for everything but MQTT connections."""

FAILURE_MEMORY = 60.0
"""Seconds an address's failed logins count towards its next delay."""

_PRUNE_AT = 4096
"""Table size from which idle addresses are pruned."""


class Refusal(enum.Enum):
    """Why a connection was closed before its CONNECT was processed
    (``chatmq_broker_refused_connections_total{reason}``)."""

    NODE_FULL = "node_full"
    """The node holds ``max_connections``."""
    ADDRESS_FULL = "address_full"
    """The client address holds ``max_connections_per_address``."""
    CONNECT_RATE = "connect_rate"
    """The client address opened connections faster than ``connect_rate_per_address``."""
    CONNECT_TIMEOUT = "connect_timeout"
    """No whole CONNECT within ``connect_timeout``."""


def open_file_limit() -> int:
    """The process's soft limit on open files."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


@dataclass(frozen=True, slots=True)
class ConnectionPolicy:
    """A node's bounds on connections (see the module docstring); 0 turns a per-address bound off."""

    max_packet_size: int = 128 * 1024
    connect_timeout: float = 10.0
    max_connections: int = 0
    """0: ``open_file_limit() - FD_RESERVE`` (at least 64)."""
    max_connections_per_address: int = 0
    connect_rate_per_address: float = 0.0
    connect_burst_per_address: int = 200
    auth_failure_delay: float = 0.0
    auth_failure_delay_max: float = 0.0
    ws_path: str = "/mqtt"
    topic_alias_maximum: int = 10
    """MQTT 5: topic aliases a client may set per connection."""
    max_keepalive: int = 0
    """MQTT 5: the longest keep alive a client may ask for (0: any); the CONNACK's Server Keep Alive."""
    sessions_per_turn: int = 0
    """CONNECTs and ended connections taken on per turn of the event loop (``TurnPacer``; 0: any number)."""
    sessions_turn_interval: float = 0.0
    """While more wait (a storm), seconds until the next of those turns: the loop is free in between
    (0: the next turn)."""
    receive_maximum: int = 1024
    """MQTT 5: QoS 2 PUBLISH packets a client may have unreleased at once (the CONNACK's Receive Maximum)."""

    @classmethod
    def from_settings(cls, settings: Settings, *, per_address: bool = True) -> ConnectionPolicy:
        """The policy of ``settings``; ``per_address=False`` (the plain node, whose benchmarks open
        thousands of connections from one address) leaves the per-address bounds off."""
        return cls(
            max_packet_size=settings.max_packet_size,
            connect_timeout=settings.connect_timeout,
            max_connections=settings.max_connections,
            max_connections_per_address=settings.max_connections_per_address if per_address else 0,
            connect_rate_per_address=settings.connect_rate_per_address if per_address else 0.0,
            connect_burst_per_address=settings.connect_burst_per_address,
            auth_failure_delay=settings.auth_failure_delay,
            auth_failure_delay_max=settings.auth_failure_delay_max,
            ws_path=settings.ws_path,
            topic_alias_maximum=settings.topic_alias_maximum,
            max_keepalive=settings.max_keepalive,
            sessions_per_turn=settings.sessions_per_turn,
            sessions_turn_interval=settings.sessions_turn_interval,
            receive_maximum=settings.receive_maximum,
        )

    @property
    def connection_limit(self) -> int:
        if self.max_connections > 0:
            return self.max_connections
        return max(64, open_file_limit() - FD_RESERVE)


@dataclass(slots=True)
class _Address:
    connections: int = 0
    bucket: TokenBucket | None = None
    failures: int = 0
    last_failure: float = 0.0


class AddressGate:
    """Counts a node's connections by client address and applies its ``ConnectionPolicy``."""

    __slots__ = ("_addresses", "_limit", "_policy", "connections")

    def __init__(self, policy: ConnectionPolicy) -> None:
        self._policy = policy
        self._limit = policy.connection_limit
        self._addresses: dict[str, _Address] = {}
        self.connections = 0
        """Connections admitted and not yet released."""

    def admit(self, address: str, now: float | None = None) -> Refusal | None:
        """Whether a new connection from ``address`` may go on to its CONNECT: None (then it is counted
        until ``release``) or why not."""
        policy = self._policy
        if self.connections >= self._limit:
            return Refusal.NODE_FULL
        entry = self._addresses.get(address)
        if entry is None:
            if len(self._addresses) >= _PRUNE_AT:
                self._prune(time.monotonic() if now is None else now)
            entry = self._addresses[address] = _Address()
        if 0 < policy.max_connections_per_address <= entry.connections:
            return Refusal.ADDRESS_FULL
        if policy.connect_rate_per_address > 0:
            if entry.bucket is None:
                entry.bucket = TokenBucket(policy.connect_rate_per_address, policy.connect_burst_per_address, now)
            if not entry.bucket.take(now):
                return Refusal.CONNECT_RATE
        entry.connections += 1
        self.connections += 1
        return None

    def release(self, address: str) -> None:
        """A connection ``admit`` let in has ended."""
        self.connections -= 1
        entry = self._addresses.get(address)
        if entry is not None:
            entry.connections -= 1

    def auth_failed(self, address: str, now: float | None = None) -> float:
        """Record a failed login from ``address``; returns the seconds to wait before refusing it."""
        policy = self._policy
        now = time.monotonic() if now is None else now
        entry = self._addresses.setdefault(address, _Address())
        if now - entry.last_failure > FAILURE_MEMORY:
            entry.failures = 0
        entry.failures += 1
        entry.last_failure = now
        if policy.auth_failure_delay <= 0:
            return 0.0
        doubling = min(entry.failures - 1, 16)
        return float(min(policy.auth_failure_delay * (1 << doubling), policy.auth_failure_delay_max))

    def tracked(self) -> int:
        """Addresses in the table (for tests: it stays bounded)."""
        return len(self._addresses)

    def _prune(self, now: float) -> None:
        idle = [address for address, entry in self._addresses.items()
                if entry.connections <= 0 and now - entry.last_failure > FAILURE_MEMORY
                and (entry.bucket is None or entry.bucket.full(now))]
        for address in idle:
            del self._addresses[address]
