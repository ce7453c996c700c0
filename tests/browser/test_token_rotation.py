"""Refresh tokens rotate (issue 12): each refresh spends the token used and a spent one shown
again ends the login. Tabs of one browser share the login, so they must never both refresh with
the same token: two tabs of one user, with access tokens that live 6 s, refresh many times over
and both stay signed in and chatting (the client takes turns with a Web Lock and adopts the
tokens another tab got)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.chat_page import ChatPage, Target
from tests.browser.conftest import DESKTOP, Users, embedded_target, make_users
from tests.e2e.harness import ServerProcess, serve

pytestmark = pytest.mark.browser

TTL = 6


@pytest.fixture(scope="module")
def short_lived(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from serve(tmp_path_factory.mktemp("chatmq-rotation"), CHATMQ_ACCESS_TOKEN_TTL=str(TTL))


@pytest.fixture
def rotation_target(short_lived: ServerProcess) -> Target:
    return embedded_target(short_lived)


@pytest.fixture
def short_users(browser: Browser, rotation_target: Target, request: pytest.FixtureRequest) -> Iterator[Users]:
    yield from make_users(browser, rotation_target, request.node)


def test_two_tabs_of_one_login_outlive_many_refreshes(
    browser: Browser, rotation_target: Target, short_users: Users
) -> None:
    bob = short_users("bob")
    ctx = browser.new_context(viewport=DESKTOP)
    try:
        alice = ChatPage(ctx, rotation_target, f"alice_{bob.username[4:]}")
        alice.register()
        second = ChatPage(ctx, rotation_target, alice.username)  # a second tab, signed in from storage
        second.page.goto(rotation_target.base_url + "/")
        second.expect_online()
        refreshes: list[int] = []
        for tab in (alice, second):
            tab.page.on("response", lambda r: refreshes.append(r.status) if r.url.endswith("/auth/refresh") else None)

        alice.add_contact(bob.username)
        second.add_contact(bob.username)  # each tab keeps its own list
        second.page.wait_for_timeout(TTL * 3 * 1000)  # several refreshes, by both tabs
        assert len(refreshes) >= 3, refreshes
        assert set(refreshes) == {200}, refreshes  # never a spent token: that would end the login
        for n, tab in enumerate((alice, second)):
            tab.expect_online()
            expect(tab.page.get_by_label("Username", exact=True)).to_be_hidden()  # not signed out
            tab.open(bob.username)
            tab.send(f"still here {n}")
        bob.open(alice.username)
        expect(bob.message("still here 0")).to_be_visible()
        expect(bob.message("still here 1")).to_be_visible()
        assert alice.errors == []
        assert second.errors == []
    finally:
        ctx.close()
