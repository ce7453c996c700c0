"""Outages of the whole: every part restarted (the store keeps everything), and Kafka restarted
while users keep sending."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import KAFKA, ClusterDeployment, Users

TIMEOUT = 30
REPO = Path(__file__).resolve().parents[2]


def bodies(messages: list[dict[str, Any]]) -> list[Any]:
    return [m["body"]["n"] for m in messages]


def test_the_cluster_restarts_with_its_store(deployment: ClusterDeployment, users: Users) -> None:
    alice, bob = users(), users(connect=False)
    for i in range(25):
        alice.wait_ack(alice.send(bob.uid, {"n": i}), TIMEOUT)
    alice.close()

    deployment.cluster.stop()
    codes = {name: part.proc.returncode for name, part in deployment.cluster.parts.items() if part.proc}
    assert set(codes.values()) == {0}, codes
    deployment.cluster.start()

    bob.connect()  # logs in with the token issued before the restart
    assert bodies(bob.wait_messages(25, TIMEOUT)) == list(range(25))
    carol = users()  # and new users register and chat
    carol.wait_ack(carol.send(bob.uid, {"n": 25}), TIMEOUT)
    assert bodies(bob.wait_messages(26, TIMEOUT))[-1] == 25


def _services(*args: str) -> None:
    done = subprocess.run([str(REPO / "scripts" / "services.sh"), *args], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def _kafka_is_ours() -> bool:
    """The Kafka under test is the one scripts/services.sh runs (so the test may restart it)."""
    port = os.environ.get("CHATMQ_KAFKA_PORT", "9092")
    status = subprocess.run([str(REPO / "scripts" / "services.sh"), "status", "kafka"], capture_output=True,
                            text=True, timeout=60, check=False)
    return f"127.0.0.1:{port}" == KAFKA and status.returncode == 0


def test_messages_sent_while_kafka_restarts_arrive_after_it(deployment: ClusterDeployment, users: Users) -> None:
    if not _kafka_is_ours():
        pytest.skip("the Kafka under test is not the one scripts/services.sh runs here")
    alice, bob = users(), users()
    alice.wait_ack(alice.send(bob.uid, {"n": 0}), TIMEOUT)
    bob.wait_messages(1, TIMEOUT)

    _services("down", "kafka")
    try:
        sent = [alice.send(bob.uid, {"n": i}) for i in range(1, 11)]
        time.sleep(2)
        assert not any(cid in alice.acks for cid in sent)  # nothing can be durable now
    finally:
        _services("up", "kafka")

    for cid in sent:
        alice.wait_ack(cid, 120)
    assert bodies(bob.wait_messages(11, 120)) == list(range(11))
    assert alice.errors == []
