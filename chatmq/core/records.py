"""The records on the bus: one typed struct per record, used by the producer and the consumer alike.

Every record is a ``msgspec.Struct`` (frozen) subclassing ``BusItem``. The in-process bus carries the
objects themselves, with no encoding at all; the Kafka bus encodes them with ``encode`` (JSON) and a
consumer decodes a Kafka record with the ``Codec`` of its topic. The JSON of each record keeps the
field names the bus used when records were dicts, so records already on a running cluster's topics
decode the same way (``tests/unit/golden/records/`` holds one file per record: a change of format shows).

Inbox envelopes inside records (``envs`` of a ``Delivery``, ``env`` of a fan-out or a ``Notice``) are
``msgspec.Raw``: the JSON bytes made once when the envelope was made (``chatmq.core.envelopes``), carried
as they are to the node, which writes them to the inbox unchanged. A message's ``body`` is ``Raw`` too:
the bytes the client sent, validated once at the edge.

Records (``BusItem``), and the client envelopes inside them (``chatmq.core.envelopes.Inbound``), are
``gc=False`` structs: the garbage collector does not track them (they hold data only, never a cycle).
Under load the bus holds tens of thousands of them for a while; tracked, they made CPython's full
collections come several times a second, each a stalled loop of 30-50 ms.

Topics and their records (keys in brackets):

* ``chat.outbox`` (conversation; the user for receipts), ``chat.group-outbox`` (group): ``Outbox``
  ``{"from", "node", "env": <MessageIn | ReceiptIn | EditIn | DeleteIn | ReactionIn | TypingIn>[, "client"]}``
  (receipts and message actions keyed by their sender, on ``chat.outbox``); from the API, ``{"from":
  <blocker>, "node": "", "env": {"type": "blocks_changed", "user": <blocked>}}`` keyed by the pair's
  conversation (``chat.outbox``) and by each group of the blocker (``chat.group-outbox``), so it comes in
  order before what follows.
* ``chat.presence`` (user; node): ``Online`` / ``Offline`` ``{"event", "user", "node", "epoch"[, "client"]}``,
  ``NodeStarted`` ``{"event": "node_started", "node", "epoch", "ts"}``, ``StateSet`` ``{"event": "state", "user",
  "state": "online"|"away"}`` (a user's ``presence`` envelope), ``VisibilitySet`` ``{"event": "visibility",
  "user", "visibility": "contacts"|"nobody"}`` (from the API).
* ``chat.deliver.<node>`` (user; group): ``Delivery``: live ``{"user", "envs"}``, replay page
  ``{"user", "envs", "replay": "page", "epoch"[, "client"]}``, replay end ``{"user", "replay": "done", "epoch"
  [, "client"]}`` (``client``: that device's replay), live envelopes for one device ``{"user", "envs",
  "client"}`` (an ``ack`` or ``error`` for the connection that published), a copy for a user's other
  devices ``{"user", "envs", "skip"}``, group
  fan-out ``{"users", "env"}`` (the message without ``to``, which the node fills in per member), envelopes for a
  device's inbox ``{"device", "envs"}``.
* ``chat.notices`` (first user): ``Notice`` ``{"users", "env"}``.
* ``chat.connections`` (user or device; node): ``Connected`` / ``Disconnected`` ``{"event", "kind", "id",
  "client_id", "node", "transport", "ts"}``, and ``NodeStarted``.
* ``chat.control`` (node, client id or principal): ``Kick`` ``{"action": "kick", "client_id", "node", "ts"}``,
  ``KickPrincipal`` ``{"action": "kick_principal", "id", "ts"}``, ``Takeover`` ``{"action": "takeover",
  "client_id", "node", "ts", "kind", "id"}`` (``kind`` and ``id``: the principal that connected).
* ``chat.push`` (user): ``PushRecord`` (``chatmq.services.push.records`` builds them).
* ``chat.telemetry`` (device): ``TelemetryRecord`` ``{"device", "owner", "reading", "ts"}``.
* ``chat.devices`` (device): ``DeviceUp`` / ``DeviceDown`` ``{"event": "up"|"down", "device", "owner", "node",
  "epoch", "ts"[, "reason"]}`` (the device subscribed to / released its inbox), ``DeviceOut`` ``{"event":
  "outbox", "device", "owner", "node", "env": <ShadowReport | ShadowGet>}`` (from the device's outbox),
  ``ShadowChanged`` ``{"event": "shadow_changed", "device", "ts"}`` and ``CommandRequest`` ``{"event": "command",
  "device", "id", "name", "params", "persistent", "expires_at"}``, ``JobRequest`` ``{"event": "job", "device",
  "job", "send"}`` (from the API), ``UserCommand`` ``{"event": "user_command", "device", "sender", "id", "name",
  "params", "timeout_s", "ts"}`` (a user's ``command`` from its outbox, by the node).
* ``chat.command-results`` (command id): ``CommandDone`` ``{"id", "device", "status", "result", "error"}``.
* ``chat.device_events`` (device): ``DeviceEvent`` ``{"event": "device_connected"|"device_disconnected",
  "device_id", "owner", "reason", "ts"}`` for other consumers.
* ``chat.heartbeats`` (instance; compacted): ``Heartbeat``, or ``{"instance", "stopped": true, "ts"}``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, cast

import msgspec

from chatmq.core.device_envelopes import CommandResult, JobUpdate, ShadowGet, ShadowReport
from chatmq.core.envelopes import DeleteIn, EditIn, MessageIn, ReactionIn, ReceiptIn, TypingIn
from chatmq.core.errors import ChatMQError

if TYPE_CHECKING:
    from chatmq.core.bus.base import Record

T = TypeVar("T")
log = logging.getLogger(__name__)


class BadRecord(ChatMQError):
    """A bus record that does not decode as the record its topic carries (skipped, never retried)."""


class BusItem(msgspec.Struct, frozen=True, gc=False):
    """The base of every bus record."""


# --- outbox ---------------------------------------------------------------------------------------

class BlocksChanged(msgspec.Struct, frozen=True, gc=False, tag_field="type", tag="blocks_changed"):
    """Not a client envelope (``parse_outbox`` never yields one): the API's word to the routers that
    the ``Outbox`` sender blocked or unblocked ``user``, so that they drop what they cached of who
    blocked ``user`` (``chatmq.services.chat.blocks``)."""

    user: str


class Outbox(BusItem, frozen=True, omit_defaults=True):
    """A validated outbox envelope from user ``sender`` connected to ``node`` with MQTT client id
    ``client`` (its device; "" from a node that did not say), or (from the API, with ``node`` empty) a
    ``BlocksChanged``."""

    sender: str = msgspec.field(name="from")
    node: str
    env: MessageIn | ReceiptIn | EditIn | DeleteIn | ReactionIn | TypingIn | BlocksChanged
    client: str = ""


# --- presence and connections ---------------------------------------------------------------------

class _UserOnNode(BusItem, frozen=True):
    user: str
    node: str
    epoch: int


class Online(_UserOnNode, frozen=True, tag_field="event", tag="online", omit_defaults=True):
    """``user`` subscribed to its inbox on ``node`` (``epoch`` grows with time) with MQTT client id
    ``client`` (its device; "" from a node that did not say)."""

    client: str = ""


class Offline(_UserOnNode, frozen=True, tag_field="event", tag="offline"):
    """``user``'s last inbox subscription on ``node`` of ``epoch`` ended."""


