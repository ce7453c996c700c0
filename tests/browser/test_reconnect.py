"""The connection indicator and automatic reconnect, across a restart of the embedded server
that outlasts the access tokens (the client refreshes them to connect again).

Needs a server it may stop and start, so it runs against its own embedded server rather than
``target``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.conftest import Users, embedded_target, make_users
from tests.e2e.harness import ServerProcess, serve

pytestmark = pytest.mark.browser


TOKEN_TTL = 3  # seconds: access tokens expire while the server is down


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    yield from serve(tmp_path, CHATMQ_ACCESS_TOKEN_TTL=str(TOKEN_TTL))


@pytest.fixture
def users(browser: Browser, server: ServerProcess, request: pytest.FixtureRequest) -> Iterator[Users]:
    yield from make_users(browser, embedded_target(server), request.node)


def test_reconnects_resubscribes_and_sends_what_was_typed_offline(users: Users, server: ServerProcess) -> None:
    alice = users("alice")
    bob = users("bob")
    alice.add_contact(bob.username)
    alice.open(bob.username)
    alice.send("before the restart")
    alice.expect_tick("before the restart", "Delivered")

    server.stop()
    for user in (alice, bob):
        expect(user.connection).to_have_text("Offline, reconnecting…", timeout=15_000)
    alice.send("typed while offline")
    alice.expect_tick("typed while offline", "Sending")
    alice.screenshot("reconnect-alice-offline")
    alice.page.wait_for_timeout((TOKEN_TTL + 1) * 1000)  # the tokens the pages hold have expired

    server.start()
    alice.expect_online()
    bob.expect_online()
    # the pending message goes out on reconnect, and bob, resubscribed, gets it
    alice.expect_tick("typed while offline", "Delivered")
    bob.expect_unread(alice.username, 2)
    bob.open(alice.username)
    expect(bob.message("typed while offline")).to_be_visible()
    alice.expect_tick("typed while offline", "Read")
