"""The message menu of the web client (issue 15): reply, edit, delete (for me, for everyone) and react;
what one user does shows live in the other's browser and again from history after a reload. Blocking a
user from the conversation header, and searching one's messages."""

from __future__ import annotations

import pytest
from playwright.sync_api import Locator, expect

from tests.browser.chat_page import ChatPage
from tests.browser.conftest import Users

pytestmark = pytest.mark.browser


def menu(user: ChatPage, text: str) -> Locator:
    """Opens the menu of the message showing ``text``; returns the menu."""
    user.message(text).get_by_role("button", name="Message menu").click()
    return user.page.get_by_role("group", name="Message actions")


def chatting(users: Users) -> tuple[ChatPage, ChatPage]:
    """alice and bob, each with their conversation open."""
    alice, bob = users("alice"), users("bob")
    alice.add_contact(bob.username)
    bob.add_contact(alice.username)
    alice.open(bob.username)
    bob.open(alice.username)
    return alice, bob


def test_reply_edit_delete_and_react_show_live_and_after_reload(users: Users) -> None:
    alice, bob = chatting(users)
    bob.send("dinner at 7?")
    alice.send("I might be late")
    alice.send("my bank pin is 1234")
    alice.send("bad joke")
    for text in ("I might be late", "my bank pin is 1234", "bad joke"):
        alice.expect_tick(text, "Read")

    menu(alice, "dinner at 7?").get_by_role("button", name="Reply").click()
    expect(alice.page.get_by_text(f"Replying to {bob.username}: dinner at 7?")).to_be_visible()
    alice.send("yes, see you there")
    menu(alice, "I might be late").get_by_role("button", name="Edit").click()
    expect(alice.page.get_by_role("textbox", name="Message")).to_have_value("I might be late")
    alice.send("I will be on time")
    menu(alice, "my bank pin is 1234").get_by_role("button", name="Delete for everyone").click()
    menu(alice, "bad joke").get_by_role("button", name="Delete for me").click()
    menu(alice, "dinner at 7?").get_by_role("button", name="React 👍").click()
    # bob's message has no Edit and no Delete for everyone in alice's menu
    theirs = menu(alice, "dinner at 7?")
    expect(theirs.get_by_role("button", name="Edit")).to_have_count(0)
    expect(theirs.get_by_role("button", name="Delete for everyone")).to_have_count(0)
    alice.page.get_by_role("button", name="Message menu").first.click()  # closes it

    expect(alice.message("bad joke")).to_have_count(0)
    for user in (bob, alice):
        for _ in range(2):  # live, then from history after a reload
            reply = user.message("yes, see you there")
            expect(reply).to_contain_text(f"{bob.username}: dinner at 7?")  # the quoted message
            expect(user.message("I will be on time (edited)")).to_be_visible()
            expect(user.message("This message was deleted")).to_be_visible()
            expect(user.log).not_to_contain_text("1234")
            who = "you" if user is alice else alice.username
            expect(user.message("dinner at 7?").get_by_role("button", name=f"👍 1: {who}")).to_be_visible()
            user.reload()
            user.open(bob.username if user is alice else alice.username)
    expect(alice.message("bad joke")).to_have_count(0)  # deleted for alice only
    expect(bob.message("bad joke")).to_be_visible()

    # a second click on one's reaction takes it back, for both
    alice.message("dinner at 7?").get_by_role("button", name="👍 1: you").click()
    for user in (alice, bob):
        expect(user.message("dinner at 7?").get_by_role("button", name="👍 1", exact=False)).to_have_count(0)
    alice.screenshot("message-actions-alice")


def test_a_blocked_user_is_told_and_unblocking_lets_messages_through(users: Users) -> None:
    alice, bob = chatting(users)
    bob.page.get_by_role("button", name=f"Block {alice.username}").click()
    expect(bob.page.get_by_role("button", name=f"Unblock {alice.username}")).to_be_visible()

    alice.send("why no answer?")
    expect(alice.message("why no answer?").get_by_role("img")).to_have_accessible_name("Not sent")
    expect(alice.page.get_by_role("alert").filter(has_text="Not sent")).to_contain_text("block")
    bob.page.wait_for_timeout(500)
    expect(bob.message("why no answer?")).to_have_count(0)

    bob.page.get_by_role("button", name=f"Unblock {alice.username}").click()
    expect(bob.page.get_by_role("button", name=f"Block {alice.username}")).to_be_visible()
    alice.send("hello again")
    expect(bob.message("hello again")).to_be_visible()
    expect(bob.message("why no answer?")).to_have_count(0)  # what was refused does not come back
    expect(alice.page.get_by_role("alert").filter(has_text="Not sent")).to_have_count(0)


def test_search_finds_the_callers_messages_and_opens_their_conversation(users: Users) -> None:
    alice, bob = chatting(users)
    carol = users("carol")
    carol.add_contact(bob.username)
    carol.open(bob.username)
    carol.send("pineapple pizza for bob only")
    bob.send("shall we order pineapple pizza tonight")
    alice.send("no pizza for me")
    expect(bob.message("no pizza for me")).to_be_visible()
    alice.page.keyboard.press("Escape")  # closes the conversation
    expect(alice.page.get_by_role("heading", level=2, name="No conversation open")).to_be_visible()

    alice.page.get_by_label("Search messages").fill("pineapple pizza")
    alice.page.get_by_role("button", name="Search", exact=True).click()
    results = alice.page.get_by_role("list", name="Search results").get_by_role("button")
    expect(results).to_have_count(1)  # carol's message to bob is not alice's to find
    expect(results).to_contain_text("shall we order pineapple pizza tonight")
    results.click()
    expect(alice.page.get_by_role("heading", level=2, name=bob.username)).to_be_visible()
    expect(alice.message("shall we order pineapple pizza tonight")).to_be_visible()

    alice.page.get_by_label("Search messages").fill("-")  # no word: the server's 422, said
    alice.page.get_by_role("button", name="Search", exact=True).click()
    expect(alice.page.get_by_role("alert").filter(has_text="words")).to_have_text(
        "q needs 1 to 10 words (letters or digits)")
