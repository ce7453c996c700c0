"""The reading format devices publish to ``devices/{id}/telemetry`` (``chatmq.core.readings``)."""

from __future__ import annotations

import orjson
import pytest

from chatmq.core.envelopes import EnvelopeError
from chatmq.core.readings import MAX_FIELDS, MIN_TS, Reading, parse_reading

NOW = 1_800_000_000_000


def parse(payload: object, max_payload: int = 65536) -> Reading:
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return parse_reading(raw, max_payload, now=NOW)


def refused(payload: object, max_payload: int = 65536) -> EnvelopeError:
    with pytest.raises(EnvelopeError) as info:
        parse(payload, max_payload)
    return info.value


def test_numbers_and_booleans_become_floats() -> None:
    reading = parse({"temp": 21.5, "count": 3, "door_open": True, "alarm": False})
    assert reading == Reading({"temp": 21.5, "count": 3.0, "door_open": 1.0, "alarm": 0.0}, None)
    assert all(type(v) is float for v in reading.fields.values())


def test_ts_is_kept_in_milliseconds() -> None:
    assert parse({"temp": 1, "ts": NOW - 5000}).ts == NOW - 5000
    assert parse({"temp": 1, "ts": MIN_TS}).ts == MIN_TS
    assert parse({"temp": 1, "ts": NOW + 60_000}).ts == NOW + 60_000  # a clock a minute ahead is fine


@pytest.mark.parametrize(("payload", "reason"), [
    (b"not json", "reading is not valid JSON"),
    (b"[1, 2]", "reading must be a JSON object"),
    (b"21.5", "reading must be a JSON object"),
    ({}, "reading has no fields"),
    ({"ts": NOW}, "reading has no fields"),
    ({"temp": "warm"}, "field 'temp' must be a number or a boolean, not a string"),
    ({"temp": None}, "field 'temp' must be a number or a boolean, not null"),
    ({"temp": [1]}, "field 'temp' must be a number or a boolean, not an array"),
    ({"temp": {"c": 1}}, "field 'temp' must be a number or a boolean, not an object"),
    ({"1temp": 1}, "field name '1temp' is not allowed"),
    ({"te mp": 1}, "field name 'te mp' is not allowed"),
    ({"temp.c": 1}, "field name 'temp.c' is not allowed"),
    ({"": 1}, "field name '' is not allowed"),
    ({"t" * 65: 1}, "is not allowed"),
    ({"temp": 1, "ts": 1.5}, "'ts' must be an integer (milliseconds since the epoch), not a float"),
    ({"temp": 1, "ts": "2026-01-01"}, "'ts' must be an integer"),
    ({"temp": 1, "ts": True}, "'ts' must be an integer"),
    ({"temp": 1, "ts": NOW // 1000}, "out of range"),  # seconds, not milliseconds
    ({"temp": 1, "ts": NOW + 3_600_000}, "out of range"),  # an hour in the future
    ({"temp": 1, "ts": -1}, "out of range"),
])
def test_invalid_readings_are_refused_with_a_reason(payload: object, reason: str) -> None:
    exc = refused(payload)
    assert exc.code == "invalid_envelope"
    assert reason in exc.reason


def test_non_finite_numbers_are_refused() -> None:
    exc = refused(b'{"temp": NaN}')
    assert exc.code == "invalid_envelope"
    exc = refused(b'{"temp": 1e999}')
    assert exc.code == "invalid_envelope"


def test_too_many_fields_and_too_many_bytes_are_too_large() -> None:
    assert parse({f"f{i}": i for i in range(MAX_FIELDS)}).fields["f0"] == 0.0
    exc = refused({f"f{i}": i for i in range(MAX_FIELDS + 1)})
    assert exc.code == "too_large"
    assert f"at most {MAX_FIELDS}" in exc.reason
    exc = refused({"temp": 1.0}, max_payload=5)
    assert exc.code == "too_large"
    assert "exceeds the limit of 5" in exc.reason
