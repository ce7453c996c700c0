"""Device readings: the payload a device publishes to ``devices/{device_id}/telemetry``.

Pure and I/O-free, so the broker node validates a reading before it reaches the bus.

A reading is a JSON object (at most ``max_payload`` bytes) of at most ``MAX_FIELDS``
fields, each named ``[A-Za-z_][A-Za-z0-9_]{0,63}`` and valued a finite number or a
boolean, with at least one such field; the optional key ``ts`` is the time of the
reading in milliseconds since the Unix epoch (an integer from ``MIN_TS`` — 2000-01-01 —
to ``MAX_SKEW_MS`` past the server's clock). Anything else is refused with
``EnvelopeError``: ``too_large`` for a payload over the limit or too many fields,
``invalid_envelope`` otherwise, with a reason naming the first problem.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from chatmq.core.envelopes import EnvelopeError, parse_object
from chatmq.core.ids import now_ms

MAX_FIELDS = 64
MIN_TS = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_SKEW_MS = 10 * 60 * 1000  # a device clock may run ten minutes ahead
FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


@dataclass(frozen=True, slots=True)
class Reading:
    """A valid reading: ``fields`` as floats (booleans as 1.0/0.0), ``ts`` in ms or None."""

    fields: dict[str, float]
    ts: int | None


def parse_reading(payload: bytes, max_payload: int, now: int | None = None) -> Reading:
    """Validate one telemetry payload (see the module docstring); ``now`` (ms) defaults to the clock."""
    raw = parse_object(payload, max_payload, "reading")
    return validate_reading(raw, now)


def validate_reading(raw: dict[str, Any], now: int | None = None) -> Reading:
    """Validate a decoded reading object; ``EnvelopeError`` naming the first problem."""
    ts = raw.get("ts")
    if ts is not None:
        ts = _timestamp(ts, now_ms() if now is None else now)
    names = [k for k in raw if k != "ts"]
    if len(names) > MAX_FIELDS:
        raise EnvelopeError("too_large", f"reading has {len(names)} fields; at most {MAX_FIELDS} are allowed")
    if not names:
        raise EnvelopeError("invalid_envelope", 'reading has no fields: send at least one number, e.g. {"temp": 21.5}')
    fields: dict[str, float] = {}
    for name in names:
        if not FIELD_NAME.fullmatch(name):
            raise EnvelopeError("invalid_envelope", f"field name {name[:80]!r} is not allowed: "
                                                    "use letters, digits and _ (at most 64, not starting with a digit)")
        fields[name] = _value(name, raw[name])
    return Reading(fields, ts)


def _value(name: str, value: Any) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int):
        return float(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise EnvelopeError("invalid_envelope", f"field {name!r} is not a finite number")
        return value
    raise EnvelopeError("invalid_envelope", f"field {name!r} must be a number or a boolean, "
                                            f"not {_json_type(value)}")


def _timestamp(ts: Any, now: int) -> int:
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise EnvelopeError("invalid_envelope", f"'ts' must be an integer (milliseconds since the epoch), "
                                                f"not {_json_type(ts)}")
    if ts < MIN_TS or ts > now + MAX_SKEW_MS:
        raise EnvelopeError("invalid_envelope", f"'ts' {ts} is out of range: milliseconds since the epoch, "
                                                "from the year 2000 to ten minutes ahead of the server's clock")
    return ts


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "a float" if isinstance(value, float) else type(value).__name__