class NodeStarted(BusItem, frozen=True, tag_field="event", tag="node_started"):
    """``node`` (re)started: whoever was on it before ``epoch`` is gone."""

    node: str
    epoch: int
    ts: int


class StateSet(BusItem, frozen=True, tag_field="event", tag="state"):
    """``user`` said (a ``presence`` envelope on its outbox) that it is ``away`` or ``online`` again."""

    user: str
    state: Literal["online", "away"]


class VisibilitySet(BusItem, frozen=True, tag_field="event", tag="visibility"):
    """``user`` changed its ``presence_visibility`` (``PATCH /users/me``; committed already)."""

    user: str
    visibility: Literal["contacts", "nobody"]


Presence = Online | Offline | NodeStarted | StateSet | VisibilitySet

Kind = Literal["user", "device"]


class _Connection(BusItem, frozen=True):
    kind: Kind
    id: str
    client_id: str
    node: str
    transport: str | None
    ts: int


class Connected(_Connection, frozen=True, tag_field="event", tag="connected"):
    """A client authenticated on ``node`` (``transport`` ``tcp`` or ``ws``)."""


class Disconnected(_Connection, frozen=True, tag_field="event", tag="disconnected"):
    """An authenticated client's connection on ``node`` ended (``transport`` is null)."""


