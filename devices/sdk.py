"""The Python device SDK: one ``ChatClient`` speaking chatmq's public contract.

REST calls (``/api/v1``) go through a synchronous ``httpx.Client``; the MQTT session is a
paho-mqtt 2.x client whose network loop runs in paho's own thread (``loop_start``).

Contracts
---------
- ``register``/``login``/``refresh`` talk to ``/api/v1/auth/*``; ``login`` and ``refresh``
  store the tokens on the client (see ``tokens``) and call ``on_tokens_changed``. Refresh
  tokens rotate (each is spent when used; using a spent one again ends the login), so clients
  that share a login (processes on one saved profile) set ``shared_tokens``: ``refresh`` first
  takes the shared tokens when another client already refreshed, instead of spending its own
  spent token; and ``refresh_lock`` (e.g. a file lock), held around each refresh and its
  ``on_tokens_changed``, so that they refresh one at a time. In one client refreshes are one at a
  time (a lock), whichever thread asks.
- Authenticated REST calls refresh the access token first when it is near expiry, and
  once more after a 401 when a refresh token is known.
- ``connect`` opens the MQTT session (username = user id, password = access token),
  subscribes QoS 1 to ``users/{uid}/inbox`` and returns only after the SUBACK. It raises
  ``NotAuthorizedError`` on a "not authorized" CONNACK, ``SubscribeDeniedError`` on a
  refused SUBSCRIBE, ``ConnectTimeoutError`` when neither arrives in time and
  ``ServerUnreachableError`` when the broker cannot be reached. It speaks MQTT 5 unless
  ``mqtt_version=4``; a broker that refuses MQTT 5 at the first connect (CONNACK "unsupported
  protocol version", a close before any CONNACK, or no CONNACK within half the connect timeout)
  is tried again with MQTT 3.1.1 in the time left,
  which the client then keeps (``mqtt_version`` says which one it speaks).
- After ``connect`` paho reconnects by itself with a 1–30 s backoff. Before every
  reconnect the access token is refreshed when it is near expiry; on a "not authorized"
  CONNACK while running the token is refreshed once and paho retries. Every successful
  (re)connect re-subscribes to the inbox.
- Sent messages are kept until their ``ack`` (or ``error``) arrives. While disconnected a
  message is only kept; on every (re)connect, right after the inbox SUBSCRIBE, the ones
  still unanswered are published again in order with the same client ids (the server
  de-duplicates them) before any new one, so a message whose ack was lost with a node is
  not lost and a conversation keeps its order (``unacked()``; at most 10,000 are kept,
  the oldest dropped with a warning).
- Inbox envelopes are JSON objects; undecodable payloads are logged and dropped.
  ``message`` envelopes (and message actions: ``edit``, ``delete``, ``reaction``, kept in
  ``actions`` and handed to ``on_action``) are de-duplicated by server id: a message delivered twice is
  handed to the application once, but every delivery is answered with a ``delivered``
  receipt (when ``auto_delivered``) so the server stops replaying it. The receipt is
  published only after the ``on_message`` callback returned, or first thing when a ``read``
  receipt for the message is sent before that (so ``read`` never precedes ``delivered``).
- Over MQTT 5 the broker also refuses a publish in its PUBACK (reason code >= 0x80, the chatmq error
  ``code`` as a user property, the reason as the reason string): each refusal is kept in ``refusals``
  (``PublishRefusal``), and ``wait_ack`` of a refused message raises ``MessageRejectedError`` with its
  ``reason_code`` (it waits for the PUBACK when the inbox ``error`` came first); over MQTT 3.1.1, and for
  errors that come later (e.g. ``unknown_recipient``), ``reason_code`` is ``None``.
- A message whose envelope is larger than ``max_payload`` bytes (default 65,536, the
  server's default) is not published: it gets the ``error`` the server would send
  (code ``too_large``), so ``wait_ack`` raises ``MessageRejectedError`` at once.
- Application callbacks run in paho's thread; any exception they raise is logged and
  swallowed so that the network loop keeps running. Long work belongs elsewhere.
- Every envelope is also kept (``messages``, ``receipts``, ``events``, ``errors``,
  ``acks``) and the ``wait_*`` methods block until something arrives.
- Files: ``upload_file(path)`` streams a file to ``POST /files`` and returns its record
  (``file_id``, ``size``, ``content_type``, ``sha256``, ``thumbnail``); send it with
  ``send(to, {"file": file_id, ...})``. ``download_file(file_id, target, offset=0)`` streams it to
  disk (from ``offset`` on with a Range request, appending).
- Social verbs over REST: ``contact_list``/``add_contact``/``remove_contact``/``sync_contacts`` (usernames
  and phone numbers), ``block``/``unblock``/``blocked``, ``search``, ``conversations`` and
  ``mark_conversation_read``, ``sessions``/``sign_out_session`` (the user's devices), ``presence_of``;
  their answers are typed records (``chatmq.devices.records``), an unknown user ``ApiError`` 404.
- TLS: ``tls=True`` speaks MQTT over TLS (``mqtts``, or ``wss`` with ``transport="websockets"``);
  an ``https://`` ``api_url`` speaks HTTPS. Both trust the system's CAs, or only ``ca_file``'s when
  it is given. A server certificate that does not verify raises ``TlsError`` (not retried).
- Tokens and passwords are never logged.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import ssl
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx
import msgspec
import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from chatmq.core.errors import ChatMQError
from chatmq.devices.records import (
    BlockList,
    Contact,
    ContactList,
    ContactSync,
    ConversationPage,
    Presence,
    PresenceList,
    S,
    Session,
    SessionList,
    decode,
)

__all__ = [
    "AckTimeoutError",
    "ApiError",
    "AuthenticationError",
    "ChatClient",
    "ChatClientError",
    "ChatTimeoutError",
    "ConnectError",
    "ConnectTimeoutError",
    "Envelope",
    "MessageRejectedError",
    "NotAuthorizedError",
    "NotLoggedInError",
    "PublishRefusal",
    "ServerUnreachableError",
    "SubscribeDeniedError",
    "TlsError",
    "Tokens",
    "build_message",
    "build_receipt",
    "tls_context",
    "token_expiry",
]

log = logging.getLogger(__name__)

Envelope = dict[str, Any]
"""A decoded JSON envelope (see the contract in ``docs``/``DESIGN.md``)."""

Transport = Literal["tcp", "websockets"]
T = TypeVar("T")

#: CONNACK reason codes (MQTT 5 numbering, as paho reports them) that mean bad credentials.
_AUTH_REFUSED = {134, 135}  # "Bad user name or password", "Not authorized"
_UNSUPPORTED_PROTOCOL = 0x84  # MQTT 5 CONNACK "Unsupported protocol version" (paho's reading of a 3.1.1 refusal too)
#: How many message ids are remembered for de-duplication.
_SEEN_LIMIT = 10_000
_UNACKED_LIMIT = 10_000
#: the contract's largest outbox envelope (the server's default ``max_payload``); a larger one is
#: refused here with the server's ``too_large`` error, since the server closes a connection whose
#: packet passes ``max_packet_size`` without reading it (and the client would resend it forever)
MAX_PAYLOAD = 65_536
#: Refresh the access token when it expires within this many seconds.
REFRESH_MARGIN = 30.0


# --------------------------------------------------------------------------- errors


class ChatClientError(ChatMQError):
    """Root of every error the SDK raises on purpose."""


class NotLoggedInError(ChatClientError):
    """The operation needs a user id and tokens (call ``login`` or ``set_tokens``)."""


class ServerUnreachableError(ChatClientError):
    """The REST server or the MQTT broker could not be reached."""

    retriable = True


class TlsError(ChatClientError):
    """The TLS handshake failed: most often the server's certificate is not signed by a trusted CA
    (give its CA as ``ca_file``), or names another host."""


class ApiError(ChatClientError):
    """The REST API answered with an error status."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(f"HTTP {status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


class AuthenticationError(ApiError):
    """The REST API answered 401: bad credentials, or the session expired."""


class ConnectError(ChatClientError):
    """The MQTT session could not be opened."""


class NotAuthorizedError(ConnectError):
    """The broker refused CONNECT ("not authorized" / bad credentials)."""


class ConnectTimeoutError(ConnectError, TimeoutError):
    """No CONNACK/SUBACK arrived within the timeout."""

    retriable = True


class SubscribeDeniedError(ConnectError):
    """The broker refused the inbox subscription (SUBACK 0x80)."""


class ChatTimeoutError(ChatClientError, TimeoutError):
    """A ``wait_*`` call ran out of time."""

    retriable = True


class AckTimeoutError(ChatTimeoutError):
    """No ``ack`` (nor ``error``) arrived for a sent message in time; resend with the same id."""


class MessageRejectedError(ChatClientError):
    """The server refused a publish: with an ``error`` envelope (``code``, ``reason``, ``client_id``) and, over
    MQTT 5, with a PUBACK whose ``reason_code`` (>= 0x80) says so too (``None`` when no such PUBACK was seen:
    MQTT 3.1.1, or an error that came later, e.g. ``unknown_recipient`` from the router)."""

    def __init__(self, envelope: Envelope, reason_code: int | None = None) -> None:
        self.envelope = envelope
        self.code = str(envelope.get("code", "unknown"))
        self.reason = str(envelope.get("reason", ""))
        self.client_id: str | None = envelope.get("client_id")
        self.reason_code = reason_code
        shown = "" if reason_code is None else f" (MQTT reason 0x{reason_code:02X})"
        super().__init__(f"{self.code}: {self.reason}{shown}")

    @classmethod
    def refused(cls, refusal: PublishRefusal, envelope: Envelope | None = None) -> MessageRejectedError:
        """The error for an MQTT 5 ``refusal``; ``envelope``: the inbox ``error`` about it, when it came."""
        return cls(envelope or refusal.envelope(), refusal.reason_code)


@dataclass(frozen=True, slots=True)
class PublishRefusal:
    """An MQTT 5 broker's refusal of a QoS 1 PUBLISH: the PUBACK's ``reason_code`` (>= 0x80), the chatmq error
    ``code`` it carries as the user property ``code`` (``unknown`` when absent) and its reason string as
    ``reason``; ``client_id``: the refused message's client id (``None`` for other publishes)."""

    reason_code: int
    code: str
    reason: str
    client_id: str | None = None

    def envelope(self) -> Envelope:
        """The inbox ``error`` envelope that says the same."""
        return {"type": "error", "client_id": self.client_id, "code": self.code, "reason": self.reason}


def publish_refusal(reason_code: ReasonCode, properties: Properties | None,
                    client_id: str | None = None) -> PublishRefusal | None:
    """The refusal a PUBACK carries (paho's ``on_publish`` arguments); ``None`` when it accepted the PUBLISH."""
    if not reason_code.is_failure:
        return None
    code = "unknown"
    for name, value in getattr(properties, "UserProperty", None) or ():
        if name == "code":
            code = value
    reason = getattr(properties, "ReasonString", None) or reason_code.getName()
    return PublishRefusal(reason_code.value, code, reason, client_id)


# --------------------------------------------------------------------------- helpers


@dataclass(frozen=True, slots=True)
class Tokens:
    """A login session: whose it is, both tokens, and when the access token expires (epoch s)."""

    user_id: str
    access_token: str
    refresh_token: str | None
    expires_at: float | None

    def __repr__(self) -> str:  # never show the tokens themselves
        return f"Tokens(user_id={self.user_id!r}, expires_at={self.expires_at!r})"


def token_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT, read without verifying it; ``None`` when absent or unreadable."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        raw = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = orjson.loads(raw)
    except (binascii.Error, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, int | float) and not isinstance(exp, bool):
        return float(exp)
    return None


def new_client_id() -> str:
    """A fresh client message id (uuid4 hex)."""
    return uuid.uuid4().hex


def build_message(
    body: dict[str, Any], *, to: str | None = None, group: str | None = None, client_id: str | None = None,
    reply_to: str | None = None,
) -> Envelope:
    """An outbox ``message`` envelope for exactly one of ``to`` (user id) or ``group`` (group id);
    ``reply_to``: the server id of the message of that conversation it answers."""
    if (to is None) == (group is None):
        raise ValueError("exactly one of 'to' and 'group' is required")
    if not isinstance(body, dict):
        raise TypeError("body must be a dict")
    envelope: Envelope = {"type": "message", "id": client_id or new_client_id()}
    if to is not None:
        envelope["to"] = to
    else:
        envelope["group"] = group
    envelope["body"] = body
    if reply_to is not None:
        envelope["reply_to"] = reply_to
    return envelope


#: the inbox envelopes of message actions (each with a server ``id`` and the ``target`` it acts on)
ACTION_TYPES = ("edit", "delete", "reaction")


def build_edit(target: str, body: dict[str, Any], client_id: str | None = None) -> Envelope:
    """An outbox ``edit``: message ``target`` (a server id, one's own) gets ``body``."""
    if not isinstance(body, dict):
        raise TypeError("body must be a dict")
    return {"type": "edit", "id": client_id or new_client_id(), "target": target, "body": body}


def build_delete(target: str, scope: Literal["everyone", "me"] = "everyone", client_id: str | None = None) -> Envelope:
    """An outbox ``delete`` of message ``target`` for everyone (one's own message) or only for oneself."""
    if scope not in ("everyone", "me"):
        raise ValueError("scope must be 'everyone' or 'me'")
    return {"type": "delete", "id": client_id or new_client_id(), "target": target, "for": scope}


def build_reaction(target: str, emoji: str, remove: bool = False, client_id: str | None = None) -> Envelope:
    """An outbox ``reaction`` (or its removal) on message ``target``."""
    if not emoji:
        raise ValueError("emoji must not be empty")
    return {"type": "reaction", "id": client_id or new_client_id(), "target": target, "emoji": emoji,
            "remove": remove}


def build_receipt(status: Literal["delivered", "read"], ids: Iterable[str]) -> Envelope:
    """An outbox ``receipt`` envelope for the server ids ``ids`` (must not be empty)."""
    id_list = list(ids)
    if status not in ("delivered", "read"):
        raise ValueError("status must be 'delivered' or 'read'")
    if not id_list:
        raise ValueError("a receipt needs at least one id")
    return {"type": "receipt", "status": status, "ids": id_list}


# --------------------------------------------------------------------------- client


class _ClosedOnFailedHandshake(ssl.SSLSocket):
    """An ``SSLSocket`` that closes itself when its handshake fails (paho leaves it open then)."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


def tls_context(ca_file: str | Path | None = None, cert_file: str | Path | None = None,
                key_file: str | Path | None = None) -> ssl.SSLContext:
    """A client TLS context: trusts the system's CAs, or only those in ``ca_file``; with ``cert_file``
    (and ``key_file`` unless the key is in it) it presents that client certificate.
    ``ChatClientError`` naming the file that cannot be loaded."""
    try:
        context = ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise ChatClientError(f"cannot load the CA file {ca_file}: {exc}") from None
    if cert_file is not None:
        try:
            context.load_cert_chain(str(cert_file), None if key_file is None else str(key_file))
        except (OSError, ssl.SSLError) as exc:
            raise ChatClientError(f"cannot load the client certificate {cert_file}: {exc}") from None
    context.sslsocket_class = _ClosedOnFailedHandshake
    return context


def _tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The ``ssl.SSLError`` behind ``exc`` (itself, or a cause of it), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def tls_error(where: str, failure: ssl.SSLError) -> TlsError:
    """A ``TlsError`` that says what failed with ``where`` and what to do about an untrusted certificate."""
    reason = getattr(failure, "verify_message", None) or failure.reason or str(failure)
    hint = " (trust the server's CA with ca_file / --ca-file)" if isinstance(
        failure, ssl.SSLCertVerificationError) else ""
    return TlsError(f"TLS handshake with {where} failed: {reason}{hint}")


def release_sockets(client: mqtt.Client) -> None:
    """Close the wake-up socket pair paho 2.x opens in ``loop_start`` and leaves open after
    ``loop_stop`` (it is otherwise closed only when the client is garbage-collected)."""
    reset = getattr(client, "_reset_sockets", None)
    if callable(reset):
        reset(sockpair_only=True)


def mqtt_client(client_id: str, transport: Transport, mqtt_version: int, ws_path: str = "/mqtt",
                tls: ssl.SSLContext | None = None) -> mqtt.Client:
    """A paho client speaking MQTT 5 (``mqtt_version`` 5; a clean start, session expiry 0) or 3.1.1 (4,
    clean session): either way the session ends with its connection. Over WebSocket on ``ws_path``; over
    TLS with ``tls``; paho reconnects by itself with a 1–30 s backoff."""
    if mqtt_version == 5:
        client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                             transport=transport, protocol=MQTTProtocolVersion.MQTTv5)
    else:
        client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                             transport=transport, clean_session=True)
    if transport == "websockets":
        client.ws_set_options(path=ws_path)
    if tls is not None:
        client.tls_set_context(tls)
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    return client


def open_session(client: mqtt.Client, host: str, port: int, keepalive: int, ready: threading.Event,
                 timeout: float, abort: Callable[[], None]) -> None:
    """Connect ``client``, start paho's network thread and wait until ``ready`` is set (by the caller's
    CONNACK/SUBACK callbacks). ``ServerUnreachableError`` when the broker cannot be reached;
    ``ConnectTimeoutError`` after calling ``abort`` when ``ready`` is not set within ``timeout`` s."""
    try:
        client.connect(host, port, keepalive=keepalive)
    except ssl.SSLError as exc:
        raise tls_error(f"MQTT broker {host}:{port}", exc) from None
    except OSError as exc:  # includes paho's WebsocketConnectionError
        raise ServerUnreachableError(f"cannot reach MQTT broker at {host}:{port}: {exc}") from exc
    client.loop_start()
    if not ready.wait(timeout):
        abort()
        raise ConnectTimeoutError(f"no answer from MQTT broker at {host}:{port} within {timeout:g}s")


class VersionProbe:
    """The first connect of a client that speaks MQTT 5 (``version`` 5) until a broker refuses it: a CONNACK
    "unsupported protocol version", a close before any CONNACK, or no CONNACK within half the connect
    timeout (``open_probing``). Then ``version`` is 4 (MQTT 3.1.1) for good. The paho callbacks report to
    it (``connack``, ``closed``) while ``open_probing`` runs."""

    def __init__(self, version: int) -> None:
        if version not in (4, 5):
            raise ValueError(f"mqtt_version is 5 (MQTT 5, falling back to 3.1.1) or 4 (MQTT 3.1.1), not {version}")
        self.version = version
        self.refused = False  # the broker refused MQTT 5 during this connect
        self.connack_seen = False
        self._active = False  # open_probing is running with MQTT 5

    def connack(self, unsupported: bool, ready: threading.Event) -> bool:
        """A CONNACK came (``unsupported``: "unsupported protocol version"); whether it was the broker
        refusing MQTT 5 (then ``ready`` is set and the caller ignores it)."""
        self.connack_seen = True
        return self._refuse(unsupported, ready)

    def closed(self, ready: threading.Event) -> bool:
        """The connection closed; whether that was the broker refusing MQTT 5 (no CONNACK came first)."""
        return self._refuse(not self.connack_seen, ready)

    def _refuse(self, refused: bool, ready: threading.Event) -> bool:
        if not refused or not self._active or self.refused:
            return False
        self.refused = True
        ready.set()
        return True


def open_probing(client: mqtt.Client, probe: VersionProbe, fallback: Callable[[], mqtt.Client], host: str,
                 port: int, keepalive: int, ready: threading.Event, timeout: float,
                 abort: Callable[[], None]) -> None:
    """``open_session`` in ``probe.version``; when the broker refuses MQTT 5, ``abort`` the attempt and open
    the session again, in the time left, on ``fallback()`` (a fresh MQTT 3.1.1 client, ``probe.version``
    already 4). Errors as ``open_session``'s."""
    deadline = time.monotonic() + timeout
    probe.refused = probe.connack_seen = False
    probe._active = probing = probe.version == 5
    try:
        try:
            open_session(client, host, port, keepalive, ready, timeout / 2 if probing else timeout, abort)
        except ConnectTimeoutError:
            if not probing or probe.connack_seen:
                raise
            probe.refused = True  # no CONNACK at all: a broker that does not read MQTT 5 CONNECTs
        if not probe.refused:
            return
        abort()
        log.info("MQTT broker %s:%s refused MQTT 5: connecting with MQTT 3.1.1", host, port)
        probe.version = 4
        ready.clear()
        open_session(fallback(), host, port, keepalive, ready, max(0.1, deadline - time.monotonic()), abort)
    finally:
        probe._active = False


