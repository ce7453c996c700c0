"""The JSON envelopes of the public contract (see docs/contract.md).

Inbound (client → outbox): ``parse_outbox`` validates a payload once, at the edge (the node's
gateway), into a typed ``MessageIn`` or ``ReceiptIn`` (msgspec structs), with every bound checked
before anything is stored or acked (``EnvelopeLimits``: payload size, nesting depth, string lengths,
array lengths, object key counts), so that whatever is accepted can always be encoded and delivered
again. A refusal is an ``EnvelopeError`` carrying the contract's error ``code``, a human ``reason``
and the client id when it can be read. A message's ``body`` stays the client's JSON bytes
(``msgspec.Raw``): checked here, never decoded into Python objects or encoded again on its way.

Message actions (``edit``, ``delete``, ``reaction``: ``ActionIn``) name a ``target`` message by server id;
a ``message`` may carry ``reply_to``. The router checks both against the store; here only their shape
and bounds are checked. ``action_envelope`` makes their inbox form.

Outbound (server → inbox): ``ack_envelope``, ``message_envelope``, ``receipt_envelope`` and
``error_envelope`` make the envelope's JSON bytes, once; those bytes are stored as pending items and
carried to the node as they are. Every inbox envelope starts with its ``type`` (``{"type":"…"``) and
a ``message`` has ``id`` next and ``ts`` last, which lets the node read them without parsing
(``envelope_type``, ``message_id``, ``message_ts``) and fill in a group fan-out's ``to`` per member
(``address``). ``event_envelope`` builds the API's group events (free-form fields) as dicts, encoded
once by the notifier (``encode_event``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
import orjson

ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
ErrorCode = Literal[
    "invalid_envelope", "unknown_recipient", "not_member", "too_large", "rate_limited", "forbidden", "conflict",
    # message actions (edit, delete, reaction, reply_to)
    "not_found", "edit_window_passed",
    "blocked",
]

Id = Annotated[str, msgspec.Meta(pattern=ID_PATTERN)]
MAX_RECEIPT_IDS = 1000


class EnvelopeError(ValueError):
    """An envelope the server refuses, with the contract's error code."""

    def __init__(self, code: ErrorCode, reason: str, client_id: str | None = None) -> None:
        super().__init__(reason)
        self.code: ErrorCode = code
        self.reason = reason
        self.client_id = client_id


@dataclass(frozen=True, slots=True)
class EnvelopeLimits:
    """The bounds of an outbox envelope (settings ``max_payload`` and ``envelope_max_*``). Depth counts
    the body object as level 1; strings are counted in characters (keys too)."""

    max_payload: int = 64 * 1024
    max_depth: int = 32
    max_string: int = 32 * 1024
    max_items: int = 10_000
    max_keys: int = 1000


# --- inbound --------------------------------------------------------------------------------------

class Inbound(msgspec.Struct, frozen=True, gc=False):
    """The base of every envelope a client or device sends: data only, never a cycle, so the garbage
    collector does not track them (they ride in bus records, ``chatmq.core.records``, by the thousand
    under load)."""


class MessageIn(Inbound, frozen=True, kw_only=True, tag_field="type", tag="message"):
    """``{"type":"message","id":…,"to"|"group":…,"body":{…},"reply_to"?:…}``; ``body`` is the client's JSON
    object as sent (checked against the limits by ``parse_outbox``); ``reply_to`` the server id of a message
    of the same conversation (checked by the router)."""

    id: Id
    to: Id | None = None
    group: Id | None = None
    body: msgspec.Raw
    reply_to: Id | None = None

    def __post_init__(self) -> None:
        if (self.to is None) == (self.group is None):
            raise ValueError("exactly one of 'to' and 'group' is required")


class ReceiptIn(Inbound, frozen=True, tag_field="type", tag="receipt"):
    """``{"type":"receipt","status":"delivered"|"read","ids":[…]}``; ``ids`` a tuple (of strings: the
    garbage collector stops tracking it, as it does not track the struct)."""

    status: Literal["delivered", "read"]
    ids: Annotated[tuple[Id, ...], msgspec.Meta(min_length=1, max_length=MAX_RECEIPT_IDS)]


