"""The web client's conversation list comes from the server (issue 15): a fresh browser of a user shows
the 1:1 conversations and groups with their last message and unread count, newest activity first; a
second browser of the same user stays in sync (what one sends shows in the other as the user's own, and
what one reads is read in the other)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage, Target
from tests.browser.conftest import Users

pytestmark = pytest.mark.browser


def list_titles(user: ChatPage) -> list[str]:
    """The names of the conversation list's entries, top to bottom."""
    entries = user.page.get_by_role("navigation", name="Conversations").locator("button.conversation")
    return [e.get_attribute("aria-label") or "" for e in entries.all()]


def test_a_fresh_browser_lists_the_conversations_newest_first_with_unread_counts(users: Users) -> None:
    alice, bob, carol = users("alice"), users("bob"), users("carol")
    alice.add_contacts(carol.username, bob.username)
    alice.open(carol.username)
    alice.send("hi carol")
    expect(carol.conversation(alice.username)).to_be_visible()
    alice.page.keyboard.press("Escape")  # closes the conversation: what comes later stays unread
    expect(alice.page.get_by_role("heading", level=2, name="No conversation open")).to_be_visible()
    bob.add_contact(alice.username)
    bob.open(alice.username)
    bob.send("are you coming tonight?")
    bob.send("bring the map")
    alice.expect_unread(bob.username, 2)

    laptop = users("alice", same_as=alice)  # a browser that never saw these conversations
    expect(laptop.conversation(bob.username)).to_be_visible()
    expect(laptop.conversation(carol.username)).to_be_visible()
    laptop.expect_unread(bob.username, 2)
    expect(laptop.conversation(bob.username)).to_contain_text("bring the map")  # the last message
    laptop.expect_unread(carol.username, 0)
    expect(laptop.conversation(carol.username)).to_contain_text("hi carol")
    assert list_titles(laptop) == [f"{bob.username}, 2 unread", carol.username]  # newest activity first

    carol.open(alice.username)
    carol.send("yes?")
    laptop.expect_unread(carol.username, 1)
    expect(laptop.conversation(carol.username)).to_contain_text("yes?")
    assert list_titles(laptop)[0] == f"{carol.username}, 1 unread"

    # opening it in one browser marks it read on the server: the sender sees Read, the other browser no count
    laptop.open(bob.username)
    expect(laptop.message("are you coming tonight?")).to_be_visible()
    bob.expect_tick("bring the map", "Read")
    alice.expect_unread(bob.username, 0)
    laptop.reload()
    laptop.expect_unread(bob.username, 0)
    laptop.expect_unread(carol.username, 1)
    laptop.screenshot("conversations-fresh-browser")


def test_a_second_browser_of_the_same_user_shows_what_the_first_sent_as_its_own(users: Users) -> None:
    alice, bob = users("alice"), users("bob")
    phone = users("alice", phone=True, same_as=alice)
    alice.add_contact(bob.username)
    alice.open(bob.username)
    alice.send("sent from the laptop")

    expect(phone.conversation(bob.username)).to_contain_text("sent from the laptop")
    phone.expect_unread(bob.username, 0)  # one's own message is never unread
    phone.open(bob.username)
    # her own message: with a tick (only one's own messages have one), not as a message from someone else
    expect(phone.message("sent from the laptop").get_by_role("img")).to_have_accessible_name(
        re.compile("Sent|Delivered|Read"))

    phone.send("and this from the phone")
    expect(alice.message("and this from the phone").get_by_role("img")).to_have_accessible_name(
        re.compile("Sent|Delivered|Read"))
    expect(bob.conversation(alice.username)).to_be_visible()
    bob.open(alice.username)
    for text in ("sent from the laptop", "and this from the phone"):
        expect(bob.message(text)).to_be_visible()
        expect(bob.message(text).get_by_role("img")).to_have_count(0)
    expect(bob.log.get_by_role("listitem")).to_have_count(2)
    alice.expect_tick("and this from the phone", "Read")


def test_contacts_an_earlier_version_kept_in_the_browser_move_to_the_server(users: Users, target: Target) -> None:
    alice = users("alice")
    bob_name = "bob_old_" + alice.username.split("_")[1]
    target.register(bob_name)
    user_id = alice.page.evaluate("async () => (await (await fetch('/api/v1/users/me', {headers: {"
                                  "Authorization: 'Bearer ' + JSON.parse(localStorage.getItem('chatmq:tokens'))"
                                  ".access_token}})).json()).user_id")
    # what the client before issue 15 stored: the contacts' usernames in this browser only
    alice.page.evaluate("([k, v]) => localStorage.setItem(k, v)", [f"chatmq:{user_id}:contacts", f'["{bob_name}"]'])
    alice.reload()
    expect(alice.conversation(bob_name)).to_be_visible()
    laptop = users("alice", same_as=alice)  # now on the server: another browser lists bob too
    expect(laptop.conversation(bob_name)).to_be_visible()
    assert alice.page.evaluate("k => localStorage.getItem(k)", f"chatmq:{user_id}:contacts") is None
