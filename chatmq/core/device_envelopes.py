"""The envelopes of a device's MQTT topics (docs/contract.md, "Devices"): what a device publishes on
``devices/{id}/outbox`` (validated here, once, at the node) and what it reads on ``devices/{id}/inbox``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from chatmq.core.envelopes import EnvelopeError, Inbound


class ShadowReport(Inbound, frozen=True, tag_field="type", tag="shadow_report"):
    """``state`` merged into the shadow's reported state (``null`` deletes a key); ``version``, when
    given, must be the shadow's current version."""

    state: dict[str, Any]
    version: int | None = None


class ShadowGet(Inbound, frozen=True, tag_field="type", tag="shadow_get"):
    """Asks for the whole shadow (answered with ``shadow``)."""


class CommandResult(Inbound, frozen=True, tag_field="type", tag="command_result"):
    """The device's answer to command ``id``: ``ok`` with a ``result``, or not with an ``error``."""

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    ok: bool
    result: dict[str, Any] | None = None
    error: Annotated[str, msgspec.Meta(max_length=1024)] | None = None


class JobUpdate(Inbound, frozen=True, tag_field="type", tag="job_update"):
    """Where job ``id`` stands on the device: ``in_progress`` (with ``progress``, 0-100), ``succeeded`` or
    ``failed``, with optional ``details``."""

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    status: Literal["in_progress", "succeeded", "failed"]
    progress: Annotated[int, msgspec.Meta(ge=0, le=100)] | None = None
    details: dict[str, Any] | None = None


DeviceOutboxEnvelope = ShadowReport | ShadowGet | CommandResult | JobUpdate

_decoder = msgspec.json.Decoder(DeviceOutboxEnvelope)
_encoder = msgspec.json.Encoder()


def parse_device_outbox(payload: bytes, max_payload: int) -> DeviceOutboxEnvelope:
    """Validate one ``devices/{id}/outbox`` payload; ``EnvelopeError`` (``too_large`` or
    ``invalid_envelope``) otherwise. The shadow's own bounds are checked where it is changed."""
    if len(payload) > max_payload:
        raise EnvelopeError("too_large", f"envelope of {len(payload)} bytes exceeds the limit of {max_payload}")
    try:
        return _decoder.decode(payload)
    except RecursionError as exc:
        raise EnvelopeError("invalid_envelope", "envelope nests too deep") from exc
    except msgspec.ValidationError as exc:
        text = str(exc)
        if "`$.type`" in text or "Missing required field `type`" in text:
            text = "field 'type' must be 'shadow_report', 'shadow_get', 'command_result' or 'job_update'"
        raise EnvelopeError("invalid_envelope", text.replace("`$.", "`")) from exc
    except msgspec.DecodeError as exc:
        raise EnvelopeError("invalid_envelope", f"envelope is not valid JSON: {exc}") from exc


def shadow_envelope(document: dict[str, Any]) -> bytes:
    """``shadow``: the whole document (``desired``, ``reported``, ``delta``, ``version``, ``updated_at``)."""
    return _encoder.encode({"type": "shadow", **document})


def shadow_delta_envelope(version: int, state: dict[str, Any]) -> bytes:
    """``shadow_delta``: the desired keys that differ from the reported ones."""
    return _encoder.encode({"type": "shadow_delta", "version": version, "state": state})



def command_envelope(command_id: str, name: str, params: dict[str, Any], expires_at: int) -> bytes:
    """``command``: run ``name`` with ``params`` and answer with ``command_result`` before ``expires_at``
    (ms); a redelivery carries the same ``id``."""
    return _encoder.encode({"type": "command", "id": command_id, "name": name, "params": params,
                            "expires_at": expires_at})


def user_command_result_envelope(client_id: str, command_id: str, device: str, status: str,
                                 result: dict[str, Any] | None, error: str | None) -> bytes:
    """``command_result`` in the inbox of the user who sent command ``client_id`` over MQTT: ``status``
    ``succeeded``, ``failed`` or ``expired`` (``ok`` true only when it succeeded)."""
    return _encoder.encode({"type": "command_result", "id": client_id, "command_id": command_id, "device": device,
                            "status": status, "ok": status == "succeeded", "result": result, "error": error})


def job_envelope(job_id: str, document: dict[str, Any]) -> bytes:
    """``job``: carry out ``document``, reporting with ``job_update``; a redelivery carries the same ``id``."""
    return _encoder.encode({"type": "job", "id": job_id, "document": document})
