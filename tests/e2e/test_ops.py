"""Operations against a running server: every process's ``/metrics``, ``/healthz`` and ``/readyz``, and
the operator's process list (``GET /api/v1/admin/processes``)."""

from __future__ import annotations

from collections import defaultdict

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import Deployment, Users
from tests.e2e.test_admin import admin_headers, poll

TIMEOUT = 15

Labels = frozenset[tuple[str, str]]


def scrape(url: str) -> dict[str, dict[Labels, float]]:
    """``/metrics`` of one process: sample name → labels → value."""
    answer = httpx.get(f"{url}/metrics", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    out: dict[str, dict[Labels, float]] = defaultdict(dict)
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            out[sample.name][frozenset(sample.labels.items())] = sample.value
    return out


def total(server: Deployment, name: str, **labels: str) -> float:
    """The sum of ``name`` over every process and every series whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(value for url in server.ops_urls().values()
               for series, value in scrape(url).get(name, {}).items() if wanted <= series)



def test_a_chat_shows_in_the_nodes_metrics(server: Deployment, users: Users) -> None:
    def counts() -> dict[str, float]:
        return {
            "tcp users": total(server, "chatmq_connections", transport="tcp", kind="user"),
            "ws users": total(server, "chatmq_connections", transport="ws", kind="user"),
            "in": total(server, "chatmq_messages_in_total", type="message"),
            "accepted": total(server, "chatmq_messages_accepted_total", kind="direct", result="new"),
            "out": total(server, "chatmq_messages_out_total", type="message"),
            "acks": total(server, "chatmq_messages_out_total", type="ack"),
            # live, or from the replay when the message beat the recipient's online record to its router
            "latency count": sum(total(server, "chatmq_delivery_latency_seconds_count", path=p)
                                 for p in ("live", "replay")),
            "latency sum": sum(total(server, "chatmq_delivery_latency_seconds_sum", path=p)
                               for p in ("live", "replay")),
        }

    before = counts()
    alice, bob = users(transport="tcp"), users(transport="websockets")
    alice.wait_ack(alice.send(bob.uid, "hi bob"), TIMEOUT)
    assert bob.wait_messages(1, TIMEOUT)[0]["body"] == {"text": "hi bob"}
    bob.wait_ack(bob.send(alice.uid, "hi alice"), TIMEOUT)
    assert alice.wait_messages(1, TIMEOUT)[0]["body"] == {"text": "hi alice"}

    after = counts()
    delta = {k: after[k] - before[k] for k in before}
    assert delta["tcp users"] == 1
    assert delta["ws users"] == 1
    assert delta["in"] == 2
    assert delta["accepted"] == 2
    assert delta["out"] == 2
    assert delta["acks"] == 2
    assert delta["latency count"] == 2
    assert 0 <= delta["latency sum"] < 2 * TIMEOUT


def test_ended_connections_are_counted_by_reason(server: Deployment, users: Users) -> None:
    def ended(reason: str) -> float:
        return total(server, "chatmq_broker_disconnects_total", reason=reason)

    before = {r: ended(r) for r in ("client_disconnect", "kicked")}
    leaving = users()
    leaving.disconnect()  # a clean DISCONNECT
    poll(lambda: ended("client_disconnect") == before["client_disconnect"] + 1)
    kicked = users()
    answer = httpx.post(f"{server.api_url}/api/v1/admin/sessions/{kicked.client_id}/kick",
                        headers=admin_headers(server))
    assert answer.status_code == 204, answer.text
    poll(lambda: ended("kicked") == before["kicked"] + 1)


def test_pending_messages_are_counted_until_delivered(server: Deployment, users: Users) -> None:
    alice, bob = users(), users(connect=False)
    for i in range(3):
        alice.wait_ack(alice.send(bob.uid, {"n": i}), TIMEOUT)
    poll(lambda: total(server, "chatmq_pending_messages") == 3)  # every heartbeat_interval (5 s)
    bob.connect()
    assert len(bob.wait_messages(3, TIMEOUT)) == 3  # and confirmed delivered (the SDK's receipts)
    poll(lambda: total(server, "chatmq_pending_messages") == 0)


def test_every_process_is_live_and_ready(server: Deployment) -> None:
    urls = server.ops_urls()
    assert len(urls) == 1 or {"storage", "router-1", "group-router-1", "n1", "n2", "api-1"} <= set(urls)
    for name, url in urls.items():
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}, name
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 200, (name, ready.text)
        body = ready.json()
        assert body["ready"] is True
        assert body["components"]
        assert all(state == "ok" for state in body["components"].values())


def test_consumer_lag_is_exported_per_topic_and_group(server: Deployment) -> None:
    def lag_series() -> list[Labels]:
        return [series for url in server.ops_urls().values()
                for series in scrape(url).get("chatmq_bus_consumer_lag", {})]

    router_outbox = {("topic", "chat.outbox"), ("group", "router")}
    poll(lambda: any(router_outbox <= series for series in lag_series()))
    values = [v for url in server.ops_urls().values()
              for v in scrape(url).get("chatmq_bus_consumer_lag", {}).values()]
    assert all(v >= 0 for v in values)


def test_the_operator_sees_every_process_ready(server: Deployment, users: Users) -> None:
    headers = admin_headers(server)
    url = f"{server.api_url}/api/v1/admin/processes"
    someone = users(connect=False)
    assert httpx.get(url, headers={"Authorization": f"Bearer {someone.access_token}"}).status_code == 403
    expected = server.ops_urls()

    def listed() -> list[dict[str, object]]:
        answer = httpx.get(url, headers=headers)
        assert answer.status_code == 200, answer.text
        processes: list[dict[str, object]] = answer.json()
        return processes

    if len(expected) == 1:  # embedded: the one process
        poll(lambda: len(listed()) == 1 and listed()[0]["status"] == "ready")
        (process,) = listed()
        assert process["part"] == "embedded"
        assert process["node"] == "n1"
        assert process["ops_url"] == expected["embedded"]
        return
    poll(lambda: {str(p["instance"]) for p in listed() if p["status"] == "ready"} >= set(expected))
    by_name = {str(p["instance"]): p for p in listed()}
    for name, ops_url in expected.items():
        assert by_name[name]["ops_url"] == ops_url
        assert by_name[name]["not_ready"] == {}
    assert by_name["n1"]["part"] == "broker"
    assert by_name["n1"]["node"] == "n1"
    assert by_name["router-1"]["part"] == "router"
    assert by_name["router-1"]["node"] is None
