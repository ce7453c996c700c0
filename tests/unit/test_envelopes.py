"""Outbox envelope parsing and the error codes of the contract."""

import pytest

from chatmq.core.envelopes import EnvelopeError, MessageIn, ReceiptIn, parse_outbox


def test_message_to_user() -> None:
    env = parse_outbox(b'{"type":"message","id":"c1","to":"u1","body":{"text":"hi"}}', 1000)
    assert isinstance(env, MessageIn)
    assert (env.id, env.to, env.group, env.body) == ("c1", "u1", None, {"text": "hi"})


def test_receipt() -> None:
    env = parse_outbox(b'{"type":"receipt","status":"read","ids":["a","b"]}', 1000)
    assert isinstance(env, ReceiptIn)
    assert env.ids == ["a", "b"]


@pytest.mark.parametrize(("payload", "code", "client_id"), [
    (b"not json", "invalid_envelope", None),
    (b"[1,2]", "invalid_envelope", None),
    (b'{"type":"wave"}', "invalid_envelope", None),
    (b'{"type":"message","id":"c2","to":5,"body":{}}', "invalid_envelope", "c2"),
    (b'{"type":"message","id":"c3","to":"u1","body":"text"}', "invalid_envelope", "c3"),
    (b'{"type":"message","id":"c4","to":"u1","group":"g1","body":{}}', "invalid_envelope", "c4"),
    (b'{"type":"message","id":"c5","body":{}}', "invalid_envelope", "c5"),
    (b'{"type":"receipt","status":"seen","ids":["a"]}', "invalid_envelope", None),
    (b'{"type":"receipt","status":"read","ids":[]}', "invalid_envelope", None),
])
def test_refusals(payload: bytes, code: str, client_id: str | None) -> None:
    with pytest.raises(EnvelopeError) as info:
        parse_outbox(payload, 1000)
    assert info.value.code == code
    assert info.value.client_id == client_id
    assert info.value.reason


def test_too_large() -> None:
    with pytest.raises(EnvelopeError) as info:
        parse_outbox(b"x" * 101, 100)
    assert info.value.code == "too_large"


def test_client_id_of() -> None:
    from chatmq.core.envelopes import client_id_of

    assert client_id_of(b'{"id":"c9","type":"message"}') == "c9"
    assert client_id_of(b'{"id":5}') is None
    assert client_id_of(b"[]") is None
    assert client_id_of(b"\xff") is None
