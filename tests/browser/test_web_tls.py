"""The web client loaded over HTTPS speaks MQTT over secure WebSocket to the default ``wss_port`` (8084)
of its host, with no ``?mqtt=`` telling it where."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.chat_page import ChatPage, Target
from tests.e2e.harness import TlsServer, start_tls, stop_tls

pytestmark = pytest.mark.browser

DEFAULT_WSS_PORT = 8084


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is no owner
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def tls_server(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    if not port_free(DEFAULT_WSS_PORT):
        pytest.skip(f"port {DEFAULT_WSS_PORT} (the default wss_port the page picks) is taken")
    server = start_tls(tmp_path_factory.mktemp("web-tls"), wss_port=DEFAULT_WSS_PORT)
    yield server
    stop_tls(server)


def test_a_page_over_https_chats_over_wss_on_the_default_port(browser: Browser, tls_server: TlsServer) -> None:
    # an empty ?mqtt=: the page chooses for itself; the plain ws_port is a random one, so only the
    # default wss port (8084) reaches this server
    target = Target("tls", tls_server.https_url, "")
    pages: list[ChatPage] = []
    for label in ("alice", "bob"):
        # the throwaway CA is not the browser's: accept its certificate for the page and the WebSocket
        context = browser.new_context(ignore_https_errors=True)
        page = ChatPage(context, target, f"{label}_{len(pages)}{tls_server.https_port}")
        page.register()
        pages.append(page)
    alice, bob = pages
    try:
        alice.add_contact(bob.username)
        alice.open(bob.username)
        alice.send("over secure websocket")
        expect(bob.conversation(alice.username)).to_contain_text("over secure websocket")
        alice.expect_tick("over secure websocket", "Delivered")
    finally:
        for page in pages:
            page.context.close()
    assert not [e for p in pages for e in p.errors]
