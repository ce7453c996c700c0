"""``chatmq admin create``: the first admin, in SQLite (embedded) and in MongoDB (cluster settings)."""

from __future__ import annotations

import asyncio
import os
import pty
import select
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from chatmq.core.auth import hash_secret, verify_secret
from chatmq.core.settings import Settings
from chatmq.run.admin import open_store
from chatmq.run.cli import app
from chatmq.services.store.base import User

MONGO_URL = os.environ.get("CHATMQ_MONGO_URL")
SECRET = "operator-secret-1"


@dataclass
class Target:
    """One store for ``admin create``: the environment that points the command at it."""

    env: dict[str, str]

    def settings(self) -> Settings:
        # mongo_url "" (not None: that would leave the environment's) means SQLite
        return Settings.load(data_dir=Path(self.env["CHATMQ_DATA_DIR"]), mongo_url=self.env["CHATMQ_MONGO_URL"],
                             mongo_db=self.env.get("CHATMQ_MONGO_DB", "chatmq"))

    def user(self, username: str) -> User | None:
        async def get() -> User | None:
            async with open_store(self.settings()) as store:
                return await store.get_user_by_username(username)

        return asyncio.run(get())

    def add_user(self, username: str, password: str) -> None:
        async def add() -> None:
            async with open_store(self.settings()) as store:
                await store.create_user("u" + uuid.uuid4().hex[:16], username, hash_secret(password), None)

        asyncio.run(add())


@pytest.fixture(params=["sqlite", pytest.param("mongo", marks=[pytest.mark.cluster, pytest.mark.skipif(
    not MONGO_URL, reason="CHATMQ_MONGO_URL is not set")])])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    env = {"CHATMQ_DATA_DIR": str(tmp_path / "data"), "CHATMQ_MONGO_URL": "", "CHATMQ_CONFIG": ""}
    if request.param == "sqlite":
        yield Target(env)
        return
    assert MONGO_URL
    name = "t_admin_" + uuid.uuid4().hex[:12]
    yield Target({**env, "CHATMQ_MONGO_URL": MONGO_URL, "CHATMQ_MONGO_DB": name})
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]] = MongoClient(MONGO_URL)
    client.drop_database(name)
    client.close()


@pytest.fixture
def run(target: Target) -> Callable[..., Result]:
    def invoke(*args: str, stdin: str | None = None, **env: str) -> Result:
        return CliRunner().invoke(app, ["admin", "create", *args], input=stdin, env={**target.env, **env})

    return invoke


def test_creates_an_admin_who_can_log_in(run: Callable[..., Result], target: Target) -> None:
    r = run("operator", CHATMQ_ADMIN_PASSWORD=SECRET)
    assert r.exit_code == 0, r.output
    assert r.output.startswith("created admin operator (u")
    assert ("MongoDB 127.0.0.1" if target.env["CHATMQ_MONGO_URL"] else "SQLite") in r.output
    assert SECRET not in r.output
    user = target.user("operator")
    assert user is not None
    assert user.is_admin
    assert verify_secret(user.password_hash, SECRET)
    again = run("operator", CHATMQ_ADMIN_PASSWORD="another-password")
    assert again.exit_code == 0
    assert "already an admin (nothing changed): operator" in again.output
    user = target.user("operator")
    assert user is not None
    assert verify_secret(user.password_hash, SECRET)


def test_an_existing_user_is_promoted_only_when_asked(run: Callable[..., Result], target: Target) -> None:
    target.add_user("alice", "alice-password")
    refused = run("alice", CHATMQ_ADMIN_PASSWORD=SECRET)
    assert refused.exit_code == 1
    assert "user alice exists and is not an admin" in refused.output
    assert "--promote" in refused.output
    user = target.user("alice")
    assert user is not None
    assert not user.is_admin
    promoted = run("alice", "--promote", CHATMQ_ADMIN_PASSWORD=SECRET)
    assert promoted.exit_code == 0, promoted.output
    assert promoted.output.startswith("made admin alice")
    user = target.user("alice")
    assert user is not None
    assert user.is_admin
    assert verify_secret(user.password_hash, "alice-password")  # the password stays