ConnectionEvent = Connected | Disconnected | NodeStarted


# --- deliveries to a node -------------------------------------------------------------------------

ReplayMark = Literal["page", "done"]


class Delivery(BusItem, frozen=True, omit_defaults=True):
    """One record of ``chat.deliver.<node>``: inbox envelopes (JSON bytes) for ``user`` (live, or a
    replay ``page`` of ``epoch``, or the replay's ``done``), or a group fan-out: ``env`` (a message
    without ``to``) for each of ``users``. Build them with ``live``, ``page``, ``done``, ``fan_out``."""

    user: str | None = None
    envs: list[msgspec.Raw] = []
    replay: ReplayMark | None = None
    epoch: int | None = None
    users: list[str] | None = None
    env: msgspec.Raw = msgspec.Raw()  # empty unless a fan-out (msgspec takes no ``Raw | None``)
    device: str | None = None
    client: str | None = None  # only to this MQTT client id of ``user`` (a device's replay, its answers)
    skip: str | None = None  # to every connection of ``user`` but this client id (a copy for its other devices)

    @classmethod
    def to_device(cls, device: str, envs: list[msgspec.Raw]) -> Delivery:
        """Envelopes for ``devices/{device}/inbox``."""
        return cls(envs=envs, device=device)

    @classmethod
    def live(cls, user: str, envs: list[msgspec.Raw], skip: str | None = None,
             only: str | None = None) -> Delivery:
        return cls(user=user, envs=envs, skip=skip, client=only)

    @classmethod
    def page(cls, user: str, envs: list[msgspec.Raw], epoch: int, client: str | None = None) -> Delivery:
        return cls(user=user, envs=envs, replay="page", epoch=epoch, client=client)

    @classmethod
    def done(cls, user: str, epoch: int, client: str | None = None) -> Delivery:
        return cls(user=user, replay="done", epoch=epoch, client=client)

    @classmethod
    def fan_out(cls, users: list[str], template: msgspec.Raw) -> Delivery:
        return cls(users=users, env=template)


class Notice(BusItem, frozen=True):
    """An inbox envelope (a group ``event``) for ``users``, from the API."""

    users: list[str]
    env: msgspec.Raw


# --- operator control -----------------------------------------------------------------------------

class _ClientOnNode(BusItem, frozen=True):
    client_id: str
    node: str
    ts: int


class Kick(_ClientOnNode, frozen=True, tag_field="action", tag="kick"):
    """Close connection ``client_id`` on ``node``."""


class KickPrincipal(BusItem, frozen=True, tag_field="action", tag="kick_principal"):
    """Close every connection of user or device ``id`` (and of a user's devices), on every node."""

    id: str
    ts: int


class Takeover(_ClientOnNode, frozen=True, tag_field="action", tag="takeover"):
    """``client_id`` connected to ``node`` as the user or device ``id`` (``kind``: ``user`` or ``device``):
    the other nodes close theirs when it is that same principal's, and leave another's alone. A takeover
    without ``id`` (from a node before the field came) names nobody and closes nothing."""

    kind: str = ""
    id: str = ""


