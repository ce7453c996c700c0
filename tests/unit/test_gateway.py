"""NodeGateway: node hooks → bus records, and the node's delivery topic → inboxes (with replay hold-back)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import orjson
import pytest

from chatmq.bridges.gateway import NodeGateway
from chatmq.broker.identity import Identity, outbox_topic, telemetry_topic
from chatmq.core.bus.base import Record
from chatmq.core.envelopes import EnvelopeError, ack_envelope, message_envelope, receipt_envelope
from chatmq.core.topics import CONNECTIONS, GROUP_OUTBOX, OUTBOX, PRESENCE, TELEMETRY, deliver_topic
from tests.unit.chat_fixtures import NODE, Chat, Probe, eventually, message, receipt, record, wire

MAX = 1024
ALICE, BOB = "ub-alice", "ua-bob"  # sorted, BOB comes first


class RecordingSink:
    """An ``InboxSink`` that keeps every ``send`` as ``(user, conns, envelope)``."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[object], dict[str, Any]]] = []

    def send(self, user_id: str, conns: list[object], payload: bytes) -> None:
        self.sent.append((user_id, list(conns), orjson.loads(payload)))

    def send_device(self, device_id: str, conns: list[object], payload: bytes) -> None:
        self.sent.append((f"device:{device_id}", list(conns), orjson.loads(payload)))

    def envs(self, user: str | None = None) -> list[dict[str, Any]]:
        return [e for u, _c, e in self.sent if user is None or u == user]

    def ids(self, user: str | None = None) -> list[str | None]:
        return [e.get("id") for e in self.envs(user)]


@pytest.fixture
async def bus_probe(chat: Chat) -> AsyncIterator[Probe]:
    """Reads what the gateway puts on the inbound topics."""
    probe = Probe(chat.bus, [OUTBOX, GROUP_OUTBOX, PRESENCE, TELEMETRY, CONNECTIONS], group="gateway-probe")
    await probe.start()
    yield probe
    await probe.stop()


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def gateway(chat: Chat, sink: RecordingSink) -> NodeGateway:
    g = NodeGateway(chat.bus, NODE, MAX)
    g.attach(sink)
    return g


def _value(r: Record) -> Any:
    return wire(r)


def _msg(server_id: str, to: str = ALICE, sender: str = BOB) -> dict[str, Any]:
    body = msgspec.Raw(orjson.dumps({"text": server_id}))
    return dict(orjson.loads(message_envelope(server_id, "c-" + server_id, sender, to, None, body, 1)))


def _live(user: str, *envs: dict[str, Any]) -> Record:
    return record(deliver_topic(NODE), user, {"user": user, "envs": list(envs)})


def _page(user: str, epoch: int, *envs: dict[str, Any]) -> Record:
    return record(deliver_topic(NODE), user, {"user": user, "envs": list(envs), "replay": "page", "epoch": epoch})


def _done(user: str, epoch: int) -> Record:
    return record(deliver_topic(NODE), user, {"user": user, "envs": [], "replay": "done", "epoch": epoch})


async def _subscribe(gateway: NodeGateway, bus_probe: Probe, user: str, conn: object) -> int:
    """Subscribe ``conn`` to ``user``'s inbox; returns the epoch of the ``online`` record."""
    await gateway.inbox_subscribed(user, conn)
    presence = [_value(r) for r in await bus_probe.drain() if r.topic == PRESENCE]
    assert presence[-1]["event"] == "online"
    return int(presence[-1]["epoch"])


# --- outbox → bus --------------------------------------------------------------------


async def test_one_to_one_message_goes_to_outbox_keyed_by_the_sorted_pair(
    gateway: NodeGateway, bus_probe: Probe
) -> None:
    payload = orjson.dumps(message("c1", to=BOB, text="yo"))
    await gateway.published(Identity("user", ALICE), outbox_topic(ALICE), payload)

    [r] = await bus_probe.drain()
    assert (r.topic, r.key) == (OUTBOX, f"{BOB}:{ALICE}".encode())
    assert _value(r) == {"from": ALICE, "node": NODE, "env": {
        "type": "message", "id": "c1", "to": BOB, "group": None, "body": {"text": "yo"}, "reply_to": None}}