def test_password_from_stdin(run: Callable[..., Result], target: Target) -> None:
    r = run("fromstdin", "--password-stdin", stdin=f"{SECRET}\n")
    assert r.exit_code == 0, r.output
    user = target.user("fromstdin")
    assert user is not None
    assert verify_secret(user.password_hash, SECRET)


@pytest.mark.parametrize(("args", "env", "message"), [
    (["X!"], {"CHATMQ_ADMIN_PASSWORD": SECRET}, "usernames are 3-32 characters"),
    (["ok_name"], {"CHATMQ_ADMIN_PASSWORD": "short"}, "the password needs 8 to 256 characters"),
    (["ok_name", "--password-stdin"], {}, "the password needs 8 to 256 characters"),
    (["ok_name"], {}, "no password: type it at the prompt"),
])
def test_bad_input_is_refused_clearly(run: Callable[..., Result], target: Target, args: list[str],
                                      env: dict[str, str], message: str) -> None:
    r = run(*args, stdin="", **env)
    assert r.exit_code == 2
    assert message in r.output
    assert "Traceback" not in r.output
    assert target.user("ok_name") is None


def _read_until(fd: int, needle: bytes, timeout: float = 30) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while needle not in out:
        assert time.monotonic() < deadline, f"waited for {needle!r}, got {out!r}"
        if select.select([fd], [], [], 0.5)[0]:
            try:
                out += os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                break
    return out


def _controlling_tty() -> None:
    import fcntl
    import termios

    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def test_the_prompt_on_a_terminal_does_not_echo(target: Target) -> None:
    main, side = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "chatmq.run.cli", "admin", "create", "typist"],
                            stdin=side, stdout=side, stderr=side, env={**os.environ, **target.env},
                            start_new_session=True, preexec_fn=_controlling_tty)
    os.close(side)
    try:
        # click prints "Password:", then getpass turns echo off and prints " "
        seen = _read_until(main, b"Password: ")
        os.write(main, f"{SECRET}\n".encode())
        seen += _read_until(main, b"Repeat for confirmation: ")
        os.write(main, f"{SECRET}\n".encode())
        seen += _read_until(main, b"created admin typist")
        assert proc.wait(60) == 0, seen
    finally:
        os.close(main)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert SECRET.encode() not in seen
    user = target.user("typist")
    assert user is not None
    assert user.is_admin
    assert verify_secret(user.password_hash, SECRET)


@pytest.mark.cluster
@pytest.mark.skipif(not MONGO_URL, reason="CHATMQ_MONGO_URL is not set")
def test_with_the_cluster_config_file(tmp_path: Path) -> None:
    """``-c config/cluster.toml`` (here a copy naming a database of the test's own) puts the admin
    in MongoDB, with no CHATMQ_MONGO_URL in the environment."""
    from chatmq.run.cluster import CLUSTER_CONFIG

    assert MONGO_URL
    name = "t_admin_" + uuid.uuid4().hex[:12]
    config = tmp_path / "cluster.toml"
    text = CLUSTER_CONFIG.read_text()
    assert 'mongo_db = "chatmq"' in text
    assert 'mongo_url = "mongodb://127.0.0.1:27017"' in text
    config.write_text(text.replace('mongo_db = "chatmq"', f'mongo_db = "{name}"')
                      .replace('mongo_url = "mongodb://127.0.0.1:27017"', f'mongo_url = "{MONGO_URL}"'))
    env: dict[str, str | None] = {"CHATMQ_MONGO_URL": None, "CHATMQ_MONGO_DB": None, "CHATMQ_CONFIG": None,
                                  "CHATMQ_ADMIN_PASSWORD": SECRET}
    try:
        r = CliRunner().invoke(app, ["admin", "create", "operator", "-c", str(config)], env=env)
        assert r.exit_code == 0, r.output
        assert f"in MongoDB {MONGO_URL.split('://')[-1]}, database {name}" in r.output
        target = Target({"CHATMQ_DATA_DIR": str(tmp_path), "CHATMQ_MONGO_URL": MONGO_URL, "CHATMQ_MONGO_DB": name})
        user = target.user("operator")
        assert user is not None
        assert user.is_admin
    finally:
        from pymongo import MongoClient

        client: MongoClient[dict[str, Any]] = MongoClient(MONGO_URL)
        client.drop_database(name)
        client.close()