Command = Kick | KickPrincipal | Takeover


# --- devices and processes ------------------------------------------------------------------------

class TelemetryRecord(BusItem, frozen=True):
    """A device reading checked at the node: its fields (and ``ts`` when the device gave one), the time
    the node received it (ms)."""

    device: str
    owner: str | None
    reading: dict[str, int | float | bool]  # bools from other producers: checked again by the reader
    ts: int


class _DeviceOnNode(BusItem, frozen=True):
    device: str
    owner: str | None
    node: str
    epoch: int
    ts: int


class DeviceUp(_DeviceOnNode, frozen=True, tag_field="event", tag="up"):
    """``device`` subscribed to its inbox on ``node`` (``epoch`` grows with time): it can be reached."""


class DeviceDown(_DeviceOnNode, frozen=True, tag_field="event", tag="down"):
    """``device``'s inbox subscription of ``epoch`` on ``node`` ended (``reason``: why)."""

    reason: str = "disconnected"


class DeviceOut(BusItem, frozen=True, tag_field="event", tag="outbox"):
    """A validated envelope from ``device``'s outbox (``devices/{id}/outbox``), connected to ``node``."""

    device: str
    owner: str | None
    node: str
    env: ShadowReport | ShadowGet | CommandResult | JobUpdate


class JobRequest(BusItem, frozen=True, tag_field="event", tag="job"):
    """The API stored job ``job`` with an execution for ``device``: the device is owed it from now on (it
    gets it at its next connect); with ``send``, send it now when the device is online (a paced rollout
    hands every device over at once without ``send``, then again with it at the pace)."""

    device: str
    job: str
    send: bool = True


class CommandRequest(BusItem, frozen=True, tag_field="event", tag="command"):
    """The API stored command ``id`` for ``device`` (``persistent``: kept queued for an offline device
    until ``expires_at``): send it."""

    device: str
    id: str
    name: str
    params: dict[str, Any]
    persistent: bool
    expires_at: int


class CommandDone(BusItem, frozen=True):
    """Command ``id`` of ``device`` finished (``status``: ``succeeded``, ``failed`` or ``expired``), on
    ``chat.command-results`` for the API copy waiting for it."""

    id: str
    device: str
    status: Literal["succeeded", "failed", "expired"]
    result: dict[str, Any] | None
    error: str | None


class ShadowChanged(BusItem, frozen=True, tag_field="event", tag="shadow_changed"):
    """The API changed ``device``'s desired state: send the device its delta."""

    device: str
    ts: int


class UserCommand(BusItem, frozen=True, tag_field="event", tag="user_command"):
    """User ``sender`` sent command ``id`` (its client id) over MQTT for ``device``, to answer within
    ``timeout_s``: the device worker checks that the device is the sender's, stores and sends it; the answer
    goes to the sender's inbox as ``command_result``."""

    device: str
    sender: str
    id: str
    name: str
    params: dict[str, Any]
    timeout_s: int
    ts: int


DeviceRecord = DeviceUp | DeviceDown | DeviceOut | ShadowChanged | CommandRequest | JobRequest | UserCommand


class DeviceEvent(BusItem, frozen=True):
    """A device's lifecycle event on ``chat.device_events`` (``event``: ``device_connected`` or
    ``device_disconnected``)."""

    event: Literal["device_connected", "device_disconnected"]
    device_id: str
    owner: str | None
    reason: str | None
    ts: int


class Heartbeat(BusItem, frozen=True, kw_only=True, omit_defaults=True):
    """A process's heartbeat on ``chat.heartbeats``; with ``stopped`` only ``instance`` and ``ts`` count
    (the process stopped cleanly)."""

    instance: str
    part: str = ""
    node: str | None = None
    host: str = ""
    pid: int = 0
    ops_url: str = ""
    started: int = 0
    ready: bool = False
    not_ready: dict[str, str] = {}
    interval: float = 0.0
    stopped: bool = False
    ts: int

    @classmethod
    def stop(cls, instance: str, ts: int) -> Heartbeat:
        return cls(instance=instance, stopped=True, ts=ts)


