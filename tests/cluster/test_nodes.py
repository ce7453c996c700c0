"""Users on different broker nodes: 1:1 and group chat across nodes, offline replay on the other
node, and kill -9 of a router copy or a broker node in the middle of a stream."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.harness import ClusterDeployment, Peer, Users

TIMEOUT = 30
PASSWORD = "correct horse battery"
OnNode = Callable[[str], Peer]


@pytest.fixture
def on_node(deployment: ClusterDeployment) -> Iterator[OnNode]:
    """``on_node("n1")``: a new user connected to broker node n1 directly (not through nginx)."""
    made: list[Peer] = []

    def make(node: str) -> Peer:
        peer = Peer(deployment.api_url, deployment.host, deployment.node_port(node))
        made.append(peer)
        name = f"u{uuid.uuid4().hex[:12]}"
        peer.register(name, PASSWORD)
        peer.login(name, PASSWORD)
        peer.connect()
        return peer

    yield make
    for peer in made:
        peer.close()


def bodies(messages: list[dict[str, Any]]) -> list[Any]:
    return [m["body"]["n"] for m in messages]


def group_messages(peer: Peer) -> list[dict[str, Any]]:
    return [m for m in peer.messages if m["group"]]


def node_of(deployment: ClusterDeployment, user_id: str) -> str:
    """The node the registry has ``user_id`` on (waiting for the entry)."""
    deadline = time.monotonic() + TIMEOUT
    while (node := deployment.nodes_of(user_id).get(user_id)) is None:
        assert time.monotonic() < deadline, f"{user_id} is not in the registry"
        time.sleep(0.1)
    return node


def wait_registry(deployment: ClusterDeployment, expected: dict[str, str]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while deployment.nodes_of(*expected) != expected:
        assert time.monotonic() < deadline, f"registry {deployment.nodes_of(*expected)} != {expected}"
        time.sleep(0.1)


def test_users_on_different_nodes_chat_one_to_one_and_in_a_group(deployment: ClusterDeployment,
                                                                  on_node: OnNode) -> None:
    alice, bob, carol = on_node("n1"), on_node("n2"), on_node("n2")
    wait_registry(deployment, {alice.uid: "n1", bob.uid: "n2", carol.uid: "n2"})

    for i in range(20):
        alice.send(bob.uid, {"n": i})
        bob.send(alice.uid, {"n": i})
    assert bodies(bob.wait_messages(20, TIMEOUT)) == list(range(20))
    assert bodies(alice.wait_messages(20, TIMEOUT)) == list(range(20))

    group = httpx.post(f"{deployment.api_url}/api/v1/groups", json={"name": "across", "members": [bob.uid, carol.uid]},
                       headers={"Authorization": f"Bearer {alice.access_token}"}).json()
    for i in range(20, 30):
        alice.send_group(group["group_id"], {"n": i})
    for peer in (bob, carol):
        peer.wait_for(lambda p=peer: len(group_messages(p)) >= 10, TIMEOUT)  # type: ignore[misc]
        assert bodies(group_messages(peer)) == list(range(20, 30))
        assert {m["group"] for m in group_messages(peer)} == {group["group_id"]}


def test_an_offline_user_gets_everything_in_order_on_the_other_node(deployment: ClusterDeployment,
                                                                       on_node: OnNode, users: Users) -> None:
    alice = on_node("n1")
    bob = on_node("n1")
    bob.disconnect()
    for i in range(60):
        alice.wait_ack(alice.send(bob.uid, {"n": i}), TIMEOUT)

    # bob comes back on the other node
    again = Peer(deployment.api_url, deployment.host, deployment.node_port("n2"))
    try:
        again.set_tokens(bob.uid, bob.access_token)
        again.connect()
        assert bodies(again.wait_messages(60, TIMEOUT)) == list(range(60))
        wait_registry(deployment, {bob.uid: "n2"})
        again.disconnect()
    finally:
        again.close()

    # and once more, through nginx (whichever node it picks), as the same device: only what is new
    for i in range(60, 70):
        alice.wait_ack(alice.send(bob.uid, {"n": i}), TIMEOUT)
    third = users(connect=False, client_id=again.client_id)
    third.set_tokens(bob.uid, bob.access_token)
    third.connect()
    assert bodies(third.wait_messages(10, TIMEOUT)) == list(range(60, 70))


def _send_paced(sender: Peer, to: str, n: int, per_second: float, at: int, then: Callable[[], None]) -> list[str]:
    """Send ``{"n": 0..n-1}`` at ``per_second`` (under the rate limit), calling ``then`` after message ``at``."""
    sent: list[str] = []
    for i in range(n):
        sent.append(sender.send(to, {"n": i}))
        if i == at:
            then()
        time.sleep(1 / per_second)
    return sent


def test_kill_9_a_router_copy_in_the_middle_of_1000_messages(deployment: ClusterDeployment, users: Users) -> None:
    alice, bob = users(), users()
    n = 1000
    sent = _send_paced(alice, bob.uid, n, 150, 300, lambda: deployment.cluster.kill("router-1"))
    acks = [alice.wait_ack(cid, 90)["id"] for cid in sent]
    assert len(set(acks)) == n  # one server id per message
    got = bob.wait_messages(n, 90)
    assert bodies(got) == list(range(n))  # none lost, none shown twice, in order
    assert [m["id"] for m in got] == acks
    assert alice.errors == []


def test_kill_9_a_broker_node_its_clients_reconnect_through_nginx_and_lose_nothing(
    deployment: ClusterDeployment, users: Users, on_node: OnNode
) -> None:
    bob = users()  # through nginx: on whichever node
    victim = node_of(deployment, bob.uid)
    survivor = "n2" if victim == "n1" else "n1"
    alice = on_node(survivor)
    n = 100
    from_bob: list[str] = []
    bob_sender = threading.Thread(target=lambda: from_bob.extend(
        _send_paced(bob, alice.uid, n, 40, n + 1, lambda: None)))
    bob_sender.start()
    try:
        _send_paced(alice, bob.uid, n, 40, 30, lambda: deployment.cluster.kill(victim))
    finally:
        bob_sender.join()

    assert bodies(bob.wait_messages(n, 90)) == list(range(n))
    assert bodies(alice.wait_messages(n, 90)) == list(range(n))
    for cid in from_bob:
        bob.wait_ack(cid, 90)
    assert deployment.nodes_of(bob.uid) == {bob.uid: survivor}
    deployment.cluster.restart(victim)  # back for the tests after this one
