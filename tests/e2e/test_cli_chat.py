"""The README's two-terminal chat: ``chatmq client`` commands as subprocesses against ``chatmq serve``."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e.harness import Deployment


def cli(server: Deployment, *args: str, transport_ws: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "chatmq.run.cli", "client", *args, "--server", server.api_url]
    if args[0] in ("send", "send-file", "listen", "chat", "edit", "delete", "react"):
        cmd += ["--mqtt-port", str(server.ws_port if transport_ws else server.mqtt_port)]
        if transport_ws:
            cmd.append("--ws")
    return cmd


def run(cmd: list[str], home: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CHATMQ_HOME": str(home)}
    return subprocess.run(cmd, env=env, input=stdin, capture_output=True, text=True, timeout=60, check=False)


def test_two_terminals_chat(server: Deployment, tmp_path: Path) -> None:
    home = tmp_path / "home"
    for name in ("carla", "dmitri"):
        assert run(cli(server, "register", name, "--password", f"{name}-secret"), home).returncode == 0
        r = run(cli(server, "login", name, "--password", f"{name}-secret", "--profile", name), home)
        assert r.returncode == 0, r.stderr
    env = {**os.environ, "CHATMQ_HOME": str(home)}
    listener = subprocess.Popen(cli(server, "listen", "--profile", "carla", "--count", "3", "--timeout", "40"),
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        sent = run(cli(server, "send", "carla", "hello carla", "--profile", "dmitri"), home)
        assert sent.returncode == 0, sent.stderr
        assert sent.stdout.startswith("sent ")
        ws = run(cli(server, "send", "carla", "over websocket", "--profile", "dmitri", transport_ws=True), home)
        assert ws.returncode == 0, ws.stderr
        chat = run(cli(server, "chat", "carla", "--profile", "dmitri"), home, stdin="typed line\n")
        assert chat.returncode == 0, chat.stderr
        out, err = listener.communicate(timeout=45)
    finally:
        listener.kill()
    assert listener.returncode == 0, err
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert [line.split("] ", 1)[1] for line in lines] == [
        "dmitri: hello carla", "dmitri: over websocket", "dmitri: typed line"]


def test_send_without_login_is_a_clear_error(server: Deployment, tmp_path: Path) -> None:
    home = tmp_path / "empty"
    r = run(cli(server, "send", "nobody", "hi", "--profile", "ghost"), home)
    assert r.returncode == 1
    assert "log in" in r.stderr.lower() or "not logged in" in r.stderr.lower()
    assert "Traceback" not in r.stderr


def _account(server: Deployment, home: Path, name: str) -> None:
    assert run(cli(server, "register", name, "--password", f"{name}-secret"), home).returncode == 0
    r = run(cli(server, "login", name, "--password", f"{name}-secret", "--profile", name), home)
    assert r.returncode == 0, r.stderr


def test_ctrl_c_on_listen_exits_quietly(server: Deployment, tmp_path: Path) -> None:
    home = tmp_path / "home"
    _account(server, home, "quinn")
    env = {**os.environ, "CHATMQ_HOME": str(home)}
    listener = subprocess.Popen(cli(server, "listen", "--profile", "quinn"), env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        assert listener.stderr is not None
        first = listener.stderr.readline()  # printed once connected and subscribed
        assert first.startswith("* listening as quinn"), first
        listener.send_signal(signal.SIGINT)
        out, err = listener.communicate(timeout=30)
    finally:
        listener.kill()
    assert listener.returncode == 0, err
    assert (out, err) == ("", "")


def test_send_of_a_message_too_large_for_the_server_shows_too_large(server: Deployment, tmp_path: Path) -> None:
    home = tmp_path / "home"
    _account(server, home, "rosa")
    _account(server, home, "sam")
    for size in (70_000, 131_000):  # over max_payload (the server answers) and over max_packet_size (unread)
        r = run(cli(server, "send", "sam", "x" * size, "--profile", "rosa"), home)
        assert r.returncode == 1
        assert r.stderr.startswith("error: message refused: too_large: envelope of "), r.stderr
        assert r.stderr.rstrip().endswith("exceeds the limit of 65536")


def test_send_file_and_get_file(server: Deployment, tmp_path: Path) -> None:
    home = tmp_path / "home"
    _account(server, home, "tess")
    _account(server, home, "ugo")
    (tmp_path / "report.txt").write_text("quarterly numbers\n")
    sent = run(cli(server, "send-file", "ugo", str(tmp_path / "report.txt"), "--text", "the report",
                   "--profile", "tess"), home)
    assert sent.returncode == 0, sent.stderr
    assert re.fullmatch(r"sent \S+ \(file (f[0-9a-f]{32})\)\n", sent.stdout), sent.stdout
    file_id = sent.stdout.split("(file ")[1].rstrip(")\n")
    shown = run(cli(server, "listen", "--profile", "ugo", "--count", "1", "--timeout", "20"), home)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split("] ", 1)[1] == (
        f"tess: the report [file {file_id}: report.txt, 18 bytes, text/plain]\n")
    out = tmp_path / "got.txt"
    got = run(cli(server, "get-file", file_id, "--output", str(out), "--profile", "ugo"), home)
    assert got.returncode == 0, got.stderr
    assert got.stdout == f"saved {out} (18 bytes)\n"
    assert out.read_text() == "quarterly numbers\n"
    own = run(cli(server, "get-file", file_id, "--output", str(tmp_path / "own"), "--profile", "tess"), home)
    assert own.returncode == 0, own.stderr  # the uploader may read it too
    stranger = tmp_path / "stranger"
    _account(server, stranger, "vic")
    denied = run(cli(server, "get-file", file_id, "--output", str(tmp_path / "no"), "--profile", "vic"), stranger)
    assert denied.returncode == 1
    assert denied.stderr == "error: server refused the request: HTTP 404: no such file\n"


def test_message_actions_from_the_command_line(server: Deployment, tmp_path: Path) -> None:
    """``send --reply-to``, ``edit``, ``react``, ``delete``: what each prints, and a refusal's one line."""
    home = tmp_path / "home"
    for name in ("erin", "farid"):
        assert run(cli(server, "register", name, "--password", f"{name}-secret"), home).returncode == 0
        assert run(cli(server, "login", name, "--password", f"{name}-secret", "--profile", name), home).returncode == 0
    sent = run(cli(server, "send", "farid", "helo", "--profile", "erin"), home)
    sid = sent.stdout.split()[1]
    reply = run(cli(server, "send", "erin", "hi!", "--reply-to", sid, "--profile", "farid"), home)
    assert reply.returncode == 0, reply.stderr
    edited = run(cli(server, "edit", sid, "hello", "--profile", "erin"), home)
    assert re.fullmatch(rf"edited {sid} \(\S+\)\n", edited.stdout), edited.stderr
    reacted = run(cli(server, "react", sid, "👍", "--profile", "farid"), home)
    assert reacted.stdout == f"reacted 👍 on {sid}\n", reacted.stderr
    refused = run(cli(server, "edit", sid, "mine now", "--profile", "farid"), home)
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == "error: edit refused: forbidden: only its sender may edit a message\n"
    wrong = run(cli(server, "send", "farid", "re", "--reply-to", "01NOSUCHMESSAGE", "--profile", "erin"), home)
    assert (wrong.returncode, wrong.stderr) == (
        1, "error: message refused: not_found: reply_to '01NOSUCHMESSAGE' names no message of this conversation\n")
    deleted = run(cli(server, "delete", sid, "--profile", "erin"), home)
    assert re.fullmatch(rf"deleted {sid} for everyone \(\S+\)\n", deleted.stdout), deleted.stderr
    hidden = run(cli(server, "delete", sid, "--for-me", "--profile", "farid"), home)
    assert re.fullmatch(rf"deleted {sid} for you \(\S+\)\n", hidden.stdout), hidden.stderr
