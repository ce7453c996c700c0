"""Small helpers both store implementations share."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

import msgspec
import orjson

from chatmq.services.store.base import Route

T = TypeVar("T")


def unique(items: Iterable[T]) -> list[T]:
    """``items`` without repeats, first occurrence order kept."""
    return list(dict.fromkeys(items))


@dataclass(frozen=True, slots=True)
class Joining:
    """A group member as written: ``position`` is its place in the group's order (increasing as members
    join; members who join together share ``joined_at``)."""

    user_id: str
    role: Literal["admin", "member"]
    joined_at: int
    position: int


def founders(creator: str, members: Iterable[str], joined_at: int) -> list[Joining]:
    """The members of a new group: ``creator`` (admin) first, then ``members`` in the order given (repeats
    and the creator skipped), all joined at ``joined_at``."""
    others = [m for m in unique(members) if m != creator]
    return [Joining(creator, "admin", joined_at, 0),
            *(Joining(m, "member", joined_at, 1 + i) for i, m in enumerate(others))]


def newcomers(present: Iterable[str], wanted: Iterable[str], last_position: int, joined_at: int) -> list[Joining]:
    """Those of ``wanted`` not ``present`` (repeats skipped), in the order given, as plain members after
    ``last_position``, all joined at ``joined_at``."""
    have = set(present)
    new = [u for u in unique(wanted) if u not in have]
    return [Joining(u, "member", joined_at, last_position + 1 + i) for i, u in enumerate(new)]


def successor(remaining: Iterable[tuple[str, str]]) -> str | None:
    """Who becomes admin when a member left: of ``remaining`` ``(user_id, role)`` pairs, in the group's
    order, the first when none is admin; None when one is (or none remain)."""
    members = list(remaining)
    if not members or any(role == "admin" for _, role in members):
        return None
    return members[0][0]


def json_object(text: str) -> dict[str, Any]:
    """The JSON object of a stored body (bodies and envelopes are stored as JSON text, the bytes made at
    accept time: exact round trips)."""
    return cast(dict[str, Any], orjson.loads(text))


def body_text(body: bytes | Mapping[str, Any]) -> str:
    """A message body as stored: the client's JSON bytes as text (a new message), or a history
    body (an imported one) encoded."""
    return body.decode() if isinstance(body, bytes) else orjson.dumps(body).decode()


class _Text(msgspec.Struct):
    text: Any = None


_text_decoder = msgspec.json.Decoder(_Text)


def text_of(body: bytes | Mapping[str, Any]) -> str | None:
    """The ``text`` string of a message body, if it has one (what search matches). Only a body whose bytes
    name a ``"text"`` key is decoded."""
    if isinstance(body, bytes):
        if b'"text"' not in body:
            return None
        try:
            value = _text_decoder.decode(body).text
        except (msgspec.DecodeError, RecursionError):
            return None
    else:
        value = body.get("text")
    return value if isinstance(value, str) else None


def chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size``."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


def held_route(user_id: str, server_id: str, envelope: str) -> Route:
    """The route of the pending ``message`` item ``server_id`` held by ``user_id``, from its stored
    inbox envelope (``from``, ``to``, ``group``): a group copy was for the group, a sender's own copy
    (for its other devices) for its recipient, any other for the user."""
    env = json_object(envelope)
    group, to = env.get("group"), env.get("to")
    return route_of(user_id, server_id, str(env["from"]), None if to is None else str(to),
                    None if group is None else str(group))


def route_of(user_id: str, server_id: str, sender: str, to: str | None, group: str | None) -> Route:
    """``held_route`` from the envelope's ``from``, ``to`` and ``group`` (a store that reads them out of
    the stored envelope itself, as SQLite's ``->>`` does, without parsing it in Python)."""
    if group is not None:
        return Route(server_id, sender, None, group)
    return Route(server_id, sender, to if sender == user_id and to else user_id, None)


def in_order(ids: Sequence[str], routes: Iterable[Route]) -> list[Route]:
    """``routes`` in the order of ``ids`` (each id once)."""
    by_id = {r.server_id: r for r in routes}
    return [by_id[i] for i in ids if i in by_id]
