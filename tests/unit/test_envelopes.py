"""Outbox envelope parsing and the error codes of the contract."""

import msgspec
import orjson
import pytest

from chatmq.core.envelopes import (
    DeleteIn,
    EditIn,
    EnvelopeError,
    EnvelopeLimits,
    MessageIn,
    PresenceIn,
    ReactionIn,
    ReceiptIn,
    ack_envelope,
    action_envelope,
    address,
    envelope_type,
    error_envelope,
    message_envelope,
    message_id,
    message_ts,
    parse_outbox,
)


def test_message_to_user() -> None:
    env = parse_outbox(b'{"type":"message","id":"c1","to":"u1","body":{"text":"hi"}}', 1000)
    assert isinstance(env, MessageIn)
    assert (env.id, env.to, env.group, orjson.loads(bytes(env.body))) == ("c1", "u1", None, {"text": "hi"})


def test_receipt() -> None:
    env = parse_outbox(b'{"type":"receipt","status":"read","ids":["a","b"]}', 1000)
    assert isinstance(env, ReceiptIn)
    assert env.ids == ("a", "b")


def test_presence_says_away_or_online_and_nothing_else() -> None:
    assert parse_outbox(b'{"type":"presence","state":"away"}', 1000) == PresenceIn("away")
    assert parse_outbox(b'{"type":"presence","state":"online"}', 1000) == PresenceIn("online")
    with pytest.raises(EnvelopeError) as info:
        parse_outbox(b'{"type":"presence","state":"offline"}', 1000)
    assert (info.value.code, info.value.reason) == ("invalid_envelope", "Invalid enum value 'offline' - at `state`")


def test_an_unknown_type_is_told_every_type_there_is() -> None:
    with pytest.raises(EnvelopeError) as info:
        parse_outbox(b'{"type":"wave"}', 1000)
    assert info.value.reason == ("field 'type' must be 'message', 'receipt', 'command', 'edit', 'delete', 'reaction',"
                                 " 'typing' or 'presence'")


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
    (b'{"type":"edit","id":"a1","target":"s1"}', "invalid_envelope", "a1"),
    (b'{"type":"edit","id":"a2","target":"s1","body":[1]}', "invalid_envelope", "a2"),
    (b'{"type":"delete","id":"a3","target":"s1","for":"them"}', "invalid_envelope", "a3"),
    (b'{"type":"reaction","id":"a4","target":"s1","emoji":""}', "invalid_envelope", "a4"),
    (b'{"type":"reaction","id":"a5","target":"s1","emoji":"' + b"x" * 33 + b'"}', "invalid_envelope", "a5"),
    (b'{"type":"reaction","id":"a6","target":"no spaces","emoji":"x"}', "invalid_envelope", "a6"),
    (b'{"type":"message","id":"c6","to":"u1","body":{},"reply_to":7}', "invalid_envelope", "c6"),
])
def test_refusals(payload: bytes, code: str, client_id: str | None) -> None:
    with pytest.raises(EnvelopeError) as info:
        parse_outbox(payload, 1000)
    assert info.value.code == code
    assert info.value.client_id == client_id
    assert info.value.reason


def test_message_actions_and_replies() -> None:
    edit = parse_outbox(b'{"type":"edit","id":"a1","target":"s1","body":{"text":"new"}}', 1000)
    assert isinstance(edit, EditIn)
    assert (edit.id, edit.target, orjson.loads(bytes(edit.body))) == ("a1", "s1", {"text": "new"})
    assert parse_outbox(b'{"type":"delete","id":"a2","target":"s1","for":"me"}', 1000) == DeleteIn("a2", "s1", "me")
    assert parse_outbox('{"type":"reaction","id":"a3","target":"s1","emoji":"👍🏽"}'.encode(), 1000) == ReactionIn(
        "a3", "s1", "👍🏽", remove=False)
    reply = parse_outbox(b'{"type":"message","id":"c1","group":"g1","body":{},"reply_to":"s1"}', 1000)
    assert isinstance(reply, MessageIn)
    assert reply.reply_to == "s1"


def test_an_edit_body_is_bounded_as_a_message_body() -> None:
    with pytest.raises(EnvelopeError) as info:
        parse_outbox(b'{"type":"edit","id":"a1","target":"s1","body":{"t":"' + b"x" * 40 + b'"}}',
                     EnvelopeLimits(max_string=32))
    assert (info.value.code, info.value.client_id) == ("too_large", "a1")


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


# --- bounds, checked before anything is stored or acked -----------------------------------------

LIMITS = EnvelopeLimits(max_payload=64 * 1024, max_depth=4, max_string=10, max_items=3, max_keys=3)


def _message(body: bytes, cid: str = "c1") -> bytes:
    return b'{"type":"message","id":"%s","to":"u1","body":%s}' % (cid.encode(), body)