async def test_group_message_goes_to_group_outbox_keyed_by_group(gateway: NodeGateway, bus_probe: Probe) -> None:
    await gateway.published(Identity("user", ALICE), outbox_topic(ALICE), orjson.dumps(message("c1", group="g42")))

    [r] = await bus_probe.drain()
    assert (r.topic, r.key) == (GROUP_OUTBOX, b"g42")
    assert _value(r) == {"from": ALICE, "node": NODE, "env": {
        "type": "message", "id": "c1", "to": None, "group": "g42", "body": {"text": "hi"}, "reply_to": None}}


async def test_receipt_goes_to_outbox_keyed_by_user(gateway: NodeGateway, bus_probe: Probe) -> None:
    await gateway.published(Identity("user", ALICE), outbox_topic(ALICE), orjson.dumps(receipt("read", ["s1", "s2"])))

    [r] = await bus_probe.drain()
    assert (r.topic, r.key) == (OUTBOX, ALICE.encode())
    assert _value(r) == {"from": ALICE, "node": NODE, "env": {"type": "receipt", "status": "read", "ids": ["s1", "s2"]}}


async def test_message_action_goes_to_outbox_keyed_by_its_sender(gateway: NodeGateway, bus_probe: Probe) -> None:
    """An action names only its target: the router finds the conversation, so it rides with the sender's receipts."""
    action = {"type": "reaction", "id": "c9", "target": "s1", "emoji": "👍"}
    await gateway.published(Identity("user", ALICE), outbox_topic(ALICE), orjson.dumps(action))

    [r] = await bus_probe.drain()
    assert (r.topic, r.key) == (OUTBOX, ALICE.encode())
    assert _value(r) == {"from": ALICE, "node": NODE, "env": {**action, "remove": False}}


@pytest.mark.parametrize(("payload", "code", "client_id"), [
    (b"not json", "invalid_envelope", None),
    (b"[1,2]", "invalid_envelope", None),
    (b'{"type":"wave","id":"c0"}', "invalid_envelope", "c0"),
    (b'{"type":"message","id":"c1","to":"u1","group":"g1","body":{}}', "invalid_envelope", "c1"),
    (b'{"type":"message","id":"c2","body":{}}', "invalid_envelope", "c2"),
    (b'{"type":"message","id":"c3","to":"u1","body":"text"}', "invalid_envelope", "c3"),
    (b'{"type":"receipt","status":"read","ids":[]}', "invalid_envelope", None),
    (b'{"type":"message","id":"c4","to":"u1","body":{"t":"' + b"x" * MAX + b'"}}', "too_large", "c4"),
])
async def test_bad_envelopes_raise_and_publish_nothing(
    gateway: NodeGateway, bus_probe: Probe, payload: bytes, code: str, client_id: str | None
) -> None:
    with pytest.raises(EnvelopeError) as info:
        await gateway.published(Identity("user", ALICE), outbox_topic(ALICE), payload)

    assert info.value.code == code
    assert info.value.client_id == client_id
    assert await bus_probe.drain() == []


# --- presence and connections ----------------------------------------------------------


async def test_inbox_subscriptions_publish_presence_with_increasing_epochs(
    gateway: NodeGateway, bus_probe: Probe
) -> None:
    phone, laptop = object(), object()

    await gateway.inbox_subscribed(ALICE, phone)
    await gateway.inbox_subscribed(ALICE, laptop)
    await gateway.inbox_released(ALICE, phone)
    assert gateway.online_users() == [ALICE]
    await gateway.inbox_released(ALICE, laptop)
    await gateway.inbox_released(ALICE, laptop)  # twice is harmless

    records = await bus_probe.drain()
    assert {(r.topic, r.key) for r in records} == {(PRESENCE, ALICE.encode())}
    events = [_value(r) for r in records]
    assert [(e["event"], e["user"], e["node"]) for e in events] == [
        ("online", ALICE, NODE), ("online", ALICE, NODE), ("offline", ALICE, NODE)]
    assert events[0]["epoch"] < events[1]["epoch"]
    assert events[2]["epoch"] == events[1]["epoch"]  # the offline names the latest subscription
    assert gateway.online_users() == []


