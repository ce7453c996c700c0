"""Refresh tokens rotate (issue 12): each refresh spends the token used and a spent one shown
again ends the login. Tabs of one browser share the login, so they must never both refresh with
the same token: two tabs of one user, with access tokens that live 6 s, refresh many times over
and both stay signed in and chatting (the client takes turns with a Web Lock and adopts the
tokens another tab got)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Route, expect

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


NO_WEB_LOCKS = "Object.defineProperty(Navigator.prototype, 'locks', { get: () => undefined });"
"""A page served over plain HTTP from another host has no Web Locks (they exist in secure contexts only)."""


def test_tabs_without_web_locks_opening_at_once_never_spend_one_refresh_token_twice(
    browser: Browser, rotation_target: Target, short_users: Users
) -> None:
    """Two tabs of one login that open together each refresh the tokens at start-up. Without Web Locks
    they take turns through localStorage, so the second adopts the first's new tokens instead of
    sending the refresh token the first just spent (which would end the login: no reuse grace)."""
    bob = short_users("bob")
    ctx = browser.new_context(viewport=DESKTOP)
    try:
        ctx.add_init_script(NO_WEB_LOCKS)
        alice = ChatPage(ctx, rotation_target, f"alice_{bob.username[4:]}")
        alice.register()
        second = ChatPage(ctx, rotation_target, alice.username)
        second.page.goto(rotation_target.base_url + "/")
        second.expect_online()
        refreshes: list[int] = []

        def slow_refresh(route: Route) -> None:  # each refresh on its way a while: the two overlap
            time.sleep(0.3)
            route.continue_()

        for tab in (alice, second):
            tab.page.on("response", lambda r: refreshes.append(r.status) if r.url.endswith("/auth/refresh") else None)
            tab.page.route("**/auth/refresh", slow_refresh)
        for tab in (alice, second):  # both open again at once: each refreshes as it starts
            tab.page.evaluate("setTimeout(() => location.reload(), 0)")
        for tab in (alice, second):
            tab.expect_online()
            expect(tab.page.get_by_label("Username", exact=True)).to_be_hidden()  # not signed out
        assert refreshes, "no refresh at start-up"
        assert set(refreshes) == {200}, refreshes  # never a spent token: that would end the login
        second.add_contact(bob.username)
        second.open(bob.username)
        second.send("still signed in")
        bob.open(alice.username)
        expect(bob.message("still signed in")).to_be_visible()
    finally:
        ctx.close()
