"""Building the ``PushRecord`` (``chatmq.core.records``) owed to one offline user for an inbox envelope.

``conversation`` is the conversation as the recipient names it (``GET /conversations/{id}``): the
sender for a 1:1 message, the group for a group message or event. ``preview`` is set only when
``push_preview`` is on. The envelope is the JSON bytes made at accept time: it is decoded here only
for offline recipients, and only when a push provider is configured. ``PushRecord.data()`` is the
data payload of the app contract (docs/contract.md).
"""

from __future__ import annotations

from typing import Any

import msgspec

from chatmq.core.records import PUSHES, BadRecord, PushRecord

__all__ = ["PUSHES", "BadRecord", "PushRecord", "for_event", "for_message"]


class _MessageView(msgspec.Struct, frozen=True):
    id: str
    sender: str = msgspec.field(name="from")
    group: str | None = None
    body: msgspec.Raw = msgspec.Raw(b"{}")


class _EventView(msgspec.Struct, frozen=True):
    type: str
    event: str = ""
    group_id: Any = None
    group: Any = None
    by: Any = None


_message_decoder = msgspec.json.Decoder(_MessageView)
_event_decoder = msgspec.json.Decoder(_EventView)


def for_message(user: str, env: bytes, preview_length: int | None) -> PushRecord:
    """The push for ``user`` of inbox ``message`` envelope ``env``; a preview of its ``body.text`` of at
    most ``preview_length`` characters (an ellipsis marks a cut) when ``preview_length`` is not None."""
    view = _message_decoder.decode(env)
    preview = None if preview_length is None else _preview(msgspec.json.decode(view.body), preview_length)
    return PushRecord(user, "message", view.group or view.sender, view.group is not None, view.id, view.sender,
                      preview=preview)


def for_event(user: str, env: bytes) -> PushRecord | None:
    """The push for ``user`` of a group ``event`` envelope ``env``; None for anything else (receipts)."""
    if not env.startswith(b'{"type":"event"'):
        return None
    view = _event_decoder.decode(env)
    group = view.group_id
    if group is None and isinstance(view.group, dict):  # group_created carries the whole group
        group = view.group.get("group_id")
    if not isinstance(group, str):
        return None
    by = view.by if isinstance(view.by, str) else None
    return PushRecord(user, "event", group, True, sender=by, event=view.event)


def _preview(body: Any, length: int) -> str | None:
    text = body.get("text") if isinstance(body, dict) else None
    if not isinstance(text, str) or not text:
        return None
    return text if len(text) <= length else text[: length - 1] + "…"
