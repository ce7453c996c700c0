"""Presence and typing in the web client (issue 15): a contact's conversation says whether they are online
or when they were last seen, and "… is typing" while they compose; the page tells the server it is
typing at most once a second."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import WebSocket, expect

from tests.browser.conftest import Users

pytestmark = pytest.mark.browser


def test_a_contact_shows_online_then_last_seen(users: Users) -> None:
    alice, bob = users("alice"), users("bob")
    bob.add_contact(alice.username)  # presence is shown between mutual contacts
    alice.add_contact(bob.username)
    alice.open(bob.username)
    header = alice.page.get_by_role("region", name=bob.username).get_by_text(re.compile("^(online|last seen)"))
    expect(header).to_have_text("online")

    bob.page.close()  # bob's only browser goes: after the server's 5 s debounce he is offline
    expect(header).to_have_text(re.compile(r"^last seen \d"), timeout=20_000)
    bob.reopen()
    expect(header).to_have_text("online")
    alice.screenshot("presence-online")


def test_typing_shows_while_the_contact_composes_and_goes_when_they_send_or_stop(users: Users) -> None:
    alice, bob = users("alice"), users("bob")
    alice.add_contact(bob.username)
    bob.add_contact(alice.username)
    typing_sent: list[str] = []

    def watch(ws: WebSocket) -> None:
        def sent(payload: str | bytes) -> None:
            data = payload if isinstance(payload, bytes) else payload.encode()
            if b'"type":"typing"' in data:
                typing_sent.append("start" if b'"state":"start"' in data else "stop")
        ws.on("framesent", sent)

    bob.page.on("websocket", watch)
    bob.reload()  # the MQTT connection again, now watched
    alice.open(bob.username)
    bob.open(alice.username)
    indicator = alice.page.get_by_text(f"{bob.username} is typing…")
    expect(indicator).to_be_hidden()

    box = bob.page.get_by_role("textbox", name="Message")
    box.press_sequentially("see you at the station", delay=60)  # 22 keys in about 1.3 s
    expect(indicator).to_be_visible()
    assert typing_sent.count("start") == 1  # not one per key
    box.press("Enter")
    expect(alice.message("see you at the station")).to_be_visible()
    expect(indicator).to_be_hidden()
    assert typing_sent[-1] == "stop"

    box.press_sequentially("one more th", delay=60)
    expect(indicator).to_be_visible()
    expect(indicator).to_be_hidden(timeout=15_000)  # bob stopped typing: it goes without a message
    expect(alice.log.get_by_role("listitem")).to_have_count(1)
