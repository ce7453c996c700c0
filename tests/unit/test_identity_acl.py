"""The per-identity topic ACL of the contract."""

from chatmq.broker.identity import (
    Identity,
    may_publish,
    may_receive,
    may_subscribe,
    may_take_over,
    principal_identity,
)
from chatmq.broker.ratelimit import TokenBucket

alice = Identity("user", "ua")
sensor = Identity("device", "d1", owner="ua")


def test_user_acl() -> None:
    assert may_subscribe(alice, "users/ua/inbox")
    assert not may_subscribe(alice, "users/ub/inbox")
    assert not may_subscribe(alice, "users/+/inbox")
    assert not may_subscribe(alice, "#")
    assert may_publish(alice, "users/ua/outbox")
    assert not may_publish(alice, "users/ub/outbox")
    assert not may_publish(alice, "users/ua/inbox")
    assert may_receive(alice, "users/ua/inbox")
    assert not may_receive(alice, "users/ub/inbox")


def test_device_acl() -> None:
    assert may_publish(sensor, "devices/d1/telemetry")
    assert not may_publish(sensor, "devices/d2/telemetry")
    assert may_publish(sensor, "devices/d1/outbox")
    assert not may_publish(sensor, "devices/d2/outbox")
    assert not may_publish(sensor, "users/ua/outbox")
    assert not may_subscribe(sensor, "devices/d1/telemetry")
    assert not may_subscribe(None, "users/ua/inbox")
    # a device reads its own inbox (errors answering refused readings), nothing else
    assert may_subscribe(sensor, "devices/d1/inbox")
    assert may_receive(sensor, "devices/d1/inbox")
    assert not may_subscribe(sensor, "devices/d2/inbox")
    assert not may_subscribe(sensor, "devices/+/inbox")
    assert not may_subscribe(sensor, "users/ua/inbox")
    assert not may_receive(sensor, "users/ua/inbox")
    assert not may_subscribe(alice, "devices/d1/inbox")
    assert not may_publish(sensor, "devices/d1/inbox")


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=10, burst=2)
    t0 = bucket._last
    assert [bucket.take(t0), bucket.take(t0)] == [True, True]
    assert not bucket.take(t0)
    assert bucket.take(t0 + 0.2)


def test_only_the_same_principal_takes_a_held_client_id_over() -> None:
    bob, bobs_sensor = Identity("user", "ub"), Identity("device", "d2", owner="ub")
    assert may_take_over(None, alice)  # nobody holds it
    assert may_take_over(None, None)  # the plain node: nobody verified anyone
    assert may_take_over(alice, Identity("user", "ua"))  # the same user, another connection
    assert may_take_over(sensor, Identity("device", "d1"))  # the same device (its owner is not compared)
    assert not may_take_over(alice, bob)  # another user's client id
    assert not may_take_over(alice, None)  # held by a verified user: an unverified claim is not hers
    assert not may_take_over(sensor, bobs_sensor)  # another device
    assert not may_take_over(sensor, alice)  # the device's owner is not the device
    assert not may_take_over(alice, Identity("device", "ua"))  # a device whose id looks like the user's


def test_a_principal_named_on_the_bus_is_a_user_or_a_device() -> None:
    assert principal_identity("user", "ua") == Identity("user", "ua")
    assert principal_identity("device", "d1") == Identity("device", "d1")
    assert principal_identity("admin", "ua") is None
    assert principal_identity("user", "") is None