class PushRecord(BusItem, frozen=True):
    """A push notification owed to offline ``user`` on ``chat.push`` (``chatmq.services.push.records``
    builds them). ``conversation`` is the conversation as the recipient names it (the sender of a 1:1
    message, else the group); ``preview`` is set only when ``push_preview`` is on."""

    user: str
    kind: Literal["message", "event"]
    conversation: str
    group: bool
    id: str | None = None
    sender: str | None = msgspec.field(default=None, name="from")
    event: str | None = None
    preview: str | None = None

    def __post_init__(self) -> None:
        if not self.user or not self.conversation:
            raise ValueError("a push needs user and conversation")
        if self.kind == "message" and not (self.id and self.sender):
            raise ValueError("a message push needs id and from")

    def data(self) -> dict[str, str]:
        """The data payload every provider sends (docs/contract.md, "Push notifications")."""
        data = {"type": self.kind, "conversation": self.conversation, "group": "true" if self.group else "false"}
        for key, value in (("id", self.id), ("from", self.sender), ("event", self.event), ("preview", self.preview)):
            if value is not None:
                data[key] = value
        return data


# --- encoding ------------------------------------------------------------------------------------

_encoder = msgspec.json.Encoder()


def encode(item: BusItem) -> bytes:
    """The JSON of a record (what the Kafka bus stores)."""
    return _encoder.encode(item)


class Codec(Generic[T]):
    """Reads the records of one topic: the object itself from the in-process bus, else the JSON bytes
    decoded (``BadRecord`` when they are not that record)."""

    def __init__(self, kind: Any, name: str) -> None:
        """``kind``: the record type (or tagged union) of the topic; ``name`` names it in logs."""
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(kind)
        self.kind = kind
        self.name = name

    def decode(self, value: bytes) -> T:
        try:
            return cast(T, self._decoder.decode(value))
        except msgspec.ValidationError as exc:
            raise BadRecord(f"not a {self.name} record: {exc}") from exc
        except (msgspec.DecodeError, RecursionError) as exc:
            raise BadRecord(f"not JSON: {exc}") from exc

    def read_all(self, records: list[Record]) -> list[T]:
        """``read`` each record in order; one that is not this topic's record is logged and skipped
        (it would fail every retry the same way)."""
        out: list[T] = []
        for record in records:
            try:
                out.append(self.read(record))
            except BadRecord as exc:
                log.warning("skipping %s record %s/%d@%d: %s", self.name, record.topic, record.partition,
                            record.offset, exc)
        return out

    def read(self, record: Record) -> T:
        """The record's object (in-process bus) or its value decoded (Kafka); ``BadRecord`` when the value
        is not one."""
        if record.item is not None:
            return cast(T, record.item)
        return self.decode(record.value)


OUTBOX_RECORDS: Codec[Outbox] = Codec(Outbox, "outbox")
PRESENCE_RECORDS: Codec[Presence] = Codec(Presence, "presence")
CONNECTION_RECORDS: Codec[ConnectionEvent] = Codec(ConnectionEvent, "connection")
DELIVERIES: Codec[Delivery] = Codec(Delivery, "delivery")
NOTICES: Codec[Notice] = Codec(Notice, "notice")
COMMANDS: Codec[Command] = Codec(Command, "control")
TELEMETRY_RECORDS: Codec[TelemetryRecord] = Codec(TelemetryRecord, "telemetry")
HEARTBEATS: Codec[Heartbeat] = Codec(Heartbeat, "heartbeat")
PUSHES: Codec[PushRecord] = Codec(PushRecord, "push")
DEVICE_RECORDS: Codec[DeviceRecord] = Codec(DeviceRecord, "device")
COMMAND_RESULTS: Codec[CommandDone] = Codec(CommandDone, "command result")
DEVICE_EVENTS: Codec[DeviceEvent] = Codec(DeviceEvent, "device event")
