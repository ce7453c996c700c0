"""Properties of the outbox envelope parser (``chatmq.core.envelopes``) for anything a client may publish.

``parse_outbox`` and ``parse_object`` turn any bytes into a typed envelope or an ``EnvelopeError``
carrying one of the contract's error codes (never another exception), and ``client_id_of`` never
raises. Whatever is accepted can be encoded again with orjson as the server delivers it (the
``message`` or ``receipt`` envelope around it): an envelope acked but impossible to deliver would
block its recipient for good (issue 12, item 1).
"""

from __future__ import annotations

import json
from typing import Any, get_args

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from chatmq.core.envelopes import (
    CommandIn,
    EnvelopeError,
    ErrorCode,
    MessageIn,
    OutboxEnvelope,
    PresenceIn,
    ReceiptIn,
    TypingIn,
    action_envelope,
    client_id_of,
    message_envelope,
    parse_object,
    parse_outbox,
    presence_envelope,
    receipt_envelope,
    typing_envelope,
)

PROPERTY = settings(deadline=2000, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
MAX_PAYLOAD = 64 * 1024
CODES = set(get_args(ErrorCode))

# JSON values orjson reads, and the ones it must refuse (NaN, infinities, numbers past 64 bits, lone surrogates)
plain_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False,
                          allow_infinity=False), st.text(max_size=30))
odd_scalars = st.one_of(st.floats(), st.integers(-(2**70), 2**70),
                        st.text(st.characters(codec=None, min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1,
                                max_size=2))


def nested(scalars: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=10), inner, max_size=5)), max_leaves=30)


json_values = nested(plain_scalars)
odd_values = nested(st.one_of(plain_scalars, odd_scalars))
good_ids = st.from_regex(r"[A-Za-z0-9_.:-]{1,20}", fullmatch=True)


@st.composite
def envelopes(draw: st.DrawFn, values: st.SearchStrategy[Any]) -> Any:
    """Something shaped like an outbox envelope (fields from ``values``), each field right or wrong."""
    ids = st.one_of(good_ids, good_ids, st.text(max_size=140), values)
    kind = draw(st.sampled_from(("message", "receipt", "command", "other")))
    env: dict[str, Any] = {}
    if kind != "other" or draw(st.booleans()):
        env["type"] = kind if kind != "other" else draw(values)
    if kind == "message":
        env["id"] = draw(ids)
        for key in draw(st.sampled_from((("to",), ("group",), ("to",), ("group",), (), ("to", "group")))):
            env[key] = draw(ids)
        env["body"] = draw(st.one_of(st.dictionaries(st.text(max_size=10), values, max_size=6), values))
    elif kind == "receipt":
        env["status"] = draw(st.one_of(st.sampled_from(("delivered", "read")), values))
        env["ids"] = draw(st.one_of(st.lists(ids, max_size=5), values))
    elif kind == "command":
        env["id"], env["device"] = draw(ids), draw(ids)
        env["name"] = draw(st.one_of(st.sampled_from(("reboot", "set:led")), values))
        if draw(st.booleans()):
            env["params"] = draw(st.one_of(st.dictionaries(st.text(max_size=10), values, max_size=6), values))
        if draw(st.booleans()):
            env["timeout_s"] = draw(st.one_of(st.integers(-5, 400), values))
    env.update(draw(st.dictionaries(st.text(max_size=8).filter(lambda k: k not in env), values, max_size=2)))
    return env


def as_json(value: Any) -> bytes:
    """``value`` as JSON text, NaN, Infinity and lone surrogates (as ``\\udXXX``) included."""
    return json.dumps(value).encode()


