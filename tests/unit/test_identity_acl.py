"""The per-identity topic ACL of the contract."""

from chatmq.broker.identity import Identity, may_publish, may_receive, may_subscribe
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
