"""``CloseReason``: why a broker node's client connection ended.

A connection keeps the first reason given (``NodeConnection.close``); later ones, from the
consequences of the first (the read loop seeing the socket close, the stop that follows), do not
overwrite it. The node counts ended connections by reason (``chatmq_broker_disconnects_total``).
"""

from __future__ import annotations

import enum


class CloseReason(enum.Enum):
    CLIENT_DISCONNECT = "client_disconnect"
    """The client sent DISCONNECT (no will)."""
    CONNECTION_LOST = "connection_lost"
    """The socket closed or failed without a DISCONNECT."""
    KEEPALIVE_TIMEOUT = "keepalive_timeout"
    """Nothing read for 1.5 × the keepalive ([MQTT-3.1.2-24])."""
    PROTOCOL_ERROR = "protocol_error"
    """A malformed packet, one a server must not receive, or a PUBLISH to an invalid topic."""
    PACKET_TOO_LARGE = "packet_too_large"
    """A fixed header announced more than ``max_packet_size`` bytes (closed before the body was read)."""
    SLOW_CONSUMER = "slow_consumer"
    """The client read so slowly that its queue overflowed (``broker_queue_size`` or ``broker_queue_bytes``)."""
    TAKEN_OVER = "taken_over"
    """A new connection with the same client id took the session ([MQTT-3.1.4-2])."""
    KICKED = "kicked"
    """An operator closed it (kick, disable, token revocation)."""
    SHUTDOWN = "shutdown"
    """The node is stopping."""
    INTERNAL_ERROR = "internal_error"
    """A bug in the node's handling of the connection (logged with its traceback)."""