payloads = st.one_of(
    st.binary(max_size=512),
    odd_values.map(as_json),
    envelopes(json_values).map(as_json),
    envelopes(json_values).map(as_json),
    envelopes(odd_values).map(as_json),
    envelopes(json_values).map(as_json).map(lambda b: b[: len(b) // 2]),  # cut short
)


def delivered_form(envelope: OutboxEnvelope) -> bytes:
    """The envelope as the server sends it on (to the recipient, or back to the sender), read and
    written again with orjson as the SDK and the history API do."""
    if isinstance(envelope, MessageIn):
        sent = message_envelope("01SERVERID", envelope.id, "sender", envelope.to, envelope.group,
                                envelope.body, 1_700_000_000_000, envelope.reply_to)
    elif isinstance(envelope, CommandIn):  # its params go on to the device
        sent = orjson.dumps({"type": "command", "id": "c1", "name": envelope.name,
                             "params": envelope.params_object(), "expires_at": 1_700_000_000_000})
    elif isinstance(envelope, TypingIn):
        sent = typing_envelope("sender", envelope.to, envelope.group, envelope.state)
    elif isinstance(envelope, ReceiptIn):
        sent = receipt_envelope(envelope.status, list(envelope.ids), "sender")
    elif isinstance(envelope, PresenceIn):
        sent = presence_envelope("sender", envelope.state, 1_700_000_000_000)
    else:
        sent = action_envelope("01SERVERID", envelope.id, "sender", "to", None, envelope, 1_700_000_000_000)
    return orjson.dumps(orjson.loads(sent))


def assert_contract_error(error: EnvelopeError, naming: str = "") -> None:
    assert error.code in CODES
    assert isinstance(error.reason, str)
    assert error.reason
    assert naming in error.reason
    assert error.client_id is None or isinstance(error.client_id, str)


@PROPERTY
@given(payloads)
def test_any_payload_parses_to_a_typed_envelope_or_a_contract_error(payload: bytes) -> None:
    try:
        envelope = parse_outbox(payload, MAX_PAYLOAD)
    except EnvelopeError as error:
        assert_contract_error(error)
        return
    assert isinstance(envelope, MessageIn | ReceiptIn | CommandIn)
    raw = orjson.loads(payload)
    if isinstance(envelope, MessageIn):
        assert (envelope.id, envelope.to, envelope.group, orjson.loads(bytes(envelope.body))) == (
            raw["id"], raw.get("to"), raw.get("group"), raw["body"])
    elif isinstance(envelope, CommandIn):
        assert (envelope.id, envelope.device, envelope.name, envelope.params_object(), envelope.timeout_s) == (
            raw["id"], raw["device"], raw["name"], raw.get("params", {}), raw.get("timeout_s", 30))
    else:
        assert (envelope.status, list(envelope.ids)) == (raw["status"], raw["ids"])


@PROPERTY
@given(payloads)
def test_anything_accepted_can_be_encoded_again(payload: bytes) -> None:
    try:
        envelope = parse_outbox(payload, MAX_PAYLOAD)
    except EnvelopeError:
        return
    assert orjson.loads(delivered_form(envelope))  # and it reads back


@PROPERTY
@given(payloads)
def test_any_payload_is_a_json_object_or_a_contract_error(payload: bytes) -> None:
    try:
        raw = parse_object(payload, MAX_PAYLOAD, "reading")
    except EnvelopeError as error:
        assert_contract_error(error, naming="reading")
        return
    assert isinstance(raw, dict)
    assert orjson.dumps(raw)


@PROPERTY
@given(payloads)
def test_the_client_id_of_any_payload_is_a_string_or_none(payload: bytes) -> None:
    found = client_id_of(payload)
    assert found is None or isinstance(found, str)


@PROPERTY
@given(payloads, st.integers(0, 600))
def test_a_payload_over_the_limit_is_too_large_whatever_it_holds(payload: bytes, limit: int) -> None:
    if len(payload) <= limit:
        return
    with pytest.raises(EnvelopeError) as info:
        parse_outbox(payload, limit)
    assert info.value.code == "too_large"


def nested_message(depth: int, kind: str) -> bytes:
    """A message whose body holds ``depth`` levels of nested objects (``{"a":{"a":…}}``) or arrays
    (``{"a":[[…]]}``)."""
    if kind == "object":
        body = b'{"a":' * depth + b"1" + b"}" * depth
    else:
        body = b'{"a":' + b"[" * depth + b"1" + b"]" * depth + b"}"
    return b'{"type":"message","id":"deep","to":"u1","body":' + body + b"}"


@settings(deadline=None, max_examples=20)
@given(st.integers(1, 1100))
@example(300)
def test_a_command_with_deeply_nested_params_is_refused_or_can_be_encoded_again(depth: int) -> None:
    params = b'{"a":' * depth + b"1" + b"}" * depth
    try:
        envelope = parse_outbox(b'{"type":"command","id":"deep","device":"d1","name":"x","params":' + params + b"}",
                                MAX_PAYLOAD)
    except EnvelopeError as error:
        assert_contract_error(error)
        return
    delivered_form(envelope)


@settings(deadline=None, max_examples=40)
@given(st.integers(1, 1100), st.sampled_from(("object", "array")))
@example(300, "object")  # the poison message nests 251 levels
@example(260, "array")
def test_a_deeply_nested_body_is_refused_or_can_be_encoded_again(depth: int, kind: str) -> None:
    try:
        envelope = parse_outbox(nested_message(depth, kind), MAX_PAYLOAD)
    except EnvelopeError as error:
        assert_contract_error(error)
        return
    delivered_form(envelope)
