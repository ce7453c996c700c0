"""The ``Store`` contract for message actions (``apply_actions``, and what ``history`` shows of them), on
every implementation of ``tests.unit.test_store`` (SQLite; MongoDB when ``CHATMQ_MONGO_URL`` is set)."""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import replace
from pathlib import Path

from chatmq.core import ids
from chatmq.services.store.base import ActionKind, NewAction, Store
from chatmq.services.store.sqlite import SQLiteStore
from tests.unit.test_store import make_store, new_message, store

__all__ = ["make_store", "store"]  # the fixtures, run here


def action(sender: str, kind: ActionKind, target: str, *, client_id: str | None = None, body: bytes = b"",
           emoji: str = "", to: list[str] | None = None) -> NewAction:
    sid = ids.server_id()
    envelopes = {u: b'{"type":"%s","id":"%s","from":"%s","group":null}' % (kind.encode(), sid.encode(), sender.encode())
                 for u in to or []}
    return NewAction(sid, client_id or f"a-{sid}", sender, kind, target, ids.now_ms(), body, emoji, envelopes)


async def test_edit_reactions_and_delete_show_in_history(store: Store) -> None:
    m = new_message("alice", to="bob")
    await store.accept_messages([m])
    edit = action("alice", "edit", m.server_id, body=b'{"text": "edited"}', to=["bob"])
    results = await store.apply_actions([
        edit, action("bob", "react", m.server_id, emoji="👍"), action("alice", "react", m.server_id, emoji="👍"),
        action("bob", "react", m.server_id, emoji="🎉"), action("bob", "react", m.server_id, emoji="👍"),
        action("alice", "unreact", m.server_id, emoji="👍")])
    assert [r.duplicate for r in results] == [False] * 6
    [shown] = await store.history(m.conversation, None, 10)
    assert (shown.body, shown.edited_at, shown.deleted, shown.reactions) == (
        {"text": "edited"}, edit.ts, False, {"👍": ["bob"], "🎉": ["bob"]})
    assert [i.item_id for i in await store.pending("bob", 0, 10)] == [m.server_id, edit.server_id]

    await store.apply_actions([action("alice", "delete", m.server_id, to=["bob"])])
    [gone] = await store.history(m.conversation, None, 10)
    assert (gone.server_id, gone.body, gone.deleted, gone.reactions) == (m.server_id, {}, True, {})
    # the message's and its edit's copies waiting for bob went with their bodies; the delete waits
    [left] = await store.pending("bob", 0, 10)
    assert b'"type":"delete"' in left.envelope
    assert b"edited" not in left.envelope
    # an edit or a reaction of a deleted message changes nothing
    await store.apply_actions([action("alice", "edit", m.server_id, body=b'{"text": "back"}'),
                               action("bob", "react", m.server_id, emoji="👍")])
    [still] = await store.history(m.conversation, None, 10)
    assert (still.body, still.deleted, still.reactions) == ({}, True, {})


async def test_an_action_resent_with_its_client_id_is_stored_once(store: Store) -> None:
    m = new_message("alice", to="bob")
    await store.accept_messages([m])
    first = action("bob", "react", m.server_id, client_id="r1", emoji="👍", to=["alice"])
    again = action("bob", "unreact", m.server_id, client_id="r1", emoji="👍", to=["alice"])
    [r1] = await store.apply_actions([first])
    [r2] = await store.apply_actions([again])
    assert (r2.server_id, r2.ts, r2.duplicate) == (r1.server_id, r1.ts, True)
    [shown] = await store.history(m.conversation, None, 10)
    assert shown.reactions == {"👍": ["bob"]}  # the repeat did not apply
    assert [i.item_id for i in await store.pending("alice", 0, 10)] == [first.server_id]


async def test_deleted_for_me_is_hidden_from_that_viewer_only(store: Store) -> None:
    older, newer = new_message("alice", to="bob"), new_message("alice", to="bob")
    await store.accept_messages([older, newer])
    await store.apply_actions([action("bob", "hide", newer.server_id)])
    assert [m.server_id for m in await store.history(older.conversation, None, 10, viewer="bob")] == [older.server_id]
    assert [m.server_id for m in await store.history(older.conversation, None, 10, viewer="alice")] == [
        newer.server_id, older.server_id]
    assert len(await store.history(older.conversation, None, 10)) == 2


async def test_a_reply_keeps_what_it_answers(store: Store) -> None:
    m = new_message("alice", to="bob")
    reply = replace(new_message("bob", to="alice"), reply_to=m.server_id)
    await store.accept_messages([m, reply])
    [got] = await store.get_messages([reply.server_id])
    assert got.reply_to == m.server_id
    assert [h.reply_to for h in await store.history(m.conversation, None, 10)] == [m.server_id, None]


async def test_sqlite_version_3_database_gets_the_action_columns(tmp_path: Path) -> None:
    path = tmp_path / "chatmq.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE messages (server_id TEXT PRIMARY KEY, client_id TEXT NOT NULL, sender TEXT NOT NULL,"
                     " recipient TEXT, group_id TEXT, conversation TEXT NOT NULL, body TEXT NOT NULL,"
                     " ts INTEGER NOT NULL, UNIQUE (sender, client_id))")
        conn.execute("INSERT INTO messages VALUES ('s1', 'c1', 'a', 'b', NULL, 'a:b', '{\"text\":\"old\"}', 1)")
        conn.execute("PRAGMA user_version=3")
        conn.commit()
    async with SQLiteStore(path) as store:
        [old] = await store.history("a:b", None, 10)
        assert (old.body, old.reply_to, old.edited_at, old.deleted) == ({"text": "old"}, None, None, False)
        await store.apply_actions([action("a", "edit", "s1", body=b'{"text":"new"}')])
        [new] = await store.history("a:b", None, 10)
        assert new.body == {"text": "new"}


async def test_an_actions_copy_for_the_senders_other_devices_is_marked_had_by_the_sending_device(
        store: Store) -> None:
    m = new_message("alice", to="bob")
    await store.accept_messages([m])
    edit = replace(action("alice", "edit", m.server_id, body=b'{"text": "e"}', to=["bob", "alice"]), device="phone")
    await store.apply_actions([edit])
    assert [i.item_id for i in await store.pending("alice", 0, 10)] == [edit.server_id]
    assert await store.device_has("alice", "phone", [edit.server_id]) == {edit.server_id}
    assert await store.device_has("alice", "laptop", [edit.server_id]) == set()