async def test_resubscribing_after_offline_gets_a_newer_epoch(gateway: NodeGateway, bus_probe: Probe) -> None:
    conn = object()
    first = await _subscribe(gateway, bus_probe, ALICE, conn)
    await gateway.inbox_released(ALICE, conn)
    await bus_probe.drain()
    second = await _subscribe(gateway, bus_probe, ALICE, conn)
    assert second > first


async def test_connects_and_disconnects_go_to_chat_connections(gateway: NodeGateway, bus_probe: Probe) -> None:
    await gateway.connected(Identity("user", ALICE), "phone-1", "ws")
    await gateway.disconnected(Identity("device", "d1", owner=ALICE), "sensor-1")

    records = await bus_probe.drain()
    assert {r.topic for r in records} == {CONNECTIONS}
    by_key = {r.key: _value(r) for r in records}
    up, down = by_key[ALICE.encode()], by_key[b"d1"]
    assert {k: up[k] for k in ("event", "kind", "id", "client_id", "node", "transport")} == {
        "event": "connected", "kind": "user", "id": ALICE, "client_id": "phone-1", "node": NODE, "transport": "ws"}
    assert {k: down[k] for k in ("event", "kind", "id", "client_id", "node", "transport")} == {
        "event": "disconnected", "kind": "device", "id": "d1", "client_id": "sensor-1", "node": NODE,
        "transport": None}
    assert isinstance(up["ts"], int)


# --- telemetry -----------------------------------------------------------------------


async def test_device_reading_goes_to_telemetry(gateway: NodeGateway, bus_probe: Probe) -> None:
    device = Identity("device", "d1", owner=ALICE)
    await gateway.published(device, telemetry_topic("d1"), b'{"temp": 21.5}')

    [r] = await bus_probe.drain()
    assert (r.topic, r.key) == (TELEMETRY, b"d1")
    value = _value(r)
    assert {k: value[k] for k in ("device", "owner", "reading")} == {
        "device": "d1", "owner": ALICE, "reading": {"temp": 21.5}}
    assert isinstance(value["ts"], int)


@pytest.mark.parametrize(("payload", "code"), [
    (b"not json", "invalid_envelope"),
    (b"[21.5]", "invalid_envelope"),
    (b"21.5", "invalid_envelope"),
    (b'{"t":"' + b"x" * MAX + b'"}', "too_large"),
    (b'{"temp": "warm"}', "invalid_envelope"),
    (b"{}", "invalid_envelope"),
    (b'{"temp": 1, "ts": 12}', "invalid_envelope"),
])
async def test_bad_readings_raise_and_publish_nothing(
    gateway: NodeGateway, bus_probe: Probe, payload: bytes, code: str
) -> None:
    with pytest.raises(EnvelopeError) as info:
        await gateway.published(Identity("device", "d1", owner=ALICE), telemetry_topic("d1"), payload)

    assert info.value.code == code
    assert await bus_probe.drain() == []


async def test_with_telemetry_off_readings_are_checked_then_dropped(chat: Chat, bus_probe: Probe) -> None:
    gateway = NodeGateway(chat.bus, NODE, MAX, telemetry=False)
    device = Identity("device", "d1", owner=ALICE)
    await gateway.published(device, telemetry_topic("d1"), b'{"temp": 21.5}')
    with pytest.raises(EnvelopeError):
        await gateway.published(device, telemetry_topic("d1"), b'{"temp": "warm"}')
    assert await bus_probe.drain() == []


# --- deliveries ------------------------------------------------------------------------


async def test_live_delivery_after_replay_goes_to_every_connection(
    gateway: NodeGateway, bus_probe: Probe, sink: RecordingSink
) -> None:
    phone, laptop = object(), object()
    await _subscribe(gateway, bus_probe, ALICE, phone)
    epoch = await _subscribe(gateway, bus_probe, ALICE, laptop)
    await gateway.process([_done(ALICE, epoch)])

    await gateway.process([_live(ALICE, _msg("s1"), _msg("s2"))])

    assert sink.ids(ALICE) == ["s1", "s2"]
    assert all(u == ALICE and conns == [phone, laptop] for u, conns, _e in sink.sent)


