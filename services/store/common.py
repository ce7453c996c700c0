"""Small helpers both store implementations share."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar, cast

import orjson

T = TypeVar("T")


def json_text(value: Mapping[str, Any]) -> str:
    """A JSON object as compact text (bodies and envelopes are stored as text: exact round trips)."""
    return orjson.dumps(value).decode()


def json_object(text: str) -> dict[str, Any]:
    """The JSON object stored by ``json_text``."""
    return cast(dict[str, Any], orjson.loads(text))


def chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size``."""
    for i in range(0, len(items), size):
        yield items[i : i + size]