class CommandIn(Inbound, frozen=True, kw_only=True, tag_field="type", tag="command"):
    """``{"type":"command","id":…,"device":…,"name":…,"params":{…}?,"timeout_s":30?}``: a command for one of
    the sender's devices, answered with ``command_result`` in the sender's inbox. ``params`` (a JSON object
    within the limits of a message body, checked by ``parse_outbox``) is bounded as a shadow where the
    command is stored."""

    id: Id
    device: Id
    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
    params: msgspec.Raw = msgspec.Raw(b"{}")
    timeout_s: Annotated[int, msgspec.Meta(ge=1, le=300)] = 30

    def params_object(self) -> dict[str, Any]:
        value: dict[str, Any] = msgspec.json.decode(bytes(self.params))
        return value


# message actions: each names its ``target`` (a message's server id); the router finds the conversation

MAX_EMOJI = 32
"""The longest ``emoji`` of a reaction, in characters (one emoji with its modifiers and joiners fits)."""

Emoji = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_EMOJI)]


class EditIn(Inbound, frozen=True, tag_field="type", tag="edit"):
    """``{"type":"edit","id":…,"target":"<server id>","body":{…}}``: the sender's own message gets a new body."""

    id: Id
    target: Id
    body: msgspec.Raw


class DeleteIn(Inbound, frozen=True, tag_field="type", tag="delete"):
    """``{"type":"delete","id":…,"target":…,"for":"everyone"|"me"}``."""

    id: Id
    target: Id
    scope: Literal["everyone", "me"] = msgspec.field(name="for")


class ReactionIn(Inbound, frozen=True, tag_field="type", tag="reaction"):
    """``{"type":"reaction","id":…,"target":…,"emoji":"👍","remove":false}``."""

    id: Id
    target: Id
    emoji: Emoji
    remove: bool = False


ActionIn = EditIn | DeleteIn | ReactionIn

# --- typing (issue 15) ----------------------------------------------------------------------------

class TypingIn(Inbound, frozen=True, kw_only=True, tag_field="type", tag="typing"):
    """``{"type":"typing","to"|"group":…,"state":"start"|"stop"}``: delivered to the recipients that are
    online, never stored."""

    to: Id | None = None
    group: Id | None = None
    state: Literal["start", "stop"]

    def __post_init__(self) -> None:
        if (self.to is None) == (self.group is None):
            raise ValueError("exactly one of 'to' and 'group' is required")


# --- presence (issue 15) --------------------------------------------------------------------------

class PresenceIn(Inbound, frozen=True, tag_field="type", tag="presence"):
    """``{"type":"presence","state":"online"|"away"}``: the user says it is away (or back); its mutual
    contacts hear of the change."""

    state: Literal["online", "away"]


OutboxEnvelope = MessageIn | ReceiptIn | CommandIn | EditIn | DeleteIn | ReactionIn | TypingIn | PresenceIn
_outbox_decoder: msgspec.json.Decoder[OutboxEnvelope] = msgspec.json.Decoder(OutboxEnvelope)


def parse_outbox(payload: bytes, limits: EnvelopeLimits | int) -> OutboxEnvelope:
    """Validate one outbox payload against ``limits`` (an int: ``max_payload`` with the default bounds);
    ``EnvelopeError`` with code ``too_large`` or ``invalid_envelope`` otherwise."""
    if isinstance(limits, int):
        limits = EnvelopeLimits(max_payload=limits)
    if len(payload) > limits.max_payload:
        raise EnvelopeError("too_large", f"envelope of {len(payload)} bytes exceeds the limit of "
                                         f"{limits.max_payload}", top_level_id(payload[:limits.max_payload]))
    try:
        env = _outbox_decoder.decode(payload)
    except RecursionError as exc:
        raise EnvelopeError("invalid_envelope", f"envelope nests deeper than {limits.max_depth} levels",
                            top_level_id(payload)) from exc
    except msgspec.ValidationError as exc:
        raise EnvelopeError("invalid_envelope", _reason(exc), top_level_id(payload)) from exc
    except msgspec.DecodeError as exc:
        raise EnvelopeError("invalid_envelope", f"envelope is not valid JSON: {exc}") from exc
    if isinstance(env, MessageIn | EditIn):
        check_body(env.body, limits, env.id)
    elif isinstance(env, CommandIn):
        check_body(env.params, limits, env.id)
    return env