async def test_live_deliveries_during_replay_are_held_until_done(
    gateway: NodeGateway, bus_probe: Probe, sink: RecordingSink
) -> None:
    epoch = await _subscribe(gateway, bus_probe, ALICE, object())
    ack = orjson.loads(ack_envelope("c9", "s9", 5))
    rcpt = orjson.loads(receipt_envelope("read", ["s0"], BOB))

    await gateway.process([
        _live(ALICE, _msg("s2")),  # committed while the replay runs: also in the replay
        _live(ALICE, ack, _msg("s3")),
        _page(ALICE, epoch, _msg("s1"), _msg("s2")),
    ])
    assert sink.ids(ALICE) == ["s1", "s2"]  # only the replay so far

    await gateway.process([_live(ALICE, rcpt), _page(ALICE, epoch, _msg("s3")), _done(ALICE, epoch)])

    # after done: the held ones, without the ids the replay carried, in their order
    assert sink.envs(ALICE) == [_msg("s1"), _msg("s2"), _msg("s3"), ack, rcpt]

    await gateway.process([_live(ALICE, _msg("s4"))])  # no longer replaying: sent at once
    assert sink.ids(ALICE)[-1] == "s4"


async def test_two_devices_replays_each_go_to_their_device_and_hold_live_until_both_end(
    gateway: NodeGateway, bus_probe: Probe, sink: RecordingSink
) -> None:
    phone, laptop = object(), object()
    await gateway.inbox_subscribed(ALICE, phone, "phone-1")
    await gateway.inbox_subscribed(ALICE, laptop, "laptop-1")  # at once: the phone's replay is not superseded
    phone_epoch, laptop_epoch = [int(_value(r)["epoch"]) for r in await bus_probe.drain() if r.topic == PRESENCE]

    def page(epoch: int, client: str, *envs: dict[str, Any]) -> Record:
        return record(deliver_topic(NODE), ALICE, {"user": ALICE, "envs": list(envs), "replay": "page",
                                                   "epoch": epoch, "client": client})

    def done(epoch: int, client: str) -> Record:
        return record(deliver_topic(NODE), ALICE, {"user": ALICE, "envs": [], "replay": "done", "epoch": epoch,
                                                   "client": client})

    await gateway.process([page(phone_epoch, "phone-1", _msg("s1")), _live(ALICE, _msg("s1"), _msg("s2")),
                           done(phone_epoch, "phone-1"), page(laptop_epoch, "laptop-1", _msg("s0"))])
    assert [(conns, e["id"]) for _u, conns, e in sink.sent] == [([phone], "s1"), ([laptop], "s0")]
    await gateway.process([done(laptop_epoch, "laptop-1")])  # both over: what was held goes out
    assert [(conns, e["id"]) for _u, conns, e in sink.sent[2:]] == [([laptop], "s1"), ([phone, laptop], "s2")]


async def test_a_live_copy_of_a_replayed_message_after_done_is_dropped(
    gateway: NodeGateway, bus_probe: Probe, sink: RecordingSink
) -> None:
    epoch = await _subscribe(gateway, bus_probe, ALICE, object())
    await gateway.process([_page(ALICE, epoch, _msg("s1"), _msg("s2")), _done(ALICE, epoch)])
    # a router that found alice online after the replay had read the store publishes late
    await gateway.process([_live(ALICE, _msg("s2"), _msg("s3"))])
    await gateway.process([_live(ALICE, _msg("s2"))])  # a later repeat (a resend) goes through
    assert sink.ids(ALICE) == ["s1", "s2", "s3", "s2"]

    await _subscribe(gateway, bus_probe, ALICE, object())  # a new subscription starts afresh
    assert sink.ids(ALICE) == ["s1", "s2", "s3", "s2"]


async def test_pages_of_an_old_epoch_are_ignored(gateway: NodeGateway, bus_probe: Probe, sink: RecordingSink) -> None:
    old = await _subscribe(gateway, bus_probe, ALICE, object())
    new = await _subscribe(gateway, bus_probe, ALICE, object())

    await gateway.process([
        _page(ALICE, old, _msg("s1")),
        _done(ALICE, old),  # the old replay's end does not end the new one
        _live(ALICE, _msg("s5")),
    ])
    assert sink.sent == []

    await gateway.process([_page(ALICE, new, _msg("s1"), _msg("s2")), _done(ALICE, new)])
    assert sink.ids(ALICE) == ["s1", "s2", "s5"]


