"""``ChatPage``: one user's browser tab on the web client, driven the way a person would.

Everything is found by what a user (or a screen reader) sees: labels, roles, accessible
names and visible text; never by CSS internals of the client.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
from playwright.sync_api import BrowserContext, Locator, Page, expect

PASSWORD = "correct horse battery"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"


@dataclass(frozen=True)
class Target:
    """Where the system under test is: the web client's page and its MQTT-over-WebSocket URL.

    The embedded server gives two origins (API port, WebSocket port); behind nginx (the
    cluster) both are one origin and ``mqtt_url`` is ``ws://host/mqtt``.
    """

    name: str
    base_url: str
    mqtt_url: str

    @property
    def page_url(self) -> str:
        """The page, told where MQTT is (the client remembers it for later visits)."""
        return f"{self.base_url}/?mqtt={quote(self.mqtt_url, safe='')}"

    def register(self, username: str) -> None:
        """Creates an account over REST (for users that the test does not drive in a page)."""
        httpx.post(f"{self.base_url}/api/v1/auth/register",
                   json={"username": username, "password": PASSWORD}).raise_for_status()


class ChatPage:
    """A user's tab. ``context`` keeps the user's storage, so a new page signs in by itself."""

    def __init__(self, context: BrowserContext, target: Target, username: str) -> None:
        self.context = context
        self.target = target
        self.username = username
        self.page: Page = context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    # --- signing in --------------------------------------------------------------------
    def register(self, display_name: str | None = None) -> None:
        """Opens the page, creates the account and waits until it is online."""
        self.page.goto(self.target.page_url)
        self.page.get_by_label("Username", exact=True).fill(self.username)
        self.page.get_by_label("Password", exact=True).fill(PASSWORD)
        if display_name:
            self.page.get_by_label("Display name").fill(display_name)
        self.page.get_by_role("button", name="Create account").click()
        self.expect_online()

    def log_in(self) -> None:
        """Opens the page and signs in to the existing account (a fresh browser of the user)."""
        self.page.goto(self.target.page_url)
        self.page.get_by_label("Username", exact=True).fill(self.username)
        self.page.get_by_label("Password", exact=True).fill(PASSWORD)
        self.page.get_by_role("button", name="Log in").click()
        self.expect_online()

    def reopen(self) -> None:
        """Closes the tab and opens a new one in the same browser profile (signs in from storage)."""
        self.page.close()
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(self.target.base_url + "/")
        self.expect_online()

    def reload(self) -> None:
        """Reloads the tab: the same device of the user (the tab keeps its MQTT client id), which
        knows only what the history API gives."""
        self.page.reload()
        self.expect_online()

    @property
    def connection(self) -> Locator:
        """The connection indicator (a live status region)."""
        return self.page.get_by_role("status")

    def expect_online(self) -> None:
        expect(self.connection).to_have_text("Online", timeout=20_000)

    # --- the conversation list ---------------------------------------------------------
    def add_contacts(self, *usernames: str) -> None:
        """Types the usernames (comma-separated) into the contact box and waits for their entries."""
        self.page.get_by_label("Add contact by username").fill(", ".join(usernames))
        self.page.get_by_role("button", name="Add", exact=True).click()
        for username in usernames:
            expect(self.conversation(username)).to_be_visible()

    def add_contact(self, username: str) -> None:
        self.add_contacts(username)

    def conversation(self, title: str) -> Locator:
        """The conversation's entry in the list; its accessible name is the title, then
        ``(group)`` for groups, then ``, N unread`` when there are unread messages."""
        return self.page.get_by_role("navigation", name="Conversations").get_by_role(
            "button", name=re.compile(rf"^{re.escape(title)}( \(group\))?(, \d+ unread)?$"))

    def expect_unread(self, title: str, count: int) -> None:
        """The entry shows ``count`` unread (0: no badge at all)."""
        entry = self.conversation(title)
        if count:
            expect(entry).to_have_accessible_name(re.compile(rf", {count} unread$"))
            expect(entry).to_contain_text(str(count))
        else:
            expect(entry).not_to_have_accessible_name(re.compile("unread"))

    def show_list(self) -> None:
        """On a phone, where an open conversation covers the list, goes back to the list."""
        back = self.page.get_by_role("button", name="Back to conversations")
        if back.is_visible():
            back.click()
        expect(self.page.get_by_role("navigation", name="Conversations")).to_be_visible()

    def open(self, title: str) -> None:
        """Opens a conversation from the list (going back to the list first on a phone)."""
        self.show_list()
        self.conversation(title).click()
        expect(self.page.get_by_role("heading", level=2, name=title)).to_be_visible()

    # --- the open conversation ---------------------------------------------------------
    @property
    def log(self) -> Locator:
        return self.page.get_by_role("log", name="Messages")

    def send(self, text: str) -> None:
        """Types into the message box and presses Enter."""
        box = self.page.get_by_role("textbox", name="Message")
        box.fill(text)
        box.press("Enter")
        expect(box).to_have_value("")

    def message(self, text: str) -> Locator:
        """The message bubble showing exactly ``text`` (with its sender, time and tick)."""
        return self.log.get_by_role("listitem").filter(
            has=self.page.get_by_text(text, exact=True))

    def expect_tick(self, text: str, status: str) -> None:
        """Own message ``text`` shows the tick ``status``: Sending, Sent, Delivered or Read."""
        expect(self.message(text).get_by_role("img")).to_have_accessible_name(status, timeout=15_000)

    def screenshot(self, name: str) -> Path:
        """Saves a PNG of the tab into test-artifacts/browser/."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path))
        return path
