"""Configured limits: a smaller payload limit and a per-connection rate limit, set through the environment."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.harness import Deployment, Users, cluster, serve, user_factory

TIMEOUT = 15
LIMITS = {"CHATMQ_MAX_PAYLOAD": "1024", "CHATMQ_RATE_LIMIT_PER_SEC": "2", "CHATMQ_RATE_LIMIT_BURST": "5"}


@pytest.fixture(scope="module", params=["embedded", pytest.param("cluster", marks=pytest.mark.cluster)])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    if request.param == "embedded":
        yield from serve(tmp_path_factory.mktemp("limits"), **LIMITS)
    else:
        yield from cluster(tmp_path_factory.mktemp("limits-cluster"), env=LIMITS)


@pytest.fixture
def users(server: Deployment) -> Iterator[Users]:
    yield from user_factory(server)


def test_payload_limit_comes_from_the_environment(users: Users) -> None:
    alice, bob = users(), users()
    alice.send(bob.uid, {"blob": "x" * 1100})
    assert alice.wait_for(lambda: alice.errors, TIMEOUT)[0]["code"] == "too_large"
    alice.wait_ack(alice.send(bob.uid, {"blob": "x" * 900}), TIMEOUT)


def test_a_flooding_connection_is_rate_limited_and_others_carry_on(users: Users) -> None:
    alice, bob, carol = users(), users(), users()
    sent = [alice.send(bob.uid, {"n": i}) for i in range(12)]

    def refused() -> set[str]:
        return {e["client_id"] for e in alice.errors if e["code"] == "rate_limited"}

    alice.wait_for(lambda: all(cid in alice.acks or cid in refused() for cid in sent), TIMEOUT)
    acked = [cid for cid in sent if cid in alice.acks]
    assert 5 <= len(acked) <= 8  # the burst of 5, plus what 2/s refilled meanwhile
    assert set(sent) - set(acked) == refused()  # every refused message was told so, with its client id
    # what was accepted arrives, in order; the rest was refused, not lost silently
    got = bob.wait_messages(len(acked), TIMEOUT)
    assert [m["client_id"] for m in got] == acked
    carol.wait_ack(carol.send(bob.uid, "not limited"), TIMEOUT)
