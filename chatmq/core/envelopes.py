"""The JSON envelopes of the public contract (see docs/contract.md).

Inbound envelopes (client → outbox) are parsed by ``parse_outbox``, which raises
``EnvelopeError`` carrying the contract's error ``code`` and a human ``reason``.
Outbound envelopes (server → inbox) are built by the ``*_envelope`` functions as
plain dicts, serialised with ``dumps``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
ErrorCode = Literal[
    "invalid_envelope", "unknown_recipient", "not_member", "too_large", "rate_limited", "forbidden"
]


class EnvelopeError(ValueError):
    """An envelope the server refuses, with the contract's error code."""

    def __init__(self, code: ErrorCode, reason: str, client_id: str | None = None) -> None:
        super().__init__(reason)
        self.code: ErrorCode = code
        self.reason = reason
        self.client_id = client_id


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class MessageIn(_Strict):
    """``{"type":"message","id":…,"to"|"group":…,"body":{…}}``."""

    type: Literal["message"]
    id: Annotated[str, Field(pattern=ID_PATTERN)]
    to: Annotated[str, Field(pattern=ID_PATTERN)] | None = None
    group: Annotated[str, Field(pattern=ID_PATTERN)] | None = None
    body: dict[str, Any]

    @model_validator(mode="after")
    def _one_target(self) -> MessageIn:
        if (self.to is None) == (self.group is None):
            raise ValueError("exactly one of 'to' and 'group' is required")
        return self


class ReceiptIn(_Strict):
    """``{"type":"receipt","status":"delivered"|"read","ids":[…]}``."""

    type: Literal["receipt"]
    status: Literal["delivered", "read"]
    ids: Annotated[list[Annotated[str, Field(pattern=ID_PATTERN)]], Field(min_length=1, max_length=1000)]


OutboxEnvelope = Annotated[MessageIn | ReceiptIn, Field(discriminator="type")]
_outbox_adapter: TypeAdapter[MessageIn | ReceiptIn] = TypeAdapter(OutboxEnvelope)


def parse_object(payload: bytes, max_payload: int, what: str = "envelope") -> dict[str, Any]:
    """A JSON object of at most ``max_payload`` bytes; ``EnvelopeError`` (``too_large`` or
    ``invalid_envelope``) naming ``what`` otherwise."""
    if len(payload) > max_payload:
        raise EnvelopeError("too_large", f"{what} of {len(payload)} bytes exceeds the limit of {max_payload}")
    try:
        raw = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError("invalid_envelope", f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise EnvelopeError("invalid_envelope", f"{what} must be a JSON object")
    return raw


def parse_outbox(payload: bytes, max_payload: int) -> MessageIn | ReceiptIn:
    """Parse one outbox payload; raise ``EnvelopeError`` with code ``too_large`` or ``invalid_envelope``."""
    raw = parse_object(payload, max_payload)
    client_id = raw["id"] if isinstance(raw.get("id"), str) else None
    if raw.get("type") not in ("message", "receipt"):
        raise EnvelopeError("invalid_envelope", "field 'type' must be 'message' or 'receipt'", client_id)
    try:
        return _outbox_adapter.validate_python(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"][1:]) or "envelope"
        raise EnvelopeError("invalid_envelope", f"{where}: {err['msg']}", client_id) from exc


def client_id_of(payload: bytes) -> str | None:
    """The ``id`` of an outbox payload when it can be read, else None (for answering refusals)."""
    try:
        raw = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    value = raw.get("id") if isinstance(raw, dict) else None
    return value if isinstance(value, str) else None


def dumps(envelope: dict[str, Any]) -> bytes:
    """Serialise an envelope to compact JSON bytes."""
    return orjson.dumps(envelope)


def loads(payload: bytes) -> Any:
    """Parse JSON bytes (no validation)."""
    return orjson.loads(payload)


def ack_envelope(client_id: str, server_id: str, ts: int) -> dict[str, Any]:
    """``ack``: the message with ``client_id`` was committed as ``server_id``."""
    return {"type": "ack", "client_id": client_id, "id": server_id, "ts": ts}


def message_envelope(
    server_id: str, client_id: str, sender: str, to: str | None, group: str | None, body: dict[str, Any], ts: int
) -> dict[str, Any]:
    """``message`` as delivered to recipient ``to`` (a group message carries ``group``; ``to`` is None
    only in a fan-out template, which the node completes per member)."""
    return {
        "type": "message", "id": server_id, "client_id": client_id, "from": sender,
        "to": to, "group": group, "body": body, "ts": ts,
    }


def receipt_envelope(status: str, ids: list[str], sender: str) -> dict[str, Any]:
    """``receipt`` telling a message's sender that ``sender`` got (or read) ``ids``."""
    return {"type": "receipt", "status": status, "ids": ids, "from": sender}


def event_envelope(event: str, **fields: Any) -> dict[str, Any]:
    """``event`` such as ``group_created``; ``fields`` are added as they are."""
    return {"type": "event", "event": event, **fields}


def error_envelope(code: ErrorCode, reason: str, client_id: str | None = None) -> dict[str, Any]:
    """``error`` answering a refused publish."""
    return {"type": "error", "client_id": client_id, "code": code, "reason": reason}
