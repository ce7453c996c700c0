"""Typed records of the REST answers the SDK's social verbs return (``ChatClient.contact_list``,
``conversations``, ``sessions``, ``presence_of``, ...), decoded once from the server's JSON: the shapes of
``docs/contract.md``, unknown members ignored (the contract is extended, never changed)."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import msgspec

S = TypeVar("S", bound=msgspec.Struct)


class Contact(msgspec.Struct, frozen=True):
    """One entry of the caller's contact list (``added_at`` in ms)."""

    user_id: str
    added_at: int


class ContactSync(msgspec.Struct, frozen=True):
    """``POST /contacts/sync``: the usernames and phone numbers (E.164) that are users, with their ids."""

    registered: dict[str, str] = {}
    phones: dict[str, str] = {}


class Session(msgspec.Struct, frozen=True):
    """One device (MQTT client id) of the caller: first and latest connect (ms), connected now or not."""

    client_id: str
    first_seen: int
    last_seen: int
    online: bool


class Presence(msgspec.Struct, frozen=True):
    """A user's presence as the caller may see it (``state`` and ``last_seen`` None otherwise)."""

    user: str
    state: Literal["online", "offline", "away"] | None
    last_seen: int | None


class LastMessage(msgspec.Struct, frozen=True):
    """A conversation's latest message, as it is now (its last edit, or a tombstone)."""

    id: str
    sender: str = msgspec.field(name="from")
    body: dict[str, Any] = {}
    ts: int = 0
    edited_at: int | None = None
    deleted: bool = False


class GroupRef(msgspec.Struct, frozen=True):
    group_id: str
    name: str


class Conversation(msgspec.Struct, frozen=True):
    """One conversation of the caller: ``id`` is the peer's user id or the group id (what history takes)."""

    id: str
    kind: Literal["direct", "group"]
    peer: str | None
    group: GroupRef | None
    last_message: LastMessage
    unread: int
    muted: bool


class ConversationPage(msgspec.Struct, frozen=True):
    """Newest activity first; ``next_before`` is the ``before`` of the next page (None: the last)."""

    conversations: list[Conversation]
    next_before: str | None = None


def decode(data: object, kind: type[S]) -> S:
    """``data`` (a parsed JSON answer) as a ``kind``; ``msgspec.ValidationError`` when it has not its shape."""
    return msgspec.convert(data, type=kind)


class ContactList(msgspec.Struct, frozen=True):
    """``GET /contacts``."""

    contacts: list[Contact]


class BlockList(msgspec.Struct, frozen=True):
    """``GET /blocks``."""

    blocked: list[str]


class SessionList(msgspec.Struct, frozen=True):
    """``GET /users/me/sessions``."""

    sessions: list[Session]


class PresenceList(msgspec.Struct, frozen=True):
    """``GET /presence``."""

    presence: list[Presence]
