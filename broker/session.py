"""``NodeSession``: amqtt's ``Session`` without what chatmq's delivery path does not use.

amqtt builds a ``transitions.Machine`` (about 16 KiB and a good share of the CPU of a CONNECT)
and four asyncio queues per session. chatmq keeps undelivered messages in ``Outbox`` and
needs only three states, so a ``NodeSession`` has a three-state ``SessionState`` in place of the
Machine (same ``state``/``is_connected``/``connect``/``disconnect`` surface, same enter hooks)
and shares one never-used queue for amqtt's ``retained_messages`` and
``delivered_message_queue``, which nothing in chatmq's paths fills.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import OrderedDict
from typing import Any

from amqtt.session import ApplicationMessage, IncomingApplicationMessage, OutgoingApplicationMessage, Session

from chatmq.broker.wire import MAX_REMAINING_LENGTH, MQTT_311, Properties

_NEVER_FILLED: asyncio.Queue[ApplicationMessage] = asyncio.Queue()


class SessionState:
    """The session's connection state: ``new``, ``connected`` or ``disconnected``. It holds its session
    weakly: a session and its state made a reference cycle, so every ended session was garbage that only
    a full collection could free (with ``GcFreezer``, a pass over every tracked object of the node), where
    now reference counting frees it at once."""

    __slots__ = ("_session", "state")

    def __init__(self, session: Session) -> None:
        self._session = weakref.ref(session)
        self.state = "new"

    def is_connected(self) -> bool:
        return self.state == "connected"

    def connect(self) -> None:
        self.state = "connected"
        session = self._session()
        if session is not None:
            session._on_enter_connected()

    def disconnect(self) -> None:
        was_connected = self.state == "connected"
        self.state = "disconnected"
        if was_connected:
            session = self._session()
            if session is not None:
                session._on_enter_disconnected()


class NodeSession(Session):  # type: ignore[misc]
    """A client session of a chatmq node (see the module docstring)."""

    def __init__(self) -> None:  # amqtt's attributes, set here without calling Session.__init__
        self.transitions: Any = SessionState(self)
        self.remote_address: str | None = None
        self.remote_port: int | None = None
        self.client_id: str | None = None
        self.clean_session: bool | None = None
        self.will_flag = False
        self.will_message: bytes | bytearray | None = None
        self.will_qos: int | None = None
        self.will_retain: bool | None = None
        self.will_topic: str | None = None
        self.keep_alive = 0
        self.publish_retry_delay = 0
        self.broker_uri: str | None = None
        self.username: str | None = None
        self.password: str | None = None
        self.cafile: str | None = None
        self.capath: str | None = None
        self.cadata: bytes | None = None
        self._packet_id = 0
        self.parent = 0
        self.last_connect_time: int | None = None
        self.ssl_object: Any = None
        self.last_disconnect_time: int | None = None
        self.attributes: dict[str, Any] = {}
        self.inflight_out: OrderedDict[int, OutgoingApplicationMessage] = OrderedDict()
        self.inflight_in: OrderedDict[int, IncomingApplicationMessage] = OrderedDict()
        self.retained_messages = _NEVER_FILLED
        self.delivered_message_queue = _NEVER_FILLED
        self.is_anonymous = False
        self.protocol_level = MQTT_311
        """The MQTT protocol level of the session's current connection (3, 4 or 5)."""
        self.assigned_client_id = False
        """The node made the client id up (an empty one in the CONNECT): MQTT 5 tells the client."""
        self.session_expiry: int | None = None
        """MQTT 5: the Session Expiry Interval (seconds; 0: the session ends with its connection,
        0xFFFFFFFF: never expires), from the CONNECT and changed at DISCONNECT; None below level 5."""
        self.will_properties: Properties | None = None
        """MQTT 5: the will's properties (content type, user properties, message expiry, ...)."""
        self.problem_information = True
        """MQTT 5: the client takes reason strings and user properties on acknowledgements (its CONNECT's
        Request Problem Information is not 0, [MQTT-3.1.2-29])."""
        self.receive_maximum = 0xFFFF
        """MQTT 5: the QoS 1/2 messages the client takes in flight at once (its CONNECT's Receive Maximum)."""
        self.max_packet = MAX_REMAINING_LENGTH + 5
        """MQTT 5: the largest packet the client takes (its CONNECT's Maximum Packet Size)."""
        self.topic_alias_maximum = 0
        """MQTT 5: the topic aliases the node may give the client per connection (its CONNECT's Topic
        Alias Maximum; 0: none, [MQTT-3.1.2-27])."""


NEVER_EXPIRES = 0xFFFFFFFF
"""MQTT 5's Session Expiry Interval for a session that does not expire (§3.1.2.11.2)."""


def outlives_connection(session: Session) -> bool:
    """Whether ``session`` is kept when its connection ends: MQTT 5 by its Session Expiry Interval
    (not 0), MQTT 3.1/3.1.1 by its clean session flag (0)."""
    if isinstance(session, NodeSession) and session.session_expiry is not None:
        return session.session_expiry != 0
    return not session.clean_session
