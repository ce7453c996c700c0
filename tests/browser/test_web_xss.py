"""A hostile user's text never runs as HTML in the web client (issue 12): a display name, a message
and a group name made of markup show up as the very characters typed, everywhere they appear
(conversation list, heading, sender label, message bubble, members dialog), and none of their
event handlers or scripts runs in the other user's page (``window.__xss`` stays undefined).

Runs against every ``target`` (conftest.py).
"""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.chat_page import ChatPage, Target
from tests.browser.conftest import DESKTOP, Users

pytestmark = pytest.mark.browser

NAME = '<img src=x onerror="window.__xss=1">'
MESSAGE = '<img src=x onerror="window.__xss=2"><script>window.__xss=3</script><b>bold?</b>'
GROUP = '<svg onload="window.__xss=4"><img src=x onerror="window.__xss=5">'
GROUP_MESSAGE = '"><img src=x onerror="window.__xss=6"> & &amp; <i>'


def no_markup_ran(page: ChatPage) -> None:
    assert page.page.evaluate("typeof window.__xss") == "undefined"
    assert page.page.locator("img[src='x'], svg[onload], script:not([src])").count() == 0
    assert page.page.locator("[onerror], [onload]").count() == 0


def test_hostile_markup_in_names_and_messages_shows_as_text(browser: Browser, target: Target, users: Users) -> None:
    alice = users("alice")
    ctx = browser.new_context(viewport=DESKTOP)
    try:
        mallory = ChatPage(ctx, target, f"mallory_{uuid.uuid4().hex[:6]}")
        mallory.register(display_name=NAME)
        expect(mallory.page.get_by_text(f"Signed in as {NAME}", exact=True)).to_be_visible()

        mallory.add_contact(alice.username)
        mallory.open(alice.username)
        mallory.send(MESSAGE)
        # alice's list gets a conversation named by mallory's display name: shown as typed
        alice.open(NAME)
        expect(alice.page.get_by_role("heading", level=2, name=NAME)).to_have_text(NAME)
        expect(alice.message(MESSAGE)).to_be_visible()
        expect(alice.conversation(NAME)).to_contain_text(MESSAGE)  # the preview

        page = mallory.page
        page.get_by_role("button", name="New group").click()
        dialog = page.get_by_role("dialog", name="New group")
        dialog.get_by_label("Group name").fill(GROUP)
        dialog.get_by_label(alice.username).check()
        dialog.get_by_role("button", name="Create group").click()
        expect(page.get_by_role("heading", level=2, name=GROUP)).to_be_visible()
        mallory.send(GROUP_MESSAGE)

        alice.open(GROUP)
        expect(alice.page.get_by_role("heading", level=2, name=GROUP)).to_have_text(GROUP)
        expect(alice.message(GROUP_MESSAGE)).to_contain_text(NAME)  # the sender label too
        alice.page.get_by_role("button", name="Members").click()
        members = alice.page.get_by_role("dialog", name=f"Members of {GROUP}")
        expect(members).to_be_visible()
        expect(members.get_by_role("listitem").filter(has_text=NAME)).to_have_count(1)
        alice.screenshot("xss-as-text-alice")
        for who in (alice, mallory):
            no_markup_ran(who)
    finally:
        ctx.close()
    assert not mallory.errors