def _reason(exc: msgspec.ValidationError) -> str:
    text = str(exc)
    if "Expected `object`, got" in text and "at `$" not in text:
        return "envelope must be a JSON object"
    if "Missing required field `type`" in text or ("Invalid value" in text and "`$.type`" in text):
        return ("field 'type' must be 'message', 'receipt', 'command', 'edit', 'delete', 'reaction', 'typing'"
                " or 'presence'")
    return text.replace("`$.", "`")


_MAYBE_HUGE = re.compile(rb"[eE][+-]?\d{3}|\d{300}")
"""A number that may be out of a double's range (``1e400``): skipped over as valid JSON, but no JSON
library of a recipient (orjson, for one) could read it back."""


def check_body(body: msgspec.Raw, limits: EnvelopeLimits, client_id: str | None = None) -> None:
    """``EnvelopeError`` unless ``body`` is a JSON object within ``limits`` that every hop can decode
    and encode again. Cheap upper bounds first (brackets and commas counted in the bytes, strings
    bounded by the byte length, no huge exponent); only a body that may break a bound is decoded and
    walked."""
    raw = bytes(body)
    if not raw.startswith(b"{"):
        raise EnvelopeError("invalid_envelope", "body must be a JSON object", client_id)
    opens = raw.count(b"{") + raw.count(b"[")
    commas = raw.count(b",")
    if (opens <= limits.max_depth and len(raw) <= limits.max_string and commas < limits.max_items
            and commas < limits.max_keys and not _MAYBE_HUGE.search(raw)):
        return
    try:
        value = msgspec.json.decode(raw)
    except RecursionError as exc:
        raise EnvelopeError("invalid_envelope", f"body nests deeper than {limits.max_depth} levels",
                            client_id) from exc
    except msgspec.DecodeError as exc:  # a number out of range
        raise EnvelopeError("invalid_envelope", f"body: {exc}", client_id) from exc
    _walk(value, limits, client_id)


def _walk(body: Any, limits: EnvelopeLimits, client_id: str | None) -> None:
    stack: list[tuple[Any, int]] = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if len(value) > limits.max_string:
                raise EnvelopeError("too_large", f"body holds a string of {len(value)} characters; at most "
                                                 f"{limits.max_string} are allowed", client_id)
            continue
        if not isinstance(value, dict | list):
            continue
        if depth > limits.max_depth:
            raise EnvelopeError("invalid_envelope", f"body nests deeper than {limits.max_depth} levels", client_id)
        if isinstance(value, list):
            if len(value) > limits.max_items:
                raise EnvelopeError("too_large", f"body holds an array of {len(value)} items; at most "
                                                 f"{limits.max_items} are allowed", client_id)
            stack.extend((v, depth + 1) for v in value)
        else:
            if len(value) > limits.max_keys:
                raise EnvelopeError("too_large", f"body holds an object of {len(value)} keys; at most "
                                                 f"{limits.max_keys} are allowed", client_id)
            stack.extend((k, depth) for k in value)
            stack.extend((v, depth + 1) for v in value.values())


_TOKEN = re.compile(rb'"((?:[^"\\]|\\.)*)"\s*(:)?|[{}\[\]]')
_ID_VALUE = re.compile(ID_PATTERN.encode())


def top_level_id(payload: bytes) -> str | None:
    """The string ``id`` of a payload's top-level object when it can be read (for answering refusals),
    without decoding the payload (which may nest too deeply to decode)."""
    depth = 0
    key: bytes | None = None
    for m in _TOKEN.finditer(payload):
        token = m.group(0)
        if token[:1] in (b"{", b"["):
            depth += 1
            key = None
        elif token[:1] in (b"}", b"]"):
            depth -= 1
            if depth <= 0:
                return None
        elif depth == 1:
            if m.group(2):
                key = m.group(1)
                continue
            if key == b"id" and _ID_VALUE.fullmatch(m.group(1)):
                return m.group(1).decode()
            key = None
    return None


