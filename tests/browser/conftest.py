"""Fixtures of the browser tests: Debian's Chromium (headless, through Playwright), the system
under test (``target``) and users, each in a browser context of their own.

``target`` is parametrized by ``TARGETS``: the embedded server, and a cluster (two broker
nodes and the API behind nginx, on the real Kafka and MongoDB; marked ``cluster``). Every
test that takes ``target`` runs against both.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, ViewportSize, expect, sync_playwright

from chatmq.services.api.web import default_web_dir
from tests.browser.chat_page import ChatPage, Target
from tests.e2e.harness import ClusterDeployment, ServerProcess, cluster, serve

CHROMIUM = os.environ.get("CHATMQ_CHROMIUM", "/usr/bin/chromium")
# as the machine notes advise: no sandbox (root), and no calls home (the network is closed)
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]
PHONE = ViewportSize(width=390, height=844)
DESKTOP = ViewportSize(width=1100, height=700)
TARGETS = ["embedded", pytest.param("cluster", marks=pytest.mark.cluster)]

expect.set_options(timeout=10_000)  # what a user sees may take a moment on a busy 2-core CI machine


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium; skips (saying how to fix it) when it or the built client is missing."""
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: `scripts/web.sh --browser` installs Debian's package")
    if not (default_web_dir() / "index.html").is_file():
        pytest.skip(f"the web client is not built ({default_web_dir()}): run scripts/web.sh")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def embedded_target(server: ServerProcess) -> Target:
    return Target("embedded", server.api_url, f"ws://{server.host}:{server.ws_port}/mqtt")


@pytest.fixture(scope="module")
def embedded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from serve(tmp_path_factory.mktemp("chatmq-web"))


@pytest.fixture(scope="module")
def cluster_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterDeployment]:
    yield from cluster(tmp_path_factory.mktemp("cluster-web"))


@pytest.fixture(scope="module", params=TARGETS)
def target(request: pytest.FixtureRequest) -> Target:
    """The system under test (see the module docstring)."""
    if request.param == "embedded":
        server: ServerProcess = request.getfixturevalue("embedded_server")
        return embedded_target(server)
    if request.param == "cluster":
        front: ClusterDeployment = request.getfixturevalue("cluster_server")
        return Target("cluster", front.api_url, f"ws://{front.host}:{front.ws_port}/mqtt")
    raise AssertionError(f"unknown target {request.param}")


Users = Callable[..., ChatPage]


FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call" and report.failed:
        item.stash[FAILED] = True
    return report


def make_users(browser: Browser, target: Target, test: pytest.Item | None = None) -> Iterator[Users]:
    """Yields ``make(label, phone=False, same_as=None)``: a new user (unique username starting with
    ``label``) registered through the page in a fresh browser context (phone-sized with ``phone``);
    with ``same_as``, that page's user signed in again in a fresh browser context (another device).
    Afterwards checks that no page raised an uncaught error; when ``test`` failed, saves a
    screenshot of every open page (``failed-<test>-<user>.png`` in test-artifacts/browser/)."""
    contexts: list[BrowserContext] = []
    pages: list[ChatPage] = []

    def make(label: str, phone: bool = False, same_as: ChatPage | None = None) -> ChatPage:
        ctx = browser.new_context(viewport=PHONE if phone else DESKTOP,
                                  is_mobile=phone, has_touch=phone)
        contexts.append(ctx)
        page = ChatPage(ctx, target, same_as.username if same_as else f"{label}_{uuid.uuid4().hex[:6]}")
        pages.append(page)
        if same_as:
            page.log_in()
        else:
            page.register()
        return page

    yield make
    if test is not None and test.stash.get(FAILED, False):
        for page in pages:
            if not page.page.is_closed():
                page.screenshot(f"failed-{test.name}-{page.username}")
    for ctx in contexts:
        ctx.close()
    errors = [e for p in pages for e in p.errors]
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture
def users(browser: Browser, target: Target, request: pytest.FixtureRequest) -> Iterator[Users]:
    yield from make_users(browser, target, request.node)
