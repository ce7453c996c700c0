"""Push records (``chat.push``), the data payload apps get, and the provider helpers (collapse key,
Retry-After, HTTP status outcomes)."""

from __future__ import annotations

import email.utils
from typing import Any

import msgspec
import orjson
import pytest

from chatmq.core.envelopes import encode_event, event_envelope, message_envelope, receipt_envelope
from chatmq.core.records import encode
from chatmq.services.push.provider import Notification, Result, collapse_key, outcome_of_status, retry_after
from chatmq.services.push.records import PUSHES, BadRecord, PushRecord, for_event, for_message


def _body(value: Any) -> msgspec.Raw:
    return msgspec.Raw(orjson.dumps(value))


def _direct(text: Any = "hello there") -> bytes:
    return message_envelope("s1", "c1", "ualice", "ubob", None, _body({"text": text}), 1)


def test_direct_message_push_names_the_sender_as_conversation_and_carries_no_text() -> None:
    record = for_message("ubob", _direct(), None)
    assert record == PushRecord("ubob", "message", "ualice", False, "s1", "ualice")
    assert record.data() == {"type": "message", "id": "s1", "from": "ualice", "conversation": "ualice",
                             "group": "false"}


def test_group_message_push_names_the_group_as_conversation() -> None:
    env = message_envelope("s2", "c2", "ualice", None, "gfriends", _body({"text": "hi all"}), 1)
    data = for_message("ucarol", env, None).data()
    assert data == {"type": "message", "id": "s2", "from": "ualice", "conversation": "gfriends", "group": "true"}


@pytest.mark.parametrize(("text", "length", "preview"), [
    ("hello there", 100, "hello there"),
    ("hello there", 11, "hello there"),
    ("hello there", 6, "hello…"),
    ("", 10, None),
    (42, 10, None),
])
def test_preview_is_the_start_of_the_text_when_asked_for(text: Any, length: int, preview: str | None) -> None:
    record = for_message("ubob", _direct(text), length)
    assert record.preview == preview
    assert record.data().get("preview") == preview


def test_a_body_without_text_has_no_preview() -> None:
    env = message_envelope("s1", "c1", "ualice", "ubob", None, _body({"image": "x.png"}), 1)
    assert for_message("ubob", env, 50).preview is None


def test_group_events_become_event_pushes_and_receipts_none() -> None:
    added = encode_event(event_envelope("member_added", group_id="g1", members=["u2"], by="u1"))
    assert for_event("u2", added) == PushRecord("u2", "event", "g1", True, sender="u1",
                                                           event="member_added")
    created = encode_event(event_envelope("group_created", group={"group_id": "g2", "name": "x"}, by="u1"))
    assert for_event("u3", created) == PushRecord("u3", "event", "g2", True, sender="u1",
                                                             event="group_created")
    assert for_event("u1", receipt_envelope("read", ["s1"], "u2")) is None
    assert for_event("u3", created).data() == {  # type: ignore[union-attr]
        "type": "event", "event": "group_created", "from": "u1", "conversation": "g2", "group": "true"}


def test_records_round_trip_through_json() -> None:
    for record in (for_message("ubob", _direct(), 5),
                   PushRecord("u2", "event", "g1", True, sender=None, event="group_renamed")):
        assert PUSHES.decode(encode(record)) == record


@pytest.mark.parametrize("raw", [
    b"not json",
    b"[1, 2]",
    orjson.dumps({"kind": "message", "conversation": "u1", "group": False, "id": "s", "from": "u1"}),
    orjson.dumps({"user": "u", "kind": "other", "conversation": "u1", "group": False}),
    orjson.dumps({"user": "u", "kind": "message", "conversation": "u1", "group": "no", "id": "s", "from": "u1"}),
    orjson.dumps({"user": "u", "kind": "message", "conversation": "u1", "group": False, "from": "u1"}),
    orjson.dumps({"user": "u", "kind": "message", "conversation": "u1", "group": False, "id": "s", "from": "u1",
                  "preview": 5}),
])
def test_bad_records_are_refused_with_a_reason(raw: bytes) -> None:
    with pytest.raises(BadRecord, match=r"\S"):
        PUSHES.decode(raw)


def test_collapse_key_is_the_conversation_or_a_stable_digest_that_fits_every_platform() -> None:
    assert collapse_key("u0123456789abcdef") == "u0123456789abcdef"
    long = collapse_key("g" * 80)
    assert len(long) == 32
    assert long == collapse_key("g" * 80) != collapse_key("g" * 81)
    assert collapse_key("a b/c") != "a b/c"
    note = Notification.of(PushRecord("u", "event", "g1", True, event="x"), 60)
    assert (note.collapse_key, note.ttl, note.urgent) == ("g1", 60, False)


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after("7") == 7.0
    assert retry_after(" 12 ") == 12.0
    assert retry_after(email.utils.formatdate(1000.0 + 30, usegmt=True), now=1000.0) == 30.0
    assert retry_after(email.utils.formatdate(900.0, usegmt=True), now=1000.0) == 0.0
    assert retry_after("soon") is None
    assert retry_after(None) is None


@pytest.mark.parametrize(("status", "header", "result", "after"), [
    (200, None, Result.SENT, None),
    (204, None, Result.SENT, None),
    (429, "3", Result.RETRY, 3.0),
    (500, None, Result.RETRY, None),
    (503, "2", Result.RETRY, 2.0),
    (404, None, Result.INVALID_TOKEN, None),
    (410, None, Result.INVALID_TOKEN, None),
    (400, None, Result.FAILED, None),
    (401, "5", Result.FAILED, None),
])
def test_http_status_outcomes(status: int, header: str | None, result: Result, after: float | None) -> None:
    outcome = outcome_of_status(status, header)
    assert (outcome.result, outcome.retry_after) == (result, after)
