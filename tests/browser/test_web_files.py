"""Attachments in the web client: a user attaches a picture, both sides see its preview, the recipient
downloads it whole; an upload the server refuses says why."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage
from tests.browser.conftest import Users
from tests.unit.test_files import png_header

pytestmark = pytest.mark.browser


def attach(user: ChatPage, path: Path) -> None:
    """Picks ``path`` with the composer's attach button, as a user does in the file dialog."""
    with user.page.expect_file_chooser() as chooser:
        user.page.get_by_role("button", name="Attach a file").click()
    chooser.value.set_files(str(path))


def chatting(users: Users) -> tuple[ChatPage, ChatPage]:
    """alice, with her conversation with bob open, and bob."""
    alice, bob = users("alice"), users("bob")
    alice.add_contact(bob.username)
    alice.open(bob.username)
    return alice, bob


def test_a_picture_is_sent_previewed_and_downloaded(users: Users, tmp_path: Path) -> None:
    alice, bob = chatting(users)
    photo = tmp_path / "beach.png"
    Image.new("RGB", (640, 480), (30, 120, 220)).save(photo, "PNG")

    attach(alice, photo)
    for user in (alice, bob):
        if user is bob:
            bob.open(alice.username)
        preview = user.log.get_by_role("img", name="Preview of beach.png")
        expect(preview).to_be_visible()
        expect(preview).to_have_js_property("naturalWidth", 320)  # the thumbnail, loaded
    expect(alice.page.get_by_role("progressbar", name="Upload progress")).to_be_hidden()
    expect(alice.log.get_by_role("listitem").last.get_by_role("img", name="Read", exact=True)).to_be_visible()

    with bob.page.expect_download() as download:
        bob.log.get_by_role("button", name="Download beach.png").click()
    assert download.value.suggested_filename == "beach.png"
    assert Path(download.value.path()).read_bytes() == photo.read_bytes()
    alice.screenshot("files-alice")


def test_an_upload_the_server_refuses_says_why(users: Users, tmp_path: Path) -> None:
    alice, _ = chatting(users)
    bomb = tmp_path / "huge.png"
    bomb.write_bytes(png_header(100_000, 100_000))
    attach(alice, bomb)
    expect(alice.page.get_by_role("alert").filter(has_text="Not sent")).to_contain_text("huge.png")
    expect(alice.page.get_by_role("alert").filter(has_text="Not sent")).to_contain_text("pixels")
    expect(alice.log.get_by_role("listitem")).to_have_count(0)
