"""The system's metrics: scrape-time sources, and the counters where messages pass (gateway, router,
bus workers). Counters are process-wide, so each test compares before and after."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import msgspec
import orjson
from prometheus_client import REGISTRY, generate_latest

from chatmq.bridges.gateway import NodeGateway
from chatmq.broker.identity import Identity, outbox_topic
from chatmq.core import ids
from chatmq.core.bus.base import Record
from chatmq.core.envelopes import ack_envelope, message_envelope
from chatmq.core.ids import now_ms
from chatmq.core.metrics import CONNECTIONS, CONSUMER_LAG, Family, Sample, Sources
from chatmq.core.topics import deliver_topic
from chatmq.core.worker import BusWorker
from chatmq.services.chat.router import Router
from tests.unit.chat_fixtures import NODE, Chat, message, outbox_record, record
from tests.unit.test_gateway import RecordingSink


class Delta:
    """Reads samples of the default registry relative to when it was made."""

    def __init__(self, *samples: tuple[str, dict[str, str]]) -> None:
        self._before = {self._key(n, labels): self._value(n, labels) for n, labels in samples}

    @staticmethod
    def _key(name: str, labels: dict[str, str]) -> str:
        return name + str(sorted(labels.items()))

    @staticmethod
    def _value(name: str, labels: dict[str, str]) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    def __call__(self, sample: tuple[str, dict[str, str]]) -> float:
        name, labels = sample
        return self._value(name, labels) - self._before[self._key(name, labels)]


# --- scrape-time sources ---------------------------------------------------------------

def test_sources_are_summed_by_family_and_labels_and_can_be_removed() -> None:
    sources = Sources()

    def node(value: float) -> Iterable[Sample]:
        return [(CONNECTIONS, ("n1", "tcp", "user"), value), (CONSUMER_LAG, ("chat.outbox", "router"), 1.0)]

    remove_one = sources.add(lambda: node(2.0))
    remove_two = sources.add(lambda: node(3.0))
    assert sources.samples() == {CONNECTIONS: {("n1", "tcp", "user"): 5.0},
                                 CONSUMER_LAG: {("chat.outbox", "router"): 2.0}}
    remove_one()
    remove_one()  # twice is harmless
    assert sources.samples()[CONNECTIONS] == {("n1", "tcp", "user"): 3.0}
    remove_two()
    assert sources.samples() == {}


def test_a_failing_source_is_skipped_and_the_rest_collected() -> None:
    sources = Sources()
    counter = Family("chatmq_test_things", "Things.", "counter", ("kind",))

    def broken() -> Iterable[Sample]:
        raise RuntimeError("dictionary changed size during iteration")

    sources.add(broken)
    sources.add(lambda: [(counter, ("a",), 4.0)])
    [family] = list(sources.collect())
    assert family.name == "chatmq_test_things"
    assert family.type == "counter"
    assert [(s.name, s.labels, s.value) for s in family.samples] == [("chatmq_test_things_total", {"kind": "a"}, 4.0)]


def test_the_registry_exposes_the_process_sources() -> None:
    text = generate_latest(REGISTRY).decode()
    assert "# TYPE chatmq_messages_in_total counter" in text
    assert "# TYPE chatmq_delivery_latency_seconds histogram" in text


# --- counted on the message path -----------------------------------------------------------

async def test_the_gateway_counts_what_it_puts_on_the_bus_and_writes_to_connections(chat: Chat) -> None:
    sink = RecordingSink()
    gateway = NodeGateway(chat.bus, NODE, 4096)
    gateway.attach(sink)
    out = ("chatmq_messages_out_total", {"node": NODE, "type": "message"})
    acks = ("chatmq_messages_out_total", {"node": NODE, "type": "ack"})
    live = ("chatmq_delivery_latency_seconds_count", {"node": NODE, "path": "live"})
    live_sum = ("chatmq_delivery_latency_seconds_sum", {"node": NODE, "path": "live"})
    slow = ("chatmq_delivery_latency_seconds_bucket", {"node": NODE, "path": "live", "le": "5.0"})
    sent_in = ("chatmq_messages_in_total", {"node": NODE, "type": "message"})
    receipts_in = ("chatmq_messages_in_total", {"node": NODE, "type": "receipt"})
    delta = Delta(out, acks, live, live_sum, slow, sent_in, receipts_in)

    alice = Identity("user", "ub-alice")
    await gateway.published(alice, outbox_topic(alice.id), b'{"type":"message","id":"c1","to":"ua-bob","body":{}}')
    await gateway.published(alice, outbox_topic(alice.id), b'{"type":"receipt","status":"read","ids":["s0"]}')
    assert delta(sent_in) == 1
    assert delta(receipts_in) == 1

    phone, laptop = object(), object()
    for conn in (phone, laptop):
        await gateway.inbox_subscribed(alice.id, conn)
    epoch = gateway._inboxes[alice.id].epoch
    await gateway.process([record(deliver_topic(NODE), alice.id,
                                  {"user": alice.id, "envs": [], "replay": "done", "epoch": epoch})])
    three_seconds_ago = now_ms() - 3000
    envs = [orjson.loads(message_envelope("s1", "c1", "ua-bob", alice.id, None, msgspec.Raw(b"{}"), three_seconds_ago)),
            orjson.loads(ack_envelope("c9", "s2", now_ms()))]
    await gateway.process([record(deliver_topic(NODE), alice.id, {"user": alice.id, "envs": envs})])

    assert [e["type"] for e in sink.envs(alice.id)] == ["message", "ack"]
    assert delta(out) == 2  # one per connection
    assert delta(acks) == 2
    assert delta(live) == 1  # one per message, not per connection; acks are not timed
    assert 3.0 <= delta(live_sum) < 10.0
    assert delta(slow) == 1


async def test_the_router_counts_accepted_duplicates_and_refusals(chat: Chat) -> None:
    router = Router(chat.bus, chat.store, chat.outlet)
    a, b = await chat.user(), await chat.user()
    chat.online(a)
    new = ("chatmq_messages_accepted_total", {"kind": "direct", "result": "new"})
    repeated = ("chatmq_messages_accepted_total", {"kind": "direct", "result": "duplicate"})
    refused = ("chatmq_messages_refused_total", {"code": "unknown_recipient"})
    delta = Delta(new, repeated, refused)

    await router.process([outbox_record(a, message("c1", to=b)), outbox_record(a, message("c2", to=b)),
                          outbox_record(a, message("c1", to=b)), outbox_record(a, message("c3", to=ids.user_id()))])

    assert delta(new) == 2
    assert delta(repeated) == 1
    assert delta(refused) == 1


class Flaky(BusWorker):
    """Fails its first batch once."""

    def __init__(self, chat: Chat) -> None:
        super().__init__(chat.bus, "flaky-metrics", ["metrics-test"])
        self.failed = False

    async def process(self, records: list[Record]) -> None:
        if not self.failed:
            self.failed = True
            raise RuntimeError("first try fails")


async def test_bus_workers_count_records_processed_and_failed_batches(chat: Chat) -> None:
    processed = ("chatmq_bus_records_processed_total", {"group": "flaky-metrics"})
    failures = ("chatmq_bus_batch_failures_total", {"group": "flaky-metrics"})
    worker = Flaky(chat)
    worker.retry_pause = 0.01
    delta = Delta(processed, failures)
    await chat.bus.publish_many("metrics-test", [(b"k", b"1"), (b"k", b"2")])
    async with worker:
        for _ in range(200):
            if worker.processed == 2:
                break
            await asyncio.sleep(0.01)
    assert delta(processed) == 2
    assert delta(failures) == 1
