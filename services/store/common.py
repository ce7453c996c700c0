"""Small helpers both store implementations share."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar, cast

import orjson

T = TypeVar("T")


def json_object(text: str) -> dict[str, Any]:
    """The JSON object of a stored body (bodies and envelopes are stored as JSON text, the bytes made at
    accept time: exact round trips)."""
    return cast(dict[str, Any], orjson.loads(text))


def chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size``."""
    for i in range(0, len(items), size):
        yield items[i : i + size]
