"""``chatmq client`` contacts, blocks, search, conversations, read, sessions and presence against the real
server (embedded and clustered), run in process: what each command prints, and its clear errors."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from chatmq.devices.cli import app
from tests.e2e.harness import Deployment

runner = CliRunner()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CHATMQ_HOME", str(tmp_path / "home"))
    for name in ("CHATMQ_SERVER", "CHATMQ_PASSWORD", "CHATMQ_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "home"


def client(server: Deployment, profile: str, *args: str, mqtt: bool = False) -> Result:
    """``chatmq client ARGS`` as ``profile`` against ``server``."""
    extra = ["--mqtt-port", str(server.mqtt_port)] if mqtt else []
    return runner.invoke(app, [*args, "--server", server.api_url, "--profile", profile, *extra])


def ok(result: Result) -> list[str]:
    """The lines a command that succeeded printed."""
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result.stdout.splitlines()


def refused(result: Result) -> str:
    """The one error line of a command that failed (exit code 1, no traceback)."""
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.output
    [line] = result.stderr.splitlines()
    return line


def account(server: Deployment, name: str) -> str:
    """Register and log in ``name`` (its profile has its name); its user id."""
    ok(runner.invoke(app, ["register", name, "--password", f"{name}-secret", "--server", server.api_url]))
    [line] = ok(client(server, name, "login", name, "--password", f"{name}-secret"))
    found = re.search(r"\((u\w+)\)", line)
    assert found, line
    return found.group(1)


def test_contacts_presence_and_blocks_from_the_command_line(server: Deployment, home: Path) -> None:
    tag = uuid.uuid4().hex[:8]  # the deployment is shared
    ana, ben, ghost = f"ana{tag}", f"ben{tag}", f"ghost{tag}"
    ana_id, ben_id = account(server, ana), account(server, ben)

    assert ok(client(server, ana, "contacts", "list")) == ["no contacts"]
    assert ok(client(server, ana, "contacts", "add", ben)) == [f"added {ben} to your contacts"]
    [listed] = ok(client(server, ana, "contacts", "list"))
    assert re.fullmatch(rf"{ben} \({ben_id}\) added \d{{4}}-\d\d-\d\d \d\d:\d\d", listed), listed
    assert refused(client(server, ana, "contacts", "add", ghost)) == f"error: no such user: {ghost}"
    assert ok(client(server, ana, "contacts", "sync", ben, ghost, "--phone", "+15550001234")) == [
        f"{ben} -> {ben_id}", f"not users: {ghost}, +15550001234"]
    assert refused(client(server, ana, "contacts", "sync", "--phone", "+1555")).startswith(
        "error: server refused the request: HTTP 422: body.phones.0: ")

    # presence shows between mutual contacts only
    assert ok(client(server, ana, "presence", ben)) == [f"{ben}: not shown"]
    ok(client(server, ben, "contacts", "add", ana))
    assert ok(client(server, ana, "presence", ben, ben)) == [f"{ben}: offline, never seen"]
    ok(client(server, ana, "contacts", "remove", ben))
    assert refused(client(server, ana, "contacts", "remove", ben)) == f"error: {ben} is not on your contact list"

    assert ok(client(server, ben, "blocks")) == ["nobody blocked"]
    assert ok(client(server, ben, "block", ana)) == [f"blocked {ana}"]
    assert ok(client(server, ben, "blocks")) == [f"{ana} ({ana_id})"]
    assert refused(client(server, ana, "send", ben, "hi", mqtt=True)) == \
        f"error: message refused: blocked: {ben_id} blocked you"
    assert ok(client(server, ben, "unblock", ana)) == [f"unblocked {ana}"]
    assert refused(client(server, ben, "unblock", ana)) == f"error: {ana} is not blocked"
    assert refused(client(server, ben, "block", ghost)) == f"error: no such user: {ghost}"


def test_conversations_read_search_and_sessions_from_the_command_line(server: Deployment, home: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    ana, ben = f"ana{tag}", f"ben{tag}"
    ana_id, _ = account(server, ana), account(server, ben)
    word = f"lunch{tag}"
    [sent] = ok(client(server, ana, "send", ben, f"{word} at noon", mqtt=True))
    sid = sent.removeprefix("sent ")

    [line] = ok(client(server, ben, "conversations"))
    assert re.fullmatch(rf"{ana} \({ana_id}\): 1 unread: {ana}: {word} at noon  \[[\d: -]+\]", line), line
    assert ok(client(server, ben, "read", ana)) == [f"read {ana} up to {sid}"]
    assert ok(client(server, ben, "conversations"))[0].startswith(f"{ana} ({ana_id}): 0 unread: ")
    assert refused(client(server, ben, "read", "--group", "g0000nosuchgroup")).startswith(
        "error: server refused the request")

    [found] = ok(client(server, ben, "search", word.upper(), "--with", ana))
    assert re.fullmatch(rf"\[[\d: -]+\] {ana}: {word} at noon  #{sid}", found), found
    assert ok(client(server, ben, "search", f"dinner{tag}")) == ["no messages found"]
    assert refused(client(server, ben, "search", "?!")).startswith("error: server refused the request: ")

    [device] = ok(client(server, ana, "sessions", "list"))
    client_id = device.split()[0]
    assert re.fullmatch(rf"{client_id}  offline  first [\d: -]+  last [\d: -]+  \(this profile\)", device), device
    assert refused(client(server, ana, "sessions", "sign-out", "nope")) == "error: no device nope of yours"
    assert ok(client(server, ana, "sessions", "sign-out", client_id)) == [f"signed out {client_id}"]
    assert ok(client(server, ana, "sessions", "list")) == ["no devices"]
