"""``PushRecord``: one push notification owed to one offline user, as carried on ``chat.push``.

The record is JSON, keyed by the user (so one user's pushes stay in order)::

    {"user": "<recipient>", "kind": "message"|"event", "id": "<server id>"|null, "from": "<user id>"|null,
     "conversation": "<peer user id or group id>", "group": true|false, "event": "<event name>"|null,
     "preview": "<start of the text>"|null}

``conversation`` is the conversation as the recipient names it (``GET /conversations/{id}``):
the sender for a 1:1 message, the group for a group message or event. ``preview`` is set only when
``push_preview`` is on. ``data()`` is the FCM data payload of the app contract (docs/contract.md):
every value a string, absent keys left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson

from chatmq.core.errors import ChatMQError

Kind = Literal["message", "event"]


class BadPushRecord(ChatMQError):
    """A ``chat.push`` record that is not a push record (skipped, never retried)."""


@dataclass(frozen=True, slots=True)
class PushRecord:
    user: str
    kind: Kind
    conversation: str
    group: bool
    id: str | None = None
    sender: str | None = None
    event: str | None = None
    preview: str | None = None

    @classmethod
    def for_message(cls, user: str, env: dict[str, Any], preview_length: int | None) -> PushRecord:
        """The push for ``user`` of inbox ``message`` envelope ``env``; a preview of its ``body.text`` of at
        most ``preview_length`` characters (an ellipsis marks a cut) when ``preview_length`` is not None."""
        group = env.get("group")
        return cls(user, "message", str(group or env["from"]), group is not None, str(env["id"]), str(env["from"]),
                   preview=_preview(env.get("body"), preview_length))

    @classmethod
    def for_event(cls, user: str, env: dict[str, Any]) -> PushRecord | None:
        """The push for ``user`` of a group ``event`` envelope ``env``; None for anything else (receipts)."""
        if env.get("type") != "event":
            return None
        group = env.get("group_id")
        if group is None and isinstance(env.get("group"), dict):  # group_created carries the whole group
            group = env["group"].get("group_id")
        if not isinstance(group, str):
            return None
        by = env.get("by")
        return cls(user, "event", group, True, sender=by if isinstance(by, str) else None, event=str(env["event"]))

    def to_json(self) -> bytes:
        return orjson.dumps({"user": self.user, "kind": self.kind, "id": self.id, "from": self.sender,
                             "conversation": self.conversation, "group": self.group, "event": self.event,
                             "preview": self.preview})

    @classmethod
    def from_json(cls, raw: bytes) -> PushRecord:
        """Parse a ``chat.push`` record; ``BadPushRecord`` saying why when it is not one."""
        try:
            item = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise BadPushRecord(f"not JSON: {exc}") from exc
        if not isinstance(item, dict):
            raise BadPushRecord("not a JSON object")
        user, kind, conv, group = item.get("user"), item.get("kind"), item.get("conversation"), item.get("group")
        if not (isinstance(user, str) and user and kind in ("message", "event") and isinstance(conv, str) and conv
                and isinstance(group, bool)):
            raise BadPushRecord("needs user, kind (message|event), conversation and group")
        optional = {k: item.get(k) for k in ("id", "from", "event", "preview")}
        if any(v is not None and not isinstance(v, str) for v in optional.values()):
            raise BadPushRecord("id, from, event and preview must be strings or null")
        if kind == "message" and not (optional["id"] and optional["from"]):
            raise BadPushRecord("a message push needs id and from")
        return cls(user, kind, conv, group, optional["id"], optional["from"], optional["event"], optional["preview"])

    def data(self) -> dict[str, str]:
        """The data payload every provider sends (docs/contract.md, "Push notifications")."""
        data = {"type": self.kind, "conversation": self.conversation, "group": "true" if self.group else "false"}
        for key, value in (("id", self.id), ("from", self.sender), ("event", self.event), ("preview", self.preview)):
            if value is not None:
                data[key] = value
        return data


def _preview(body: Any, length: int | None) -> str | None:
    text = body.get("text") if isinstance(body, dict) else None
    if length is None or not isinstance(text, str) or not text:
        return None
    return text if len(text) <= length else text[: length - 1] + "…"
