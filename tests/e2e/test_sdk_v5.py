"""The SDK over MQTT 5 and MQTT 3.1.1 against the real node: ``ChatClient`` and ``DeviceClient`` connect in
either version, and a refused publish raises ``MessageRejectedError`` with the chatmq error code and reason
and, over MQTT 5, the PUBACK's reason code."""

from __future__ import annotations

from typing import Any

import pytest

from chatmq.devices.device_client import DeviceClient
from chatmq.devices.sdk import MessageRejectedError
from tests.e2e.harness import Deployment, Users

TIMEOUT = 15.0
#: MQTT 5 PUBACK reason codes of the chat refusals (contract: "MQTT 5 and 3.1")
PAYLOAD_FORMAT_INVALID, IMPLEMENTATION_SPECIFIC = 0x99, 0x83


@pytest.fixture(params=[5, 4], ids=["mqtt5", "mqtt311"])
def mqtt_version(request: pytest.FixtureRequest) -> int:
    return int(request.param)


def _nested(depth: int) -> dict[str, Any]:
    body: dict[str, Any] = {"text": "deep"}
    for _ in range(depth):
        body = {"a": body}
    return body


def test_chat_client_refusals_carry_the_code_and_over_mqtt5_the_reason_code(
        users: Users, mqtt_version: int, transport: str) -> None:
    # max_payload raised past the server's 64 KiB: the SDK sends what the server then refuses
    alice = users(transport=transport, mqtt_version=mqtt_version, max_payload=100_000)
    bob = users()
    assert alice.mqtt_version == mqtt_version

    big = alice.send(bob.uid, "x" * 70_000)
    with pytest.raises(MessageRejectedError) as too_large:
        alice.wait_ack(big, TIMEOUT)
    deep = alice.send(bob.uid, _nested(40))
    with pytest.raises(MessageRejectedError) as invalid:
        alice.wait_ack(deep, TIMEOUT)
    ok = alice.send(bob.uid, "still fine")
    alice.wait_ack(ok, TIMEOUT)

    assert (too_large.value.code, too_large.value.client_id) == ("too_large", big)
    assert "exceeds the limit" in too_large.value.reason
    assert (invalid.value.code, invalid.value.client_id) == ("invalid_envelope", deep)
    assert "nests deeper than 32 levels" in invalid.value.reason
    if mqtt_version == 5:
        assert (too_large.value.reason_code, invalid.value.reason_code) == (IMPLEMENTATION_SPECIFIC,
                                                                          PAYLOAD_FORMAT_INVALID)
        assert [(r.client_id, r.code) for r in alice.refusals] == [(big, "too_large"), (deep, "invalid_envelope")]
        assert "0x83" in str(too_large.value)
    else:
        assert (too_large.value.reason_code, invalid.value.reason_code) == (None, None)
        assert alice.refusals == []
    # the refused messages are not resent, and bob got only the good one
    assert alice.unacked() == []
    assert [m["body"] for m in bob.wait_messages(1, TIMEOUT)] == [{"text": "still fine"}]


def test_device_client_speaks_both_versions_and_raises_a_refused_reading(
        server: Deployment, users: Users, mqtt_version: int, transport: str) -> None:
    owner = users(connect=False)
    made = owner.create_device("sensor")
    port = server.ws_port if transport == "websockets" else server.mqtt_port
    with DeviceClient(server.host, port, made["device_id"], made["secret"], transport=transport,  # type: ignore[arg-type]
                      mqtt_version=mqtt_version) as dev:
        dev.connect()
        assert dev.mqtt_version == mqtt_version
        dev.publish({"temp": 21.5}, timeout=TIMEOUT)
        if mqtt_version == 5:
            with pytest.raises(MessageRejectedError) as refused:
                dev.publish({"temp": "warm"}, timeout=TIMEOUT)
            assert (refused.value.reason_code, refused.value.code) == (PAYLOAD_FORMAT_INVALID, "invalid_envelope")
            assert "field 'temp' must be a number" in refused.value.reason
        else:
            dev.publish({"temp": "warm"}, timeout=TIMEOUT)  # 3.1.1 has no refusing PUBACK: only the error
        [error] = dev.wait_errors(1, TIMEOUT)
        assert (error["code"], "field 'temp' must be a number" in error["reason"]) == ("invalid_envelope", True)
        dev.publish({"temp": 7.5}, timeout=TIMEOUT)  # the connection still works
        assert owner.device(made["device_id"])["online"] is True