def client_id_of(payload: bytes) -> str | None:
    """The ``id`` of an outbox payload when it can be read, else None (for answering refusals)."""
    return top_level_id(payload)


def parse_object(payload: bytes, max_payload: int, what: str = "envelope") -> dict[str, Any]:
    """A JSON object of at most ``max_payload`` bytes (a device reading); ``EnvelopeError`` (``too_large``
    or ``invalid_envelope``) naming ``what`` otherwise."""
    if len(payload) > max_payload:
        raise EnvelopeError("too_large", f"{what} of {len(payload)} bytes exceeds the limit of {max_payload}")
    try:
        raw = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError("invalid_envelope", f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise EnvelopeError("invalid_envelope", f"{what} must be a JSON object")
    return raw


# --- outbound -------------------------------------------------------------------------------------

class _Ack(msgspec.Struct, frozen=True, tag_field="type", tag="ack"):
    client_id: str
    id: str
    ts: int


class _Addressed(msgspec.Struct, frozen=True):
    """The head every stored inbox envelope shares (after its ``type``): server ``id``, ``client_id``,
    ``from``, ``to``, ``group``; each kind adds its fields after them, ending with ``ts``."""

    id: str
    client_id: str
    sender: str = msgspec.field(name="from")
    to: str | None = None
    group: str | None = None


class _Message(_Addressed, frozen=True, tag_field="type", tag="message"):
    body: msgspec.Raw = msgspec.Raw(b"{}")
    ts: int = 0


class _Reply(_Addressed, frozen=True, tag_field="type", tag="message"):
    """A ``message`` with ``reply_to`` (before ``body``)."""

    reply_to: str = ""
    body: msgspec.Raw = msgspec.Raw(b"{}")
    ts: int = 0


class _Edit(_Addressed, frozen=True, tag_field="type", tag="edit"):
    target: str = ""
    body: msgspec.Raw = msgspec.Raw(b"{}")
    ts: int = 0


class _Delete(_Addressed, frozen=True, tag_field="type", tag="delete"):
    target: str = ""
    scope: str = msgspec.field(default="everyone", name="for")
    ts: int = 0


class _Reaction(_Addressed, frozen=True, tag_field="type", tag="reaction"):
    target: str = ""
    emoji: str = ""
    remove: bool = False
    ts: int = 0


class _Receipt(msgspec.Struct, frozen=True, tag_field="type", tag="receipt"):
    status: str
    ids: list[str]
    sender: str = msgspec.field(name="from")


class _Error(msgspec.Struct, frozen=True, tag_field="type", tag="error"):
    client_id: str | None
    code: str
    reason: str


_encoder = msgspec.json.Encoder()


def ack_envelope(client_id: str, server_id: str, ts: int) -> bytes:
    """``ack``: the message with ``client_id`` was committed as ``server_id``."""
    return _encoder.encode(_Ack(client_id, server_id, ts))


def message_envelope(server_id: str, client_id: str, sender: str, to: str | None, group: str | None,
                     body: msgspec.Raw, ts: int, reply_to: str | None = None) -> bytes:
    """``message`` as delivered to recipient ``to`` (a group message carries ``group``; ``to`` is None
    only in a fan-out template, which the node completes per member with ``address``); ``reply_to``
    only when the sender gave one."""
    if reply_to is not None:
        return _encoder.encode(_Reply(server_id, client_id, sender, to, group, reply_to, body, ts))
    return _encoder.encode(_Message(server_id, client_id, sender, to, group, body, ts))


def action_envelope(server_id: str, client_id: str, sender: str, to: str | None, group: str | None,
                    action: ActionIn, ts: int) -> bytes:
    """``edit``, ``delete`` or ``reaction`` as delivered (like ``message_envelope``: ``id`` next, ``ts``
    last, ``to`` null in a group's fan-out template), naming the message it acts on as ``target``."""
    if isinstance(action, EditIn):
        return _encoder.encode(_Edit(server_id, client_id, sender, to, group, action.target, action.body, ts))
    if isinstance(action, DeleteIn):
        return _encoder.encode(_Delete(server_id, client_id, sender, to, group, action.target, action.scope, ts))
    return _encoder.encode(_Reaction(server_id, client_id, sender, to, group, action.target, action.emoji,
                                     action.remove, ts))


def receipt_envelope(status: str, ids: list[str], sender: str) -> bytes:
    """``receipt`` telling a message's sender that ``sender`` got (or read) ``ids``."""
    return _encoder.encode(_Receipt(status, ids, sender))


class _Typing(msgspec.Struct, frozen=True, tag_field="type", tag="typing"):
    sender: str = msgspec.field(name="from")
    to: str | None = None
    group: str | None = None
    state: str = "start"


def typing_envelope(sender: str, to: str | None, group: str | None, state: str) -> bytes:
    """``typing``: ``sender`` started (or stopped) typing to ``to`` or in ``group``."""
    return _encoder.encode(_Typing(sender, to, group, state))


class _Presence(msgspec.Struct, frozen=True, tag_field="type", tag="presence"):
    user: str
    state: str
    last_seen: int | None


def presence_envelope(user: str, state: str, last_seen: int | None) -> bytes:
    """``presence``: ``user`` is now ``online``, ``offline`` or ``away`` (since ``last_seen``, ms)."""
    return _encoder.encode(_Presence(user, state, last_seen))


def error_envelope(code: ErrorCode, reason: str, client_id: str | None = None) -> bytes:
    """``error`` answering a refused publish."""
    return _encoder.encode(_Error(client_id, code, reason))


def event_envelope(event: str, **fields: Any) -> dict[str, Any]:
    """``event`` such as ``group_created``; ``fields`` are added as they are (encode with ``encode_event``)."""
    return {"type": "event", "event": event, **fields}


def encode_event(envelope: dict[str, Any]) -> bytes:
    """The JSON bytes of an ``event_envelope``."""
    return orjson.dumps(envelope)


# --- reading inbox envelopes without parsing them -------------------------------------------------

_TYPE_PREFIX = b'{"type":"'
_MESSAGE_PREFIX = b'{"type":"message","id":"'
#: the envelopes that are stored as pending items until a ``delivered`` receipt, each with its server id
_STORED_PREFIXES = tuple(b'{"type":"%s","id":"' % t for t in (b"message", b"edit", b"delete", b"reaction"))
_TO_NULL = b'"to":null'


def envelope_type(envelope: bytes) -> str:
    """The ``type`` of an inbox envelope made by this module ("" when it does not start with one)."""
    if not envelope.startswith(_TYPE_PREFIX):
        return ""
    end = envelope.find(b'"', len(_TYPE_PREFIX))
    return envelope[len(_TYPE_PREFIX):end].decode() if end > 0 else ""


def message_id(envelope: bytes) -> str | None:
    """The server id of a ``message`` envelope, or of an action (``edit``, ``delete``, ``reaction``): what
    stays pending until a ``delivered`` receipt; None for any other envelope."""
    if envelope.startswith(_MESSAGE_PREFIX):
        start = len(_MESSAGE_PREFIX)
    else:
        prefix = next((p for p in _STORED_PREFIXES if envelope.startswith(p)), None)
        if prefix is None:
            return None
        start = len(prefix)
    end = envelope.find(b'"', start)
    return envelope[start:end].decode() if end > 0 else None


def message_ts(envelope: bytes) -> int | None:
    """The ``ts`` of a ``message`` envelope (its last field); None for any other envelope."""
    if not envelope.startswith(_MESSAGE_PREFIX):
        return None
    start = envelope.rfind(b'"ts":')
    try:
        return int(envelope[start + 5:-1]) if start > 0 else None
    except ValueError:
        return None


def address(template: bytes, user: str) -> bytes:
    """A fan-out template (a ``message`` with ``"to":null``) addressed to ``user``. The first ``"to":null``
    is the field: ``type``, ``id``, ``client_id`` and ``from`` come before it and are ids (no quotes)."""
    return template.replace(_TO_NULL, b'"to":' + orjson.dumps(user), 1)
