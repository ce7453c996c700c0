"""End to end, both modes: presence (issue 15). Mutual contacts hear of each other's changes (a reconnect
within 5 s is none; ``offline`` comes 5 s after the last device went), ``GET /presence`` shows them, a
user who is not a mutual contact sees nothing, and ``presence_visibility: nobody`` hides a user."""

from __future__ import annotations

from typing import Any

import pytest

from chatmq.devices.sdk import ApiError
from tests.e2e.harness import Users

TIMEOUT = 15


def changes(envs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["user"], e["state"]) for e in envs]


def test_mutual_contacts_see_each_others_presence_and_no_one_else_does(users: Users) -> None:
    alice, bob, carol, dave = users(), users(), users(), users()
    for a, b in ((alice, bob), (bob, alice), (alice, dave), (dave, alice)):
        a.add_contact(b.uid)
    carol.add_contact(alice.uid)  # one-sided: carol is not alice's contact
    assert dave.set_presence_visibility("nobody")["presence_visibility"] == "nobody"
    assert alice.wait_for(lambda: changes(alice.presence_changes), TIMEOUT) == [(dave.uid, "offline")]  # hidden

    alice.send_presence("away")
    assert bob.wait_for(lambda: changes(bob.presence_changes), TIMEOUT) == [(alice.uid, "away")]
    dave.send_presence("away")  # hidden: alice hears nothing of it

    bob.disconnect()
    bob.connect()  # back within 5 s: no change
    bob.send_presence("away")
    alice.wait_for(lambda: len(alice.presence_changes) == 2, TIMEOUT)
    assert changes(alice.presence_changes[1:]) == [(bob.uid, "away")]
    bob.disconnect()
    alice.wait_for(lambda: len(alice.presence_changes) == 3, TIMEOUT)
    offline = alice.presence_changes[2]
    assert (offline["user"], offline["state"]) == (bob.uid, "offline")
    assert isinstance(offline["last_seen"], int)

    shown = {p["user"]: p for p in alice.presence([bob.uid, carol.uid, dave.uid, alice.uid])}
    assert shown[bob.uid] == {"user": bob.uid, "state": "offline", "last_seen": offline["last_seen"]}
    assert shown[carol.uid] == {"user": carol.uid, "state": None, "last_seen": None}  # not mutual
    assert shown[dave.uid] == {"user": dave.uid, "state": "offline", "last_seen": None}  # online, but hidden
    assert shown[alice.uid]["state"] == "away"
    assert carol.presence([alice.uid]) == [{"user": alice.uid, "state": None, "last_seen": None}]
    assert changes(alice.presence_changes[1:]) == [(bob.uid, "away"), (bob.uid, "offline")]  # none of dave's
    assert carol.presence_changes == []

    dave.set_presence_visibility("contacts")  # shown again: as he is
    alice.wait_for(lambda: len(alice.presence_changes) == 4, TIMEOUT)
    assert changes(alice.presence_changes[3:]) == [(dave.uid, "away")]
    dave.set_presence_visibility("nobody")  # hidden: offline, never seen
    alice.wait_for(lambda: len(alice.presence_changes) == 5, TIMEOUT)
    hidden = alice.presence_changes[4]
    assert (hidden["user"], hidden["state"], hidden["last_seen"]) == (dave.uid, "offline", None)


def test_presence_asks_for_at_most_100_users(users: Users) -> None:
    alice = users(connect=False)
    with pytest.raises(ApiError) as refused:
        alice.presence([f"u{i}" for i in range(101)])
    assert refused.value.status_code == 422