async def test_pages_of_an_earlier_session_after_resubscribe_are_ignored(
    gateway: NodeGateway, bus_probe: Probe, sink: RecordingSink
) -> None:
    conn = object()
    old = await _subscribe(gateway, bus_probe, ALICE, conn)
    await gateway.inbox_released(ALICE, conn)
    new = await _subscribe(gateway, bus_probe, ALICE, conn)

    await gateway.process([_page(ALICE, old, _msg("s1")), _done(ALICE, old), _live(ALICE, _msg("s2"))])
    assert sink.sent == []
    await gateway.process([_done(ALICE, new)])
    assert sink.ids(ALICE) == ["s2"]


async def test_deliveries_for_users_not_on_the_node_are_dropped(
    gateway: NodeGateway, bus_probe: Probe, sink: RecordingSink
) -> None:
    conn = object()
    epoch = await _subscribe(gateway, bus_probe, ALICE, conn)
    await gateway.process([_done(ALICE, epoch)])
    await gateway.inbox_released(ALICE, conn)

    await gateway.process([
        _live(BOB, _msg("s1", to=BOB, sender=ALICE)),  # never here
        _page(BOB, 1, _msg("s2", to=BOB, sender=ALICE)),
        _done(BOB, 1),
        _live(ALICE, _msg("s3")),  # gone
    ])

    assert sink.sent == []


async def test_deliveries_of_one_user_do_not_reach_another(
    gateway: NodeGateway, bus_probe: Probe, sink: RecordingSink
) -> None:
    alice_conn, bob_conn = object(), object()
    ea = await _subscribe(gateway, bus_probe, ALICE, alice_conn)
    eb = await _subscribe(gateway, bus_probe, BOB, bob_conn)
    await gateway.process([_done(ALICE, ea)])

    await gateway.process([_live(ALICE, _msg("s1")), _live(BOB, _msg("s2", to=BOB, sender=ALICE))])

    assert sink.sent == [(ALICE, [alice_conn], _msg("s1"))]  # bob is still replaying
    await gateway.process([_done(BOB, eb)])
    assert sink.sent[-1] == (BOB, [bob_conn], _msg("s2", to=BOB, sender=ALICE))


async def test_started_gateway_delivers_from_its_topic(
    chat: Chat, gateway: NodeGateway, bus_probe: Probe, sink: RecordingSink
) -> None:
    conn = object()
    epoch = await _subscribe(gateway, bus_probe, ALICE, conn)

    await gateway.start()
    try:
        await chat.outlet.to_node(NODE, ALICE, [ack_envelope("c1", "s1", 1)])  # held: replay under way
        await chat.bus.publish(deliver_topic(NODE), ALICE.encode(), orjson.dumps(
            {"user": ALICE, "envs": [_msg("s0")], "replay": "page", "epoch": epoch}))
        await chat.bus.publish(deliver_topic(NODE), ALICE.encode(), orjson.dumps(
            {"user": ALICE, "envs": [], "replay": "done", "epoch": epoch}))
        await _until(lambda: len(sink.sent) >= 2)
    finally:
        await gateway.stop()

    assert sink.envs(ALICE) == [_msg("s0"), orjson.loads(ack_envelope("c1", "s1", 1))]
    assert chat.bus.lag(f"node.{NODE}") == 0


async def test_delivery_without_an_attached_node_fails(chat: Chat, bus_probe: Probe) -> None:
    bare = NodeGateway(chat.bus, NODE, MAX)
    epoch = await _subscribe(bare, bus_probe, ALICE, object())
    with pytest.raises(RuntimeError):
        await bare.process([_page(ALICE, epoch, _msg("s1"))])


async def _until(check: Callable[[], bool]) -> None:
    async def holds() -> bool:
        return check()

    await eventually(holds)