class PublishTracker:
    """Which client id each QoS 1 PUBLISH in flight carries, to tell whose message an MQTT 5 PUBACK refused
    (paho reports a PUBACK by packet id only, and may report it before ``publish`` returned the id).
    ``sent`` after each publish and ``answered`` from ``on_publish`` (either may come first); each returns
    the refusal it resolved, if any. Ids are 16 bits, so both maps stay small."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owners: dict[int, str | None] = {}  # packet id -> client id, PUBACK not seen yet
        self._early: dict[int, tuple[ReasonCode, Properties | None]] = {}  # PUBACKs seen before ``sent``
        self._waiting: dict[str, mqtt.MQTTMessageInfo] = {}  # client id -> its publish, PUBACK not seen yet

    def sent(self, info: mqtt.MQTTMessageInfo, client_id: str | None) -> PublishRefusal | None:
        with self._lock:
            early = self._early.pop(info.mid, None)
            if early is None:
                self._owners[info.mid] = client_id
                if client_id is not None:
                    self._waiting[client_id] = info
                return None
        return publish_refusal(*early, client_id)

    def awaits(self, client_id: str) -> bool:
        """Whether the PUBACK of message ``client_id`` may still come (paho marks a publish published only
        after ``on_publish``)."""
        with self._lock:
            info = self._waiting.get(client_id)
        return info is not None and not _settled(info)

    def answered(self, mid: int, reason_code: ReasonCode, properties: Properties | None) -> PublishRefusal | None:
        with self._lock:
            if mid not in self._owners:
                self._early[mid] = (reason_code, properties)
                return None
            client_id = self._owners.pop(mid)
            if client_id is not None:
                self._waiting.pop(client_id, None)
        return publish_refusal(reason_code, properties, client_id)

    def lost(self) -> None:
        """The connection closed: no PUBACK comes for what is in flight on it."""
        with self._lock:
            self._waiting.clear()


class ChatClient:
    """A chat user's client: REST for accounts/contacts/groups/history, MQTT for messaging.

    Callbacks (set as attributes, each taking one envelope unless noted) run in paho's
    network thread: ``on_message``, ``on_action`` (edit, delete, reaction), ``on_receipt``, ``on_event``, ``on_error``,
    ``on_ack``, ``on_connection_change(connected: bool)`` and
    ``on_tokens_changed(tokens: Tokens)``.

    ``mqtt`` is the underlying paho client (a fresh one is made when ``connect`` is called
    again after ``disconnect``). ``connected`` tells whether the MQTT session is up;
    ``fatal_error`` is set when reconnecting was given up (credentials refused twice).
    """

    def __init__(
        self,
        api_url: str,
        mqtt_host: str,
        mqtt_port: int,
        *,
        transport: Transport = "tcp",
        ws_path: str = "/mqtt",
        client_id: str | None = None,
        auto_delivered: bool = True,
        keepalive: int = 30,
        tls: bool = False,
        ca_file: str | Path | None = None,
        http_timeout: float = 10.0,
        http_transport: httpx.BaseTransport | None = None,
        max_payload: int = MAX_PAYLOAD,
        mqtt_version: int = 5,
    ) -> None:
        self._probe = VersionProbe(mqtt_version)
        self._tracker = PublishTracker()
        base = api_url.rstrip("/")
        if not base.endswith("/api/v1"):
            base += "/api/v1"
        self.api_url = base
        self.mqtt_host = mqtt_host
        self.mqtt_port = mqtt_port
        self.transport: Transport = transport
        self.client_id = client_id or f"chatmq-py-{uuid.uuid4().hex[:16]}"
        self.auto_delivered = auto_delivered
        self.keepalive = keepalive
        self.max_payload = max_payload

        self._tls_context = tls_context(ca_file) if tls or ca_file is not None or base.startswith("https:") else None
        self._http = httpx.Client(base_url=base, timeout=http_timeout, transport=http_transport,
                                  verify=self._tls_context or True)

        self.user_id: str | None = None
        self._access_token: str | None = None
        self._refresh_token: str | None = None
        self._expires_at: float | None = None
        self._auth_lock = threading.RLock()

        # Application callbacks.
        self.on_message: Callable[[Envelope], None] | None = None
        self.on_action: Callable[[Envelope], None] | None = None  # edit, delete, reaction
        self.on_receipt: Callable[[Envelope], None] | None = None
        self.on_event: Callable[[Envelope], None] | None = None
        self.on_typing: Callable[[Envelope], None] | None = None
        self.on_presence: Callable[[Envelope], None] | None = None
        self.on_error: Callable[[Envelope], None] | None = None
        self.on_ack: Callable[[Envelope], None] | None = None
        self.on_command_result: Callable[[Envelope], None] | None = None
        self.on_connection_change: Callable[[bool], None] | None = None
        self.on_tokens_changed: Callable[[Tokens], None] | None = None
        #: where other clients of this login keep its latest tokens (e.g. a saved profile)
        self.shared_tokens: Callable[[], Tokens | None] | None = None
        #: held around each refresh (``shared_tokens``, the request, ``on_tokens_changed``) when set: clients
        #: of one login in other processes take turns with it, so none sends a token another just spent
        self.refresh_lock: Callable[[], AbstractContextManager[object]] | None = None

        # What arrived, guarded by ``_cond``.
        self._cond = threading.Condition()
        self.messages: list[Envelope] = []
        self.actions: list[Envelope] = []  # edit, delete, reaction envelopes (server ids deduplicated)
        self.receipts: list[Envelope] = []
        self.events: list[Envelope] = []
        self.typing: list[Envelope] = []
        self.presence_changes: list[Envelope] = []  # contacts' ``presence`` envelopes
        self.errors: list[Envelope] = []
        self.refusals: list[PublishRefusal] = []  # MQTT 5 PUBACKs that refused a publish
        self.acks: dict[str, Envelope] = {}
        self.command_results: dict[str, Envelope] = {}  # by the client id of a command sent with send_command
        self._unacked: OrderedDict[str, Envelope] = OrderedDict()
        self._send_lock = threading.RLock()  # callbacks under it may send
        self._errors_by_client_id: dict[str, Envelope] = {}
        self._refusals_by_client_id: dict[str, PublishRefusal] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._handling = 0  # inbox messages whose callback/receipt is in progress
        self._delivery_due: set[str] = set()  # handed to the app, ``delivered`` not yet sent
        self._pending: list[mqtt.MQTTMessageInfo] = []  # QoS 1 publishes not yet acknowledged

        # Connection state.
        self.connected = False
        self._running = False  # set once connect() succeeded, cleared by disconnect()
        self._ready = threading.Event()
        self._connect_error: ConnectError | None = None
        self._sub_mid: int | None = None
        self._auth_retry_used = False
        self.fatal_error: ChatClientError | None = None

        self._tls = tls
        self._ws_path = ws_path
        self._loop_used = False  # paho's loop_start() leaks its socketpair when called twice
        self.mqtt = self._make_mqtt()

    @property
    def mqtt_version(self) -> int:
        """5: MQTT 5 (until a broker refuses it: then 4); 4: MQTT 3.1.1."""
        return self._probe.version

    def _make_mqtt(self) -> mqtt.Client:
        """A paho client with this client's options and callbacks installed."""
        self._mqtt_client_id = self.client_id  # a ``client_id`` set later takes a new paho client (``connect``)
        client = mqtt_client(self.client_id, self.transport, self.mqtt_version, self._ws_path,
                             self._tls_context if self._tls else None)
        if self.user_id is not None and self._access_token is not None:
            client.username_pw_set(self.user_id, self._access_token)
        client.on_pre_connect = self._on_mqtt_pre_connect
        client.on_connect = self._on_mqtt_connect
        client.on_subscribe = self._on_mqtt_subscribe
        client.on_disconnect = self._on_mqtt_disconnect
        client.on_message = self._on_mqtt_message
        client.on_publish = self._on_mqtt_publish
        return client

    # ------------------------------------------------------------------ context

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Disconnect MQTT (if connected) and close the HTTP client; calling it twice is harmless."""
        self.disconnect()
        self._http.close()

    # ------------------------------------------------------------------ tokens

    @property
    def inbox_topic(self) -> str:
        """``users/{uid}/inbox``."""
        return f"users/{self._require_user()}/inbox"

    @property
    def outbox_topic(self) -> str:
        """``users/{uid}/outbox``."""
        return f"users/{self._require_user()}/outbox"

    @property
    def tokens(self) -> Tokens | None:
        """The current session, or ``None`` before ``login``/``set_tokens``."""
        with self._auth_lock:
            if self.user_id is None or self._access_token is None:
                return None
            return Tokens(self.user_id, self._access_token, self._refresh_token, self._expires_at)

    def set_tokens(
        self,
        user_id: str,
        access_token: str,
        refresh_token: str | None = None,
        expires_in: float | None = None,
    ) -> None:
        """Adopt a session obtained elsewhere (for example a saved profile).

        The access token's expiry is read from its ``exp`` claim, or from ``expires_in``.
        Calls ``on_tokens_changed``.
        """
        tokens = self._store_tokens(user_id, access_token, refresh_token, expires_in)
        self._safe_call(self.on_tokens_changed, tokens)

    def _store_tokens(
        self, user_id: str, access_token: str, refresh_token: str | None, expires_in: float | None
    ) -> Tokens:
        expiry = token_expiry(access_token)
        if expiry is None and expires_in is not None:
            expiry = time.time() + expires_in
        with self._auth_lock:
            self.user_id = user_id
            self._access_token = access_token
            self._refresh_token = refresh_token
            self._expires_at = expiry
            self.mqtt.username_pw_set(user_id, access_token)
            return Tokens(user_id, access_token, refresh_token, expiry)

    def token_needs_refresh(self, margin: float = REFRESH_MARGIN, now: float | None = None) -> bool:
        """True when a refresh token is known and the access token expires within ``margin`` s.

        An access token of unknown expiry is never refreshed pre-emptively.
        """
        with self._auth_lock:
            if self._refresh_token is None or self._expires_at is None:
                return False
            return self._expires_at - (time.time() if now is None else now) <= margin

    # ------------------------------------------------------------------ REST

    def _require_user(self) -> str:
        if self.user_id is None:
            raise NotLoggedInError("not logged in")
        return self.user_id

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        auth: bool = True,
        _retry: bool = True,
        timeout: float | None = None,
    ) -> Any:
        headers = self._auth_headers() if auth else {}
        try:
            response = self._http.request(method, path, json=json, params=params, headers=headers,
                                          timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout)
        except httpx.TransportError as exc:
            failure = _tls_failure(exc)
            if failure is not None:
                raise tls_error(self.api_url, failure) from None
            raise ServerUnreachableError(f"cannot reach {self.api_url}: {exc}") from exc
        if response.status_code == 401 and auth and _retry and self._refresh_token is not None:
            self.refresh()
            return self._request(method, path, json=json, params=params, auth=auth, _retry=False, timeout=timeout)
        _raise_for(response)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise ApiError(response.status_code, "response is not JSON") from exc

    def _auth_headers(self) -> dict[str, str]:
        if self._access_token is None:
            raise NotLoggedInError("not logged in")
        if self.token_needs_refresh():
            self.refresh()
        return {"Authorization": f"Bearer {self._access_token}"}

    def _transfer(self, method: str, path: str, headers: dict[str, str] | None = None,
                  **kwargs: Any) -> httpx.Response:
        """A REST call whose body or answer is a file (streamed): the opened response, status checked."""
        request = self._http.build_request(method, path, headers={**self._auth_headers(), **(headers or {})},
                                           **kwargs)
        try:
            response = self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            failure = _tls_failure(exc)
            if failure is not None:
                raise tls_error(self.api_url, failure) from None
            raise ServerUnreachableError(f"cannot reach {self.api_url}: {exc}") from exc
        if response.status_code >= 400:
            response.read()
            response.close()
            _raise_for(response)
        return response

    def upload_file(self, path: str | Path, timeout: float = 300.0) -> dict[str, Any]:
        """Upload the file at ``path`` (streamed from disk); return ``{file_id, size, content_type, sha256,
        thumbnail?}``. ``ApiError`` 413 when it is larger than the server's ``max_file_size``."""
        source = Path(path)
        with source.open("rb") as fh:
            response = self._transfer("POST", "/files", files={"file": (source.name, fh)}, timeout=timeout)
        try:
            response.read()
            data: dict[str, Any] = response.json()
        finally:
            response.close()
        return data

    def download_file(self, file_id: str, target: str | Path, *, offset: int = 0,
                      timeout: float = 300.0) -> int:
        """Write file ``file_id`` to ``target`` (from byte ``offset`` on, appended, with a Range request, when
        it is not 0); return the number of bytes written. ``ApiError`` 404 when there is no such file or it
        is not the caller's to read."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            response = self._transfer("GET", f"/files/{quote(file_id, safe='')}", headers=headers, timeout=timeout)
        except ApiError as exc:
            if offset and exc.status_code == 416:  # ``target`` already has the whole file
                return 0
            raise
        written = 0
        try:
            with Path(target).open("ab" if offset else "wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
                    written += len(chunk)
        finally:
            response.close()
        return written

    def register(self, username: str, password: str, display_name: str | None = None) -> str:
        """Create an account (``POST /auth/register``); return its user id. Does not log in."""
        payload: dict[str, Any] = {"username": username, "password": password}
        if display_name is not None:
            payload["display_name"] = display_name
        data = self._request("POST", "/auth/register", json=payload, auth=False)
        return str(data["user_id"])

    def login(self, username: str, password: str) -> str:
        """Log in (``POST /auth/login``), keep the tokens, and return the user id."""
        credentials = {"username": username, "password": password}
        data = self._request("POST", "/auth/login", json=credentials, auth=False)
        self.set_tokens(str(data["user_id"]), data["access_token"], data.get("refresh_token"),
                        data.get("expires_in"))
        return str(data["user_id"])

    def refresh(self) -> Tokens:
        """Exchange the refresh token for new tokens (``POST /auth/refresh``) and keep them.

        Raises ``NotLoggedInError`` without a refresh token and ``AuthenticationError`` when
        the server refuses it (the session is over: log in again). Thread-safe; with ``refresh_lock``
        one at a time across the processes of one login too.
        """
        with self.refresh_lock() if self.refresh_lock is not None else contextlib.nullcontext():
            with self._auth_lock:
                if self._refresh_token is None or self.user_id is None:
                    raise NotLoggedInError("no refresh token; log in first")
                shared = self._shared_newer()
                if shared is not None:  # another process of this login refreshed: ours is spent, take its tokens
                    tokens = self._store_tokens(shared.user_id, shared.access_token, shared.refresh_token, None)
                    self._safe_call(self.on_tokens_changed, tokens)
                    return tokens
                try:
                    data = self._request("POST", "/auth/refresh", json={"refresh_token": self._refresh_token},
                                         auth=False)
                except AuthenticationError as exc:
                    raise AuthenticationError(401, f"session expired, log in again ({exc.detail})") from exc
                user_id = str(data.get("user_id") or self.user_id)
                refresh_token = data.get("refresh_token") or self._refresh_token
                tokens = self._store_tokens(user_id, data["access_token"], refresh_token, data.get("expires_in"))
            log.info("access token refreshed for %s", user_id)
            self._safe_call(self.on_tokens_changed, tokens)  # saved before another process may look
        return tokens

    def _shared_newer(self) -> Tokens | None:
        """The tokens ``shared_tokens`` gives when they are this user's with another refresh token."""
        if self.shared_tokens is None:
            return None
        try:
            shared = self.shared_tokens()
        except Exception:
            log.exception("shared_tokens failed; refreshing with our own token")
            return None
        if shared is None or shared.user_id != self.user_id or shared.refresh_token in (None, self._refresh_token):
            return None
        return shared

    def me(self) -> dict[str, Any]:
        """``GET /users/me``."""
        data: dict[str, Any] = self._request("GET", "/users/me")
        return data

    def user(self, user_id: str) -> dict[str, Any]:
        """``GET /users/{user_id}``: ``{user_id, username, display_name}``."""
        data: dict[str, Any] = self._request("GET", f"/users/{user_id}")
        return data

    def contacts(self, usernames: Iterable[str]) -> dict[str, str]:
        """``POST /contacts/sync``: the registered ones among ``usernames``, as ``{username: user_id}``."""
        return dict(self.sync_contacts(usernames).registered)

    def add_contact(self, user_id: str) -> None:
        """``PUT /contacts/{user_id}``: put ``user_id`` on this user's server-side contact list."""
        self._request("PUT", f"/contacts/{quote(user_id, safe='')}")

    def _typed(self, kind: type[S], method: str, path: str, **kwargs: Any) -> S:
        """A REST call whose answer is decoded as ``kind`` (``ApiError`` when it has not that shape)."""
        data = self._request(method, path, **kwargs)
        try:
            return decode(data, kind)
        except msgspec.ValidationError as exc:
            raise ApiError(200, f"unexpected answer to {method} {path}: {exc}") from None

    def sync_contacts(self, usernames: Iterable[str] = (), phones: Iterable[str] = ()) -> ContactSync:
        """``POST /contacts/sync``: which of ``usernames`` and ``phones`` (E.164) are users (nothing is added
        to the contact list)."""
        return self._typed(ContactSync, "POST", "/contacts/sync",
                           json={"usernames": list(usernames), "phones": list(phones)})

    def contact_list(self) -> list[Contact]:
        """``GET /contacts``: this user's server-side contact list, oldest first."""
        return self._typed(ContactList, "GET", "/contacts").contacts

    def remove_contact(self, user_id: str) -> None:
        """``DELETE /contacts/{user_id}`` (``ApiError`` 404 when not on the list)."""
        self._request("DELETE", f"/contacts/{quote(user_id, safe='')}")

    def block(self, user_id: str) -> None:
        """``PUT /blocks/{user_id}``: nothing ``user_id`` sends reaches this user any more."""
        self._request("PUT", f"/blocks/{quote(user_id, safe='')}")

    def unblock(self, user_id: str) -> None:
        """``DELETE /blocks/{user_id}`` (``ApiError`` 404 when not blocked)."""
        self._request("DELETE", f"/blocks/{quote(user_id, safe='')}")

    def blocked(self) -> list[str]:
        """``GET /blocks``: the user ids this user blocks, oldest first."""
        return self._typed(BlockList, "GET", "/blocks").blocked

    def search(self, query: str, conversation: str | None = None, limit: int = 20) -> list[Envelope]:
        """``GET /search``: the messages of this user's conversations (only ``conversation``, a user or group
        id, when given) whose text holds every word of ``query``, newest first, as history items."""
        params: dict[str, Any] = {"q": query, "limit": limit}
        if conversation is not None:
            params["conversation"] = conversation
        data = self._request("GET", "/search", params=params)
        return list(data["messages"])

    def conversations(self, before: str | None = None, limit: int = 50) -> ConversationPage:
        """``GET /conversations``: this user's conversations, newest activity first."""
        params: dict[str, Any] = {"limit": limit}
        if before is not None:
            params["before"] = before
        return self._typed(ConversationPage, "GET", "/conversations", params=params)

    def mark_conversation_read(self, conversation: str, up_to: str) -> None:
        """``POST /conversations/{id}/read``: read up to server id ``up_to`` (the senders get a ``read``
        receipt)."""
        self._request("POST", f"/conversations/{quote(conversation, safe='')}/read", json={"up_to": up_to})

    def sessions(self) -> list[Session]:
        """``GET /users/me/sessions``: this user's devices (MQTT client ids), oldest first."""
        return self._typed(SessionList, "GET", "/users/me/sessions").sessions

    def sign_out_session(self, client_id: str) -> None:
        """``DELETE /users/me/sessions/{client_id}``: forget that device (``ApiError`` 404 when unknown)."""
        self._request("DELETE", f"/users/me/sessions/{quote(client_id, safe='')}")

    def presence_of(self, user_ids: Iterable[str]) -> list[Presence]:
        """``GET /presence`` as typed records (``presence`` gives them as dicts)."""
        return self._typed(PresenceList, "GET", "/presence", params={"users": ",".join(user_ids)}).presence

    def presence(self, user_ids: Iterable[str]) -> list[dict[str, Any]]:
        """``GET /presence``: ``[{user, state, last_seen}]`` of ``user_ids`` (at most 100) as this user may
        see them (``state`` null for those who are not its mutual contacts)."""
        return [msgspec.to_builtins(p) for p in self.presence_of(user_ids)]

    def set_presence_visibility(self, visibility: Literal["contacts", "nobody"]) -> dict[str, Any]:
        """``PATCH /users/me``: whom this user's presence is shown to."""
        data: dict[str, Any] = self._request("PATCH", "/users/me", json={"presence_visibility": visibility})
        return data

    def create_group(self, name: str, members: Iterable[str]) -> dict[str, Any]:
        """``POST /groups``: a group named ``name`` with ``members`` (user ids); the caller is admin."""
        data: dict[str, Any] = self._request("POST", "/groups", json={"name": name, "members": list(members)})
        return data

    def create_device(self, name: str) -> dict[str, Any]:
        """``POST /devices``: an IoT device owned by the caller, ``{device_id, secret, ...}`` (connect it
        with ``chatmq.devices.device_client.DeviceClient``)."""
        data: dict[str, Any] = self._request("POST", "/devices", json={"name": name})
        return data

    def device(self, device_id: str) -> dict[str, Any]:
        """``GET /devices/{id}``: the device with its status (``online``, ``last_seen``, ...)."""
        data: dict[str, Any] = self._request("GET", f"/devices/{quote(device_id, safe='')}")
        return data

    def device_shadow(self, device_id: str) -> dict[str, Any]:
        """``GET /devices/{id}/shadow``: ``{desired, reported, delta, version, ...}``."""
        data: dict[str, Any] = self._request("GET", f"/devices/{quote(device_id, safe='')}/shadow")
        return data

    def update_device_shadow(self, device_id: str, desired: dict[str, Any],
                             version: int | None = None) -> dict[str, Any]:
        """``PATCH /devices/{id}/shadow``: merge ``desired`` (``None`` deletes a key); with ``version``, only
        if the shadow is at that version (``ApiError`` 409 otherwise). Returns the new shadow."""
        body: dict[str, Any] = {"desired": desired}
        if version is not None:
            body["version"] = version
        data: dict[str, Any] = self._request("PATCH", f"/devices/{quote(device_id, safe='')}/shadow", json=body)
        return data

    def send_device_command(self, device_id: str, name: str, params: dict[str, Any] | None = None, *,
                            timeout_s: int = 30, persistent: bool = False,
                            expires_in_s: int | None = None) -> dict[str, Any]:
        """``POST /devices/{id}/commands``: waits up to ``timeout_s`` for the device's answer (``{id, status,
        result, error}``; ``ApiError`` 409 when it is offline, 504 when it does not answer); ``persistent``:
        queued (``{id, status: "queued"}``) until the device connects or ``expires_in_s`` pass."""
        body: dict[str, Any] = {"name": name, "params": params or {}, "timeout_s": timeout_s,
                                "persistent": persistent}
        if expires_in_s is not None:
            body["expires_in_s"] = expires_in_s
        data: dict[str, Any] = self._request("POST", f"/devices/{quote(device_id, safe='')}/commands", json=body,
                                             timeout=timeout_s + 30.0)
        return data

    def device_commands(self, device_id: str, status: str | None = None) -> list[dict[str, Any]]:
        """``GET /devices/{id}/commands``: the device's commands, newest first (only ``status`` ones)."""
        params = {"status": status} if status else None
        data: list[dict[str, Any]] = self._request("GET", f"/devices/{quote(device_id, safe='')}/commands",
                                                   params=params)
        return data

    def create_job(self, document: dict[str, Any], devices: list[str] | None = None, *,
                   rollout_per_minute: int | None = None) -> dict[str, Any]:
        """``POST /jobs``: ``document`` for ``devices`` (ids of the caller's devices), or for every device of
        the caller when ``devices`` is None; ``{job_id}``."""
        body: dict[str, Any] = {"document": document}
        if devices is None:
            body["all_mine"] = True
        else:
            body["devices"] = devices
        if rollout_per_minute is not None:
            body["rollout_per_minute"] = rollout_per_minute
        data: dict[str, Any] = self._request("POST", "/jobs", json=body)
        return data

    def job(self, job_id: str) -> dict[str, Any]:
        """``GET /jobs/{id}``: the job with its devices' status ``counts`` and rows."""
        data: dict[str, Any] = self._request("GET", f"/jobs/{quote(job_id, safe='')}")
        return data

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        """``POST /jobs/{id}/cancel``: the job, canceled for the devices that had not finished it."""
        data: dict[str, Any] = self._request("POST", f"/jobs/{quote(job_id, safe='')}/cancel")
        return data

    def delete_device(self, device_id: str) -> None:
        """``DELETE /devices/{id}``: revoke one of the caller's devices."""
        self._request("DELETE", f"/devices/{quote(device_id, safe='')}")

    def add_push_token(self, platform: str, token: str) -> dict[str, Any]:
        """``POST /push-tokens``: this phone's or browser's push token, so messages that arrive while the
        user is offline are pushed to it."""
        data: dict[str, Any] = self._request("POST", "/push-tokens", json={"platform": platform, "token": token})
        return data

    def remove_push_token(self, token: str) -> None:
        """``DELETE /push-tokens/{token}``: no more pushes to it."""
        self._request("DELETE", f"/push-tokens/{quote(token, safe='')}")

    def history(self, peer_id: str, before: str | None = None, limit: int = 50) -> dict[str, Any]:
        """``GET /conversations/{peer_id}/messages``: stored messages, newest first."""
        params: dict[str, Any] = {"limit": limit}
        if before is not None:
            params["before"] = before
        data: dict[str, Any] = self._request("GET", f"/conversations/{quote(peer_id, safe='')}/messages",
                                             params=params)
        return data

    # ------------------------------------------------------------------ MQTT session

    def connect(self, timeout: float = 10.0) -> None:
        """Open the MQTT session and subscribe to the inbox; return after the SUBACK.

        See the module docstring for the errors raised. Calling it while connected is a no-op.
        """
        if self._running:
            return
        user_id = self._require_user()
        if self._access_token is None:
            raise NotLoggedInError("not logged in")
        if self.token_needs_refresh():
            self.refresh()
        # connecting again after disconnect(), or with another client id: start from a fresh paho client
        if self._loop_used or self._mqtt_client_id != self.client_id:
            self.mqtt = self._make_mqtt()
        with self._auth_lock:
            self.mqtt.username_pw_set(user_id, self._access_token)
        self._ready.clear()
        self._connect_error = None
        self.fatal_error = None
        self._auth_retry_used = False
        self._loop_used = True

        def fallback() -> mqtt.Client:  # a broker without MQTT 5: the same again with 3.1.1
            self.mqtt = self._make_mqtt()
            with self._auth_lock:
                self.mqtt.username_pw_set(user_id, self._access_token)
            self._connect_error = None
            return self.mqtt

        open_probing(self.mqtt, self._probe, fallback, self.mqtt_host, self.mqtt_port, self.keepalive, self._ready,
                     timeout, self._stop_loop)
        if self._connect_error is not None:
            self._stop_loop()
            raise self._connect_error
        self._running = True

    def disconnect(self, flush_timeout: float = 2.0) -> None:
        """Close the MQTT session and stop paho's thread; harmless when not connected.

        While connected it first waits up to ``flush_timeout`` s (see ``flush``) so that
        receipts for messages just handed to the app reach the broker.
        """
        if self.connected and flush_timeout > 0:
            self.flush(flush_timeout)
        self._running = False
        self._stop_loop()
        self._set_connected(False)

    def _stop_loop(self) -> None:
        try:
            self.mqtt.disconnect()
        except Exception:  # pragma: no cover - paho may refuse when never connected
            log.debug("disconnect failed", exc_info=True)
        self.mqtt.loop_stop()
        release_sockets(self.mqtt)

    def _publish_message(self, envelope: Envelope) -> None:
        """Keep a message envelope until its ack or error; publish it now when connected (else the
        next connect does). ``NotLoggedInError`` before ``login``/``set_tokens``."""
        self._require_user()
        payload = orjson.dumps(envelope)
        if len(payload) > self.max_payload:
            self.handle_envelope({
                "type": "error", "client_id": envelope["id"], "code": "too_large",
                "reason": f"envelope of {len(payload)} bytes exceeds the limit of {self.max_payload}"})
            return
        with self._send_lock:
            with self._cond:
                self._unacked[str(envelope["id"])] = envelope
                if len(self._unacked) > _UNACKED_LIMIT:
                    dropped, _ = self._unacked.popitem(last=False)
                    log.warning("more than %d messages without an ack; no longer resending %s",
                                _UNACKED_LIMIT, dropped)
            if self.connected:
                self._publish(payload, str(envelope["id"]))

    def unacked(self) -> list[Envelope]:
        """Sent messages that got neither an ``ack`` nor an ``error`` yet, oldest first."""
        with self._cond:
            return list(self._unacked.values())

    def _resend_unacked(self) -> None:
        """On a connect (holding ``_send_lock``): publish what is still unanswered (same client ids)."""
        for envelope in self.unacked():
            try:
                self._publish(envelope, str(envelope["id"]))
            except ChatClientError as exc:
                log.warning("could not resend %s: %s", envelope.get("id"), exc)
                return

    def _publish(self, envelope: Envelope | bytes, client_id: str | None = None) -> None:
        """Publish QoS 1 on the outbox; ``client_id``: the message's, so that a refusing PUBACK names it."""
        payload = envelope if isinstance(envelope, bytes) else orjson.dumps(envelope)
        info = self.mqtt.publish(self.outbox_topic, payload, qos=1)
        rc = getattr(info, "rc", mqtt.MQTT_ERR_SUCCESS)
        if rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise ChatClientError(f"publish failed: {mqtt.error_string(rc)}")
        if isinstance(info, mqtt.MQTTMessageInfo):
            refusal = self._tracker.sent(info, client_id)
            with self._cond:
                self._pending = [i for i in self._pending if not _settled(i)]
                self._pending.append(info)
            if refusal is not None:
                self._refused(refusal)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until no inbox message is being handled and every QoS 1 publish was acknowledged.

        Returns False when that did not happen within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            if not self._cond.wait_for(lambda: self._handling == 0, timeout):
                return False
            pending = list(self._pending)
        for info in pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                info.wait_for_publish(remaining)
            except (RuntimeError, ValueError):  # not connected / queue full: cannot flush now
                return False
            if not info.is_published():
                return False
        with self._cond:
            self._pending = [i for i in self._pending if not _settled(i)]
        return True

    def send(self, to: str, body: dict[str, Any] | str, client_id: str | None = None,
             reply_to: str | None = None) -> str:
        """Publish a direct message to user ``to``; return its client id.

        A ``str`` body is sent as ``{"text": body}``. Pass the same ``client_id`` to resend
        a message that got no ack (the server de-duplicates it). While disconnected paho
        queues the publish and sends it after reconnecting. ``reply_to``: the server id of a
        message of this conversation it answers (else the server answers ``not_found``).
        """
        envelope = build_message(_body(body), to=to, client_id=client_id, reply_to=reply_to)
        self._publish_message(envelope)
        return str(envelope["id"])

    def send_group(self, group_id: str, body: dict[str, Any] | str, client_id: str | None = None,
                   reply_to: str | None = None) -> str:
        """Publish a message to group ``group_id``; return its client id (see ``send``)."""
        envelope = build_message(_body(body), group=group_id, client_id=client_id, reply_to=reply_to)
        self._publish_message(envelope)
        return str(envelope["id"])

    def edit(self, target: str, body: dict[str, Any] | str, client_id: str | None = None) -> str:
        """Give one's own message ``target`` (a server id) a new body (within the server's ``edit_window``);
        return the edit's client id: acked, or answered with an ``error`` (``forbidden``,
        ``not_found``, ``edit_window_passed``), as a message is (``wait_ack``)."""
        return self._act(build_edit(target, _body(body), client_id))

    def delete(self, target: str, scope: Literal["everyone", "me"] = "everyone", client_id: str | None = None) -> str:
        """Delete message ``target`` for everyone (one's own) or hide it from one's own history (``me``);
        return the client id (see ``edit``)."""
        return self._act(build_delete(target, scope, client_id))

    def react(self, target: str, emoji: str, remove: bool = False, client_id: str | None = None) -> str:
        """React to message ``target`` with ``emoji`` (``remove``: take the reaction back); return the
        client id (see ``edit``)."""
        return self._act(build_reaction(target, emoji, remove, client_id))

    def _act(self, envelope: Envelope) -> str:
        self._publish_message(envelope)
        return str(envelope["id"])

    def send_raw(self, payload: bytes) -> None:
        """Publish ``payload`` to the outbox as it is (for testing the server's validation)."""
        self._publish(payload)

    def send_command(self, device_id: str, name: str, params: dict[str, Any] | None = None, *,
                     timeout_s: int = 30, client_id: str | None = None) -> str:
        """Publish a ``command`` for one of this user's devices on the outbox; return its client id (the
        answer, ``command_result``, comes to the inbox: ``wait_command_result``). Resend with the same
        ``client_id``: the device runs it once."""
        envelope: Envelope = {"type": "command", "id": client_id or new_client_id(), "device": device_id,
                              "name": name, "params": params or {}, "timeout_s": timeout_s}
        self._publish(envelope, str(envelope["id"]))
        return str(envelope["id"])

    def wait_command_result(self, client_id: str, timeout: float) -> Envelope:
        """Block until the ``command_result`` of command ``client_id`` arrives and return it (``status``
        ``succeeded``, ``failed`` or ``expired``, ``result``, ``error``). ``MessageRejectedError`` when an
        ``error`` for it came instead (not the user's device, params too large), ``ChatTimeoutError`` when
        nothing came within ``timeout`` seconds."""
        self.wait_for(lambda: client_id in self.command_results or self._rejected(client_id), timeout)
        with self._cond:
            result = self.command_results.get(client_id)
            if result is not None:
                return result
            raise self._rejection(client_id)

    def send_receipt(self, status: Literal["delivered", "read"], ids: Iterable[str]) -> None:
        """Publish a ``receipt`` for server ids ``ids``; nothing when ``ids`` is empty."""
        id_list = list(ids)
        if not id_list:
            return
        with self._send_lock:
            if status == "read":  # confirm delivery first where the app was quicker than the receipt
                with self._cond:
                    due = [i for i in id_list if i in self._delivery_due]
                    self._delivery_due.difference_update(due)
                if due:
                    self._publish(build_receipt("delivered", due))
            self._publish(build_receipt(status, id_list))

    def mark_read(self, ids: Iterable[str]) -> None:
        """Tell the senders that the messages ``ids`` (server ids) were read."""
        self.send_receipt("read", ids)

    def mark_delivered(self, ids: Iterable[str]) -> None:
        """Confirm delivery of ``ids`` (needed only with ``auto_delivered=False``)."""
        self.send_receipt("delivered", ids)

    def send_typing(self, *, to: str | None = None, group: str | None = None,
                    state: Literal["start", "stop"] = "start") -> None:
        """Tell ``to`` (or the members of ``group``) who are online that this user is typing (or
        stopped); never stored, at most one of each state a second per conversation."""
        if (to is None) == (group is None):
            raise ValueError("exactly one of to and group is required")
        envelope: Envelope = {"type": "typing", "state": state}
        envelope["to" if to is not None else "group"] = to if to is not None else group
        self._publish(envelope)

    def send_presence(self, state: Literal["online", "away"]) -> None:
        """Tell this user's mutual contacts that it is away (or back online)."""
        self._publish({"type": "presence", "state": state})

    # ------------------------------------------------------------------ waiting

    def wait_for(self, predicate: Callable[[], T], timeout: float) -> T:
        """Block until ``predicate()`` (checked whenever an envelope arrives or the connection state
        changes) is truthy; return it.

        Raises ``ChatTimeoutError`` after ``timeout`` seconds.
        """
        with self._cond:
            result = self._cond.wait_for(predicate, timeout)
        if not result:
            raise ChatTimeoutError(f"condition not met within {timeout:g}s")
        return result

    def wait_messages(self, n: int, timeout: float) -> list[Envelope]:
        """Block until at least ``n`` distinct messages arrived; return (a copy of) all of them."""
        try:
            self.wait_for(lambda: len(self.messages) >= n, timeout)
        except ChatTimeoutError:
            raise ChatTimeoutError(f"got {len(self.messages)} of {n} messages within {timeout:g}s") from None
        with self._cond:
            return list(self.messages)

    def wait_ack(self, client_id: str, timeout: float) -> Envelope:
        """Block until the ``ack`` for ``client_id`` arrives and return it.

        Raises ``MessageRejectedError`` when an ``error`` for ``client_id`` arrives instead,
        and ``AckTimeoutError`` when neither arrives within ``timeout`` seconds.
        """
        try:
            self.wait_for(lambda: client_id in self.acks or self._rejected(client_id), timeout)
        except ChatTimeoutError:
            raise AckTimeoutError(f"no ack for message {client_id} within {timeout:g}s") from None
        with self._cond:
            ack = self.acks.get(client_id)
            if ack is not None:
                return ack
            raise self._rejection(client_id)

    def _rejected(self, client_id: str) -> bool:
        """(Holding ``_cond``.) Whether ``client_id`` was refused: by a PUBACK (MQTT 5), or by an ``error``
        while its PUBACK is not awaited (which over MQTT 5 may yet bring the reason code)."""
        return client_id in self._refusals_by_client_id or (
            client_id in self._errors_by_client_id and not self._tracker.awaits(client_id))

    def _rejection(self, client_id: str) -> MessageRejectedError:
        """(Holding ``_cond``.) The error for a refused ``client_id`` (see ``_rejected``)."""
        refusal = self._refusals_by_client_id.get(client_id)
        envelope = self._errors_by_client_id.get(client_id)
        if refusal is not None:
            return MessageRejectedError.refused(refusal, envelope)
        assert envelope is not None
        return MessageRejectedError(envelope)

    def clear(self) -> None:
        """Forget the kept envelopes (de-duplication memory is kept)."""
        with self._cond:
            self.messages.clear()
            self.actions.clear()
            self.receipts.clear()
            self.events.clear()
            self.errors.clear()
            self.refusals.clear()
            self._refusals_by_client_id.clear()
            self.acks.clear()
            self.command_results.clear()
            self._errors_by_client_id.clear()

    # ------------------------------------------------------------------ paho callbacks

    def _safe_call(self, callback: Callable[[T], None] | None, arg: T) -> None:
        if callback is None:
            return
        try:
            callback(arg)
        except Exception:
            log.exception("application callback %r raised", getattr(callback, "__name__", callback))

    def _set_connected(self, value: bool) -> None:
        if self.connected == value:
            return
        with self._cond:  # wake wait_for() predicates that look at the connection state
            self.connected = value
            self._cond.notify_all()
        self._safe_call(self.on_connection_change, value)

    def _on_mqtt_pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        """Before every (re)connect: refresh a token that is (nearly) expired; never raise."""
        if not self._running:
            return
        try:
            if self.token_needs_refresh():
                self.refresh()
        except ChatClientError as exc:
            log.warning("token refresh before reconnect failed: %s", exc)
        except Exception:
            log.exception("token refresh before reconnect failed")

    def _on_mqtt_connect(
        self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags, reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        try:
            if reason_code.is_failure:
                if self._probe.connack(reason_code.value == _UNSUPPORTED_PROTOCOL, self._ready):
                    return
                self._handle_connack_failure(reason_code)
                return
            self._auth_retry_used = False
            with self._send_lock:  # the inbox first (acks go there), then what waits, then new sends
                result, mid = client.subscribe(self.inbox_topic, qos=1)
                if result != mqtt.MQTT_ERR_SUCCESS:
                    log.warning("subscribe to inbox failed: %s", mqtt.error_string(result))
                self._sub_mid = mid
                self._resend_unacked()
                self._set_connected(True)
        except Exception:
            log.exception("error in on_connect")

    def _handle_connack_failure(self, reason_code: ReasonCode) -> None:
        auth_refused = reason_code.value in _AUTH_REFUSED
        name = reason_code.getName()
        if not self._running:  # the first connect: report to the caller of connect()
            self._connect_error = (
                NotAuthorizedError(f"broker refused the credentials: {name}") if auth_refused
                else ConnectError(f"broker refused the connection: {name}")
            )
            self._ready.set()
            return
        log.warning("reconnect refused by broker: %s", name)
        if not auth_refused:
            return  # paho retries with backoff
        if self._auth_retry_used or self._refresh_token is None:
            self.fatal_error = NotAuthorizedError(f"broker refused the credentials: {name}; log in again")
            log.error("giving up reconnecting: credentials refused after a token refresh")
            self._running = False
            self.mqtt.disconnect()  # ends paho's loop; no more retries
            return
        self._auth_retry_used = True
        try:
            self.refresh()  # updates username_pw_set; paho retries after its backoff
        except ChatClientError as exc:
            log.warning("token refresh after refused reconnect failed: %s", exc)

    def _on_mqtt_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if mid != self._sub_mid:
            return
        denied = any(rc.is_failure for rc in reason_codes)
        if denied:
            log.error("inbox subscription refused by broker")
        if not self._running:
            if denied:
                topic = self.inbox_topic
                self._connect_error = SubscribeDeniedError(f"broker refused the subscription to {topic}")
            self._ready.set()

    def _on_mqtt_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags, reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self._probe.closed(self._ready):
            return
        self._tracker.lost()
        if reason_code.is_failure:
            log.info("MQTT connection lost (%s)%s", reason_code.getName(),
                     "; reconnecting" if self._running else "")
        self._set_connected(False)

    def _on_mqtt_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason_code: ReasonCode,
                         properties: Properties | None) -> None:
        """A PUBACK: over MQTT 5 it may refuse the publish (see ``_refused``); wakes ``wait_ack``."""
        refusal = self._tracker.answered(mid, reason_code, properties)
        if refusal is not None:
            self._refused(refusal)
        else:
            with self._cond:
                self._cond.notify_all()

    def _refused(self, refusal: PublishRefusal) -> None:
        """Keep an MQTT 5 refusal (``refusals``); a refused message is no longer resent, and its ``wait_ack``
        raises ``MessageRejectedError`` with the reason code."""
        with self._cond:
            self.refusals.append(refusal)
            if refusal.client_id is not None:
                self._refusals_by_client_id[refusal.client_id] = refusal
                self._unacked.pop(refusal.client_id, None)
            self._cond.notify_all()
        log.info("publish refused with reason 0x%02X (%s) for %s", refusal.reason_code, refusal.code,
                 refusal.client_id)

    def _on_mqtt_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        """Decode one inbox payload and dispatch it; never raises."""
        try:
            envelope = orjson.loads(msg.payload)
        except orjson.JSONDecodeError:
            log.warning("dropping undecodable payload on %s (%d bytes)", msg.topic, len(msg.payload))
            return
        if not isinstance(envelope, dict) or not isinstance(envelope.get("type"), str):
            log.warning("dropping payload on %s: not an envelope", msg.topic)
            return
        try:
            self.handle_envelope(envelope)
        except Exception:
            log.exception("error handling a %s envelope", envelope.get("type"))

    def handle_envelope(self, envelope: Envelope) -> None:
        """Dispatch one decoded inbox envelope (what the paho ``on_message`` handler does)."""
        kind = envelope["type"]
        if kind == "message" or kind in ACTION_TYPES:
            self._handle_message(envelope)
        elif kind == "ack":
            client_id = envelope.get("client_id")
            if isinstance(client_id, str):
                with self._cond:
                    self.acks[client_id] = envelope
                    self._unacked.pop(client_id, None)
                    self._cond.notify_all()
            self._safe_call(self.on_ack, envelope)
        elif kind == "receipt":
            self._keep(self.receipts, envelope)
            self._safe_call(self.on_receipt, envelope)
        elif kind == "event":
            self._keep(self.events, envelope)
            self._safe_call(self.on_event, envelope)
        elif kind == "command_result":
            client_id = envelope.get("id")
            if isinstance(client_id, str):
                with self._cond:
                    self.command_results[client_id] = envelope
                    self._cond.notify_all()
            self._safe_call(self.on_command_result, envelope)
        elif kind == "typing":
            self._keep(self.typing, envelope)
            self._safe_call(self.on_typing, envelope)
        elif kind == "presence":
            self._keep(self.presence_changes, envelope)
            self._safe_call(self.on_presence, envelope)
        elif kind == "error":
            with self._cond:
                self.errors.append(envelope)
                client_id = envelope.get("client_id")
                if isinstance(client_id, str):
                    self._errors_by_client_id[client_id] = envelope
                    self._unacked.pop(client_id, None)
                self._cond.notify_all()
            log.info("server error %s for %s", envelope.get("code"), envelope.get("client_id"))
            self._safe_call(self.on_error, envelope)
        else:
            log.debug("ignoring inbox envelope of unknown type %r", kind)

    def _keep(self, target: list[Envelope], envelope: Envelope) -> None:
        with self._cond:
            target.append(envelope)
            self._cond.notify_all()

    def _handle_message(self, envelope: Envelope) -> None:
        server_id = envelope.get("id")
        if not isinstance(server_id, str) or not server_id:
            log.warning("dropping message envelope without a server id")
            return
        with self._cond:
            self._handling += 1
        try:
            self._deliver(server_id, envelope)
        finally:
            with self._cond:
                self._handling -= 1
                self._cond.notify_all()

    def _deliver(self, server_id: str, envelope: Envelope) -> None:
        action = envelope["type"] != "message"
        with self._cond:
            duplicate = server_id in self._seen
            if duplicate:
                self._seen.move_to_end(server_id)
            else:
                self._seen[server_id] = None
                if len(self._seen) > _SEEN_LIMIT:
                    self._seen.popitem(last=False)
                (self.actions if action else self.messages).append(envelope)
                self._cond.notify_all()
            if self.auto_delivered:
                self._delivery_due.add(server_id)
        if duplicate:
            log.debug("%s %s delivered again; not handed to the app", envelope["type"], server_id)
        else:
            self._safe_call(self.on_action if action else self.on_message, envelope)
        if not self.auto_delivered:
            return
        with self._send_lock:  # no read receipt of this message may slip in before it
            with self._cond:
                due = server_id in self._delivery_due or duplicate
                self._delivery_due.discard(server_id)
            if not due:
                return  # a read receipt sent from the callback confirmed the delivery first
            try:
                self.send_receipt("delivered", [server_id])
            except ChatClientError as exc:
                log.warning("could not publish delivered receipt: %s", exc)


def _settled(info: mqtt.MQTTMessageInfo) -> bool:
    """Published, or failed in a way ``flush`` cannot wait for (so no longer tracked)."""
    try:
        return info.is_published()
    except (RuntimeError, ValueError):
        return True


def _body(body: dict[str, Any] | str) -> dict[str, Any]:
    return {"text": body} if isinstance(body, str) else body


def _raise_for(response: httpx.Response) -> None:
    """``AuthenticationError`` for a 401, ``ApiError`` for another error status; nothing for a success."""
    if response.status_code >= 400:
        detail = _error_detail(response)
        if response.status_code == 401:
            raise AuthenticationError(401, detail)
        raise ApiError(response.status_code, detail)


def _error_detail(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.reason_phrase or "error"
    if isinstance(data, dict):
        detail = data.get("detail", data)
        if isinstance(detail, str):
            return detail
        return orjson.dumps(detail).decode()
    return str(data)
