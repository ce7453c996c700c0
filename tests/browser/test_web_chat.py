"""The web client in a real browser: users chat 1:1 and in groups, see ticks and unread counts,
get what was sent while they were away, and scroll back through history.

Runs against every ``target`` (conftest.py). Screenshots go to test-artifacts/browser/.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, expect

from chatmq.devices.sdk import ChatClient
from tests.browser.chat_page import PASSWORD, ChatPage, Target
from tests.browser.conftest import Users

pytestmark = pytest.mark.browser


def test_two_users_chat_both_ways_and_ticks_turn_to_read(users: Users) -> None:
    alice = users("alice")
    bob = users("bob", phone=True)

    contact_box = alice.page.get_by_label("Add contact by username")
    contact_box.fill("nobody_by_that_name")
    contact_box.press("Enter")
    expect(alice.page.get_by_role("alert").filter(has_text="No user named")).to_have_text(
        "No user named nobody_by_that_name")
    alice.add_contact(bob.username)
    alice.open(bob.username)
    alice.send("hi bob, lunch today?")
    # bob is online but has not opened the conversation: delivered, not read
    alice.expect_tick("hi bob, lunch today?", "Delivered")
    bob.expect_unread(alice.username, 1)
    expect(bob.conversation(alice.username)).to_contain_text("hi bob, lunch today?")  # preview

    bob.open(alice.username)
    expect(bob.message("hi bob, lunch today?")).to_be_visible()
    alice.expect_tick("hi bob, lunch today?", "Read")
    bob.show_list()  # on a phone the list is a screen of its own
    bob.expect_unread(alice.username, 0)

    bob.open(alice.username)
    bob.send("yes, 12:30 at the usual place")
    expect(alice.message("yes, 12:30 at the usual place")).to_be_visible()
    bob.expect_tick("yes, 12:30 at the usual place", "Read")  # alice has the conversation open
    alice.expect_unread(bob.username, 0)
    alice.screenshot("two-users-alice")
    bob.screenshot("two-users-bob-phone")

    alice.send("far too long " * 6000)  # over the default 64 KiB payload limit
    expect(alice.log.get_by_role("listitem").last.get_by_role("img")).to_have_accessible_name("Not sent")
    expect(alice.page.get_by_role("alert").filter(has_text="Not sent")).to_contain_text("too large")
    alice.send("a short one again")
    alice.expect_tick("a short one again", "Read")
    expect(alice.page.get_by_role("alert").filter(has_text="Not sent")).to_have_count(0)


def test_messages_sent_while_offline_appear_after_reconnect(users: Users) -> None:
    alice = users("alice")
    bob = users("bob")
    bob.add_contact(alice.username)

    bob.page.close()  # bob goes away; his browser profile keeps him signed in
    alice.add_contact(bob.username)
    alice.open(bob.username)
    for text in ("are you there?", "call me when you are back"):
        alice.send(text)
        alice.expect_tick(text, "Sent")
    alice.page.wait_for_timeout(500)
    alice.expect_tick("call me when you are back", "Sent")  # still only sent: nobody received it

    bob.reopen()
    bob.expect_unread(alice.username, 2)
    alice.expect_tick("are you there?", "Delivered")
    alice.expect_tick("call me when you are back", "Delivered")
    bob.open(alice.username)
    expect(bob.message("are you there?")).to_be_visible()
    expect(bob.message("call me when you are back")).to_be_visible()
    expect(bob.log.get_by_role("listitem")).to_have_count(2)  # each once, though also in history
    alice.expect_tick("call me when you are back", "Read")
    bob.screenshot("offline-bob-after-reconnect")


def test_group_chat_of_three_with_member_management(users: Users) -> None:
    alice = users("alice")
    bob = users("bob")
    carol = users("carol", phone=True)
    alice.add_contacts(bob.username, carol.username)

    page = alice.page
    page.get_by_role("button", name="New group").click()
    dialog = page.get_by_role("dialog", name="New group")
    dialog.get_by_label("Group name").fill("Weekend plans")
    dialog.get_by_label(bob.username).check()
    dialog.get_by_label(carol.username).check()
    dialog.get_by_role("button", name="Create group").click()
    expect(page.get_by_role("heading", level=2, name="Weekend plans")).to_be_visible()

    for member in (bob, carol):  # the group_created event puts it into their lists
        expect(member.conversation("Weekend plans")).to_be_visible()
    alice.send("hiking on Saturday?")
    for member in (bob, carol):
        member.expect_unread("Weekend plans", 1)
    alice.expect_tick("hiking on Saturday?", "Delivered")
    bob.open("Weekend plans")
    expect(bob.message("hiking on Saturday?")).to_contain_text(alice.username)  # the sender's name
    alice.page.wait_for_timeout(300)
    alice.expect_tick("hiking on Saturday?", "Delivered")  # read by one of two only
    carol.open("Weekend plans")
    alice.expect_tick("hiking on Saturday?", "Read")

    bob.send("count me in")
    carol.send("me too, I'll bring snacks")
    for member in (alice, bob, carol):
        expect(member.message("count me in")).to_be_visible()
        expect(member.message("me too, I'll bring snacks")).to_be_visible()
    expect(alice.message("count me in")).to_contain_text(bob.username)
    bob.expect_tick("count me in", "Read")
    alice.screenshot("group-alice")
    carol.screenshot("group-carol-phone")

    # the admin removes carol: the group leaves her list
    page.get_by_role("button", name="Members").click()
    members = page.get_by_role("dialog", name="Members of Weekend plans")
    expect(members.get_by_role("listitem")).to_have_count(3)
    members.get_by_role("button", name=f"Remove {carol.username}").click()
    expect(members.get_by_role("listitem")).to_have_count(2)
    expect(carol.conversation("Weekend plans")).to_have_count(0)
    alice.page.keyboard.press("Escape")  # closes the dialog, not the conversation
    alice.send("see you all at 9")
    expect(bob.message("see you all at 9")).to_be_visible()

    # ... adds her back and renames the group: both show up for the members
    page.get_by_role("button", name="Members").click()
    members.get_by_label("Add a contact").select_option(label=carol.username)
    members.get_by_role("button", name="Add member").click()
    expect(members.get_by_role("listitem")).to_have_count(3)
    members.get_by_label("Group name").fill("Saturday hike")
    members.get_by_role("button", name="Rename").click()
    expect(page.get_by_role("dialog", name="Members of Saturday hike")).to_be_visible()
    page.get_by_role("dialog").get_by_role("button", name="Close").click()
    expect(page.get_by_role("heading", level=2, name="Saturday hike")).to_be_visible()
    for member in (bob, carol):
        expect(member.conversation("Saturday hike")).to_be_visible()
    alice.send("welcome back carol")
    carol.open("Saturday hike")
    expect(carol.message("welcome back carol")).to_be_visible()


def test_history_scrolls_back_to_the_first_message(users: Users, target: Target) -> None:
    alice = users("alice")
    bob_name = "bob_hist_" + alice.username.split("_")[1]
    target.register(bob_name)
    alice.add_contact(bob_name)
    alice.open(bob_name)
    texts = [f"note {i:02d}" for i in range(1, 41)]
    for text in texts:
        alice.send(text)
    alice.expect_tick(texts[-1], "Sent")

    # a reloaded tab knows only what the history API gives, a page at a time (a new tab would be a new
    # device of alice's, which first gets the conversations of the last sync_window days: issue 15)
    alice.reload()
    alice.open(bob_name)
    items = alice.log.get_by_role("listitem")
    expect(items.last).to_contain_text("note 40")
    expect(alice.message("note 01")).to_have_count(0)
    expect(alice.page.get_by_role("button", name="Load older messages")).to_be_visible()

    alice.log.hover()
    for _ in range(10):  # scroll up with the mouse wheel until the first message is there
        if alice.message("note 01").count():
            break
        alice.page.mouse.wheel(0, -5000)
        alice.page.wait_for_timeout(300)
    expect(alice.message("note 01")).to_be_visible()
    expect(items).to_have_count(40)
    assert [t.split("\n")[0] for t in items.all_inner_texts()] == texts  # oldest first, none twice
    expect(alice.page.get_by_role("button", name="Load older messages")).to_be_hidden()
    alice.screenshot("history-scrolled-back")


def test_usable_by_keyboard_alone(browser: Browser, target: Target) -> None:
    suffix = uuid.uuid4().hex[:6]
    alice, bob = f"alice_kb_{suffix}", f"bob_kb_{suffix}"
    for name in (alice, bob):  # the accounts exist; everything in the page is done by keyboard
        target.register(name)
    context = browser.new_context()
    try:
        tab = ChatPage(context, target, alice)
        page, keys = tab.page, tab.page.keyboard
        page.goto(target.page_url)
        expect(page.get_by_label("Username", exact=True)).to_be_focused()
        keys.type(alice)
        keys.press("Tab")
        keys.type(PASSWORD)
        keys.press("Enter")
        tab.expect_online()

        expect(page.get_by_label("Add contact by username")).to_be_focused()
        keys.type(bob)
        keys.press("Enter")
        entry = tab.conversation(bob)
        expect(entry).to_be_visible()
        for _ in range(8):  # Tab on to the new conversation
            if entry.evaluate("e => e === document.activeElement"):
                break
            keys.press("Tab")
        expect(entry).to_be_focused()
        keys.press("Enter")
        expect(page.get_by_role("textbox", name="Message")).to_be_focused()
        keys.type("typed, not clicked")
        keys.press("Enter")
        tab.expect_tick("typed, not clicked", "Sent")
        keys.press("Escape")  # closes the conversation, back on its entry in the list
        expect(entry).to_be_focused()
        expect(entry).to_contain_text("typed, not clicked")

        page.get_by_role("button", name="Log out").press("Enter")
        expect(page.get_by_label("Username", exact=True)).to_be_focused()
        page.reload()  # signed out for good: the tokens are gone from the browser
        page.wait_for_timeout(1500)  # time enough to sign in again from stored tokens, were there any
        expect(page.get_by_role("button", name="Log in")).to_be_visible()
        expect(page.get_by_role("status")).to_be_hidden()
        assert not tab.errors
    finally:
        context.close()


def test_an_edit_and_a_delete_change_the_message_shown(users: Users, target: Target) -> None:
    """Message actions made by another client (here the SDK) show at once in the open conversation, and
    again from history after a reload; a deleted message's text is gone from both (the page's own message
    menu: test_web_message_actions.py)."""
    alice = users("alice")
    name = f"bob_{uuid.uuid4().hex[:6]}"
    target.register(name)
    mqtt = urlsplit(target.mqtt_url)
    bob = ChatClient(target.base_url, mqtt.hostname or "127.0.0.1", mqtt.port or 80, transport="websockets",
                     ws_path=mqtt.path)
    try:
        bob.login(name, PASSWORD)
        bob.connect()
        alice.add_contact(name)
        alice.open(name)
        uid = bob.contacts([alice.username])[alice.username]
        kept = bob.wait_ack(bob.send(uid, "see you at 5"), 15)["id"]
        gone = bob.wait_ack(bob.send(uid, "the secret plan"), 15)["id"]
        expect(alice.message("the secret plan")).to_be_visible()
        bob.wait_ack(bob.edit(kept, "see you at 6"), 15)
        bob.wait_ack(bob.delete(gone), 15)
        for _ in range(2):  # live, then from history after a reload
            expect(alice.message("see you at 6 (edited)")).to_be_visible()
            expect(alice.message("This message was deleted")).to_be_visible()
            expect(alice.log).not_to_contain_text("secret")
            alice.reload()  # the same device: what it shows comes from history
            alice.open(name)
    finally:
        bob.close()