async def test_group_fan_out_fills_in_each_member_and_respects_replays(
    gateway: NodeGateway, bus_probe: Probe, sink: RecordingSink
) -> None:
    carol = "uc-carol"
    epoch = await _subscribe(gateway, bus_probe, ALICE, object())
    await gateway.process([_done(ALICE, epoch)])
    carol_epoch = await _subscribe(gateway, bus_probe, carol, object())  # carol's replay is under way
    template = orjson.loads(message_envelope("g1", "c-g1", BOB, None, "grp", msgspec.Raw(b'{"text":"hi all"}'), 1))
    fan_out = record(deliver_topic(NODE), "grp", {"users": [ALICE, carol, "ud-not-here"], "env": template})

    await gateway.process([fan_out])
    assert sink.envs(ALICE) == [{**template, "to": ALICE}]
    assert sink.envs(carol) == []  # held until carol's replay is done
    assert sink.envs("ud-not-here") == []

    await gateway.process([_done(carol, carol_epoch)])
    assert sink.envs(carol) == [{**template, "to": carol}]


class _FlakyBus:
    """Wraps the chat's bus: the first ``failures`` publishes fail as when Kafka is away."""

    def __init__(self, bus: Any, failures: int, error: Exception) -> None:
        self._bus, self.failures, self._error = bus, failures, error

    async def publish(self, topic: str, key: bytes, value: bytes) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise self._error
        await self._bus.publish(topic, key, value)


async def test_a_publish_waits_out_a_bus_outage(chat: Chat, bus_probe: Probe) -> None:
    from chatmq.core.errors import BusError

    flaky = _FlakyBus(chat.bus, 3, BusError("Kafka is away"))
    g = NodeGateway(flaky, NODE, MAX)  # type: ignore[arg-type]
    await g.published(Identity("user", ALICE), outbox_topic(ALICE), orjson.dumps(message("c1", to=BOB, text="later")))
    assert flaky.failures == 0
    [r] = [r for r in await bus_probe.drain() if r.topic == OUTBOX]
    assert _value(r)["env"]["body"] == {"text": "later"}


async def test_a_publish_gives_up_after_the_grace_or_on_a_final_error(chat: Chat, bus_probe: Probe) -> None:
    from chatmq.core.errors import BusClosedError, BusError

    g = NodeGateway(_FlakyBus(chat.bus, 100, BusError("Kafka is away")), NODE, MAX, outage_grace=0.5)  # type: ignore[arg-type]
    with pytest.raises(BusError, match="away"):
        await g.published(Identity("user", ALICE), outbox_topic(ALICE), orjson.dumps(message("c1", to=BOB)))
    closed = NodeGateway(_FlakyBus(chat.bus, 1, BusClosedError("stopped")), NODE, MAX)  # type: ignore[arg-type]
    with pytest.raises(BusClosedError):
        await closed.published(Identity("user", ALICE), outbox_topic(ALICE), orjson.dumps(message("c2", to=BOB)))
    assert [r for r in await bus_probe.drain() if r.topic == OUTBOX] == []


def test_an_inbox_read_by_thousands_of_connections_finds_each_clients_own_and_forgets_a_client_with_its_last() -> None:
    """A user's inbox read by many connections (a wave of clients of one user): ``reading(only=...)`` finds a client's
    connections without a scan, and a client's replay state goes with its last connection, not before."""
    from chatmq.bridges.gateway import _Inbox

    inbox = _Inbox()
    conns = [object() for _ in range(3000)]
    for i, conn in enumerate(conns):
        inbox.attach(conn, f"c{i % 1000}")  # three connections per client id
    inbox.replayed["c7"] = {"m1"}
    assert inbox.reading(only="c7") == [conns[7], conns[1007], conns[2007]]
    assert inbox.reading(only="c7", skip=("c7",)) == []
    assert len(inbox.reading(skip=("c7", "c8"))) == 3000 - 6
    assert inbox.detach(conns[7]) is None  # c7 still has a connection
    assert inbox.detach(conns[1007]) is None
    assert inbox.detach(conns[2007]) == "c7"  # its last
    assert inbox.reading(only="c7") == []
    assert "c7" not in inbox.by_client
    assert inbox.detach(conns[7]) is None  # twice: harmless
    for conn in conns:
        inbox.detach(conn)
    assert (inbox.conns, inbox.clients, inbox.by_client) == ({}, {}, {})