@pytest.mark.parametrize("body", [
    b'{"a":{"b":{"c":{}}}}', b'{"a":[[[1]]]}', b'{"s":"0123456789"}', b'{"a":[1,2,3]}', b'{"a":1,"b":2,"c":3}',
    b'{"s":"\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9"}',  # 10 characters, 60 bytes
])
def test_a_body_at_every_bound_is_accepted(body: bytes) -> None:
    env = parse_outbox(_message(body), LIMITS)
    assert isinstance(env, MessageIn)
    assert bytes(env.body) == body


@pytest.mark.parametrize(("body", "code", "words"), [
    (b'{"a":{"b":{"c":{"d":{}}}}}', "invalid_envelope", "deeper than 4 levels"),
    (b'{"a":[[[[1]]]]}', "invalid_envelope", "deeper than 4 levels"),
    (b'{"s":"01234567890"}', "too_large", "string of 11 characters"),
    (b'{"01234567890":1}', "too_large", "string of 11 characters"),
    (b'{"a":[1,2,3,4]}', "too_large", "array of 4 items"),
    (b'{"a":1,"b":2,"c":3,"d":4}', "too_large", "object of 4 keys"),
    (b'{"a":' * 400 + b"1" + b"}" * 400, "invalid_envelope", "deeper than 4 levels"),  # past any decoder's limit
    (b'{"a":1e400}', "invalid_envelope", "out of range"),  # valid JSON no double holds: orjson cannot read it
    (b'{"a":-1' + b"0" * 400 + b'.5}', "invalid_envelope", "out of range"),
])
def test_a_body_past_a_bound_is_refused_with_the_client_id(body: bytes, code: str, words: str) -> None:
    with pytest.raises(EnvelopeError) as info:
        parse_outbox(_message(body, "c7"), LIMITS)
    assert (info.value.code, info.value.client_id) == (code, "c7")
    assert words in info.value.reason


def test_the_default_depth_bound_leaves_room_for_every_hop_to_encode_it_again() -> None:
    """Whatever is accepted nests well inside orjson's 254 levels even wrapped in a bus record."""
    deepest = b'{"a":' * 31 + b"{}" + b"}" * 31
    env = parse_outbox(_message(deepest), 64 * 1024)
    assert isinstance(env, MessageIn)
    wrapped = {"user": "u1", "envs": [{"type": "message", "body": orjson.loads(bytes(env.body))}]}
    assert orjson.loads(orjson.dumps(wrapped)) == wrapped
    with pytest.raises(EnvelopeError):
        parse_outbox(_message(b'{"a":' * 32 + b"{}" + b"}" * 32), 64 * 1024)


def test_the_client_id_is_read_from_a_payload_too_deep_to_decode() -> None:
    payload = b'{"type":"message","body":' + b"[" * 5000 + b"]" * 5000 + b',"to":"u1","id":"c-deep"}'
    with pytest.raises(EnvelopeError) as info:
        parse_outbox(payload, 64 * 1024)
    assert (info.value.code, info.value.client_id) == ("invalid_envelope", "c-deep")


def test_inbox_envelopes_are_read_without_parsing() -> None:
    body = msgspec.Raw(b'{"to":null,"text":"\\"to\\":null"}')
    template = message_envelope("s1", "c1", "ua", None, "g1", body, 1767225600000)
    addressed = address(template, "ub")
    assert orjson.loads(addressed) == {"type": "message", "id": "s1", "client_id": "c1", "from": "ua", "to": "ub",
                                       "group": "g1", "body": {"to": None, "text": '"to":null'}, "ts": 1767225600000}
    assert (envelope_type(addressed), message_id(addressed), message_ts(addressed)) == ("message", "s1",
                                                                                        1767225600000)
    ack = ack_envelope("c1", "s1", 5)
    assert (envelope_type(ack), message_id(ack), message_ts(ack)) == ("ack", None, None)
    assert envelope_type(error_envelope("too_large", "x")) == "error"
    for action in (EditIn("c2", "s1", body), DeleteIn("c3", "s1", "everyone"), ReactionIn("c4", "s1", "👍")):
        sent = address(action_envelope("s2", action.id, "ua", None, "g1", action, 1767225600001), "ub")
        assert (envelope_type(sent), message_id(sent), message_ts(sent)) == (
            orjson.loads(sent)["type"], "s2", None)  # stored until delivered, like a message; ts read for messages
        assert orjson.loads(sent)["to"] == "ub"
    reply = orjson.loads(message_envelope("s3", "c5", "ua", "ub", None, body, 7, reply_to="s1"))
    assert list(reply) == ["type", "id", "client_id", "from", "to", "group", "reply_to", "body", "ts"]
