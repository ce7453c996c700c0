"""End to end, both modes: ``typing`` (issue 15) reaches the recipients that are online, at most once a
second per conversation and state, and is never stored."""

from __future__ import annotations

from tests.e2e.harness import Users

TIMEOUT = 15


def test_typing_reaches_online_recipients_only_and_is_never_stored(users: Users) -> None:
    alice, bob = users(), users()
    carol = users(connect=False)
    alice.send_typing(to=bob.uid)
    alice.send_typing(to=bob.uid)  # within a second of the first: dropped
    alice.send_typing(to=carol.uid)  # offline: nothing is kept for her
    alice.wait_ack(alice.send(bob.uid, "typed"), TIMEOUT)
    alice.wait_ack(alice.send(carol.uid, "typed too"), TIMEOUT)
    bob.wait_messages(1, TIMEOUT)  # typing goes ahead of a later message of the conversation
    assert bob.typing == [{"type": "typing", "from": alice.uid, "to": bob.uid, "group": None, "state": "start"}]
    alice.send_typing(to=bob.uid, state="stop")
    bob.wait_for(lambda: len(bob.typing) == 2, TIMEOUT)
    assert bob.typing[1]["state"] == "stop"
    carol.connect()
    carol.wait_messages(1, TIMEOUT)
    assert carol.typing == []
    assert [m["body"] for m in alice.history(bob.uid)["messages"]] == [{"text": "typed"}]


def test_typing_in_a_group_reaches_its_online_members(users: Users) -> None:
    alice, bob = users(), users()
    gid = alice.create_group("typists", [bob.uid])["group_id"]
    bob.wait_for(lambda: bob.events, TIMEOUT)
    alice.send_typing(group=gid)
    got = bob.wait_for(lambda: bob.typing, TIMEOUT)
    assert got == [{"type": "typing", "from": alice.uid, "to": bob.uid, "group": gid, "state": "start"}]
    outsider = users()
    outsider.send_typing(group=gid)
    error = outsider.wait_for(lambda: outsider.errors, TIMEOUT)[0]
    assert error["code"] == "not_member"
