"""The ``Store``'s search role (``SearchStore``) on every store in ``tests.unit.test_store.STORE_FACTORIES``:
only the caller's 1:1 messages and those of the groups given, every word, any case, newest first."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from chatmq.core import ids
from chatmq.services.store.base import Store, StoredMessage
from chatmq.services.store.sqlite import SQLiteStore, search
from tests.unit.test_store import make_store, new_message, store
from tests.unit.test_store_actions import action

__all__ = ["make_store", "store"]  # the fixtures, used by name below


async def test_search_finds_only_the_callers_conversations(store: Store) -> None:
    a, b, c = "ua", "ub", "uc"
    gid, other_gid = ids.group_id(), ids.group_id()
    to_b = new_message(a, to=b, body={"text": "Lunch at noon?"})
    from_b = new_message(b, to=a, body={"text": "lunch sounds good, noon it is"})
    theirs = new_message(b, to=c, body={"text": "lunch without a"})
    in_group = new_message(c, group=gid, recipients=[a, b], body={"text": "group lunch at noon"})
    elsewhere = new_message(c, group=other_gid, recipients=[b], body={"text": "secret lunch at noon"})
    no_text = new_message(a, to=b, body={"lunch": "noon"})
    await store.accept_messages([to_b, from_b, theirs, in_group])
    await store.accept_messages([elsewhere, no_text])

    found = await store.search_messages(a, [gid], ["lunch", "noon"], None, 10)
    assert [m.server_id for m in found] == [in_group.server_id, from_b.server_id, to_b.server_id]
    assert found[-1].body == {"text": "Lunch at noon?"}
    assert [m.server_id for m in await store.search_messages(a, [gid], ["LUNCH"], ids.conversation_key(a, b), 10)
            ] == [from_b.server_id, to_b.server_id]
    assert [m.server_id for m in await store.search_messages(a, [], ["lunch"], None, 1)] == [from_b.server_id]
    assert await store.search_messages(a, [gid], ["dinner"], None, 10) == []
    assert [m.server_id for m in await store.search_messages(c, [other_gid], ["secret"], None, 10)
            ] == [elsewhere.server_id]
    # what is stored after a search is found by the next one
    later = new_message(b, to=a, body={"text": "lunch moved to one"})
    await store.accept_messages([later])
    assert [m.server_id for m in await store.search_messages(a, [], ["moved"], None, 10)] == [later.server_id]


async def test_sqlite_indexes_what_was_stored_in_chunks_when_searching(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search, "CATCH_UP", 2)
    s = SQLiteStore(tmp_path / "db")
    async with s:
        batch = [new_message("ua", to="ub", body={"text": f"word{i} common"}) for i in range(5)]
        await s.import_messages([StoredMessage(m.server_id, m.client_id, m.sender, m.to, None, m.conversation,
                                               orjson.loads(m.body), m.ts) for m in batch])
        found = await s.search_messages("ub", [], ["common"], None, 10)
        assert [m.server_id for m in found] == [m.server_id for m in reversed(batch)]
        assert [m.server_id for m in await s.search_messages("ub", [], ["word3"], None, 10)] == [batch[3].server_id]


async def test_search_finds_an_edited_message_by_its_new_text_and_a_deleted_one_no_more(store: Store) -> None:
    a, b = "ua", "ub"
    indexed = new_message(a, to=b, body={"text": "meet at the harbour"})
    await store.accept_messages([indexed])
    assert [m.server_id for m in await store.search_messages(b, [], ["harbour"], None, 10)] == [indexed.server_id]
    fresh = new_message(a, to=b, body={"text": "bring the kite"})  # stored after the last search
    gone = new_message(a, to=b, body={"text": "harbour plans secret"})
    await store.accept_messages([fresh, gone])
    await store.apply_actions([action(a, "edit", indexed.server_id, body=b'{"text": "meet at the station"}'),
                               action(a, "edit", fresh.server_id, body=b'{"text": "bring the ball"}'),
                               action(a, "delete", gone.server_id)])

    assert await store.search_messages(b, [], ["harbour"], None, 10) == []
    assert await store.search_messages(b, [], ["kite"], None, 10) == []
    assert await store.search_messages(b, [], ["secret"], None, 10) == []
    [station] = await store.search_messages(b, [], ["station"], None, 10)
    assert (station.server_id, station.body, station.edited_at is not None) == (
        indexed.server_id, {"text": "meet at the station"}, True)
    assert [m.server_id for m in await store.search_messages(a, [], ["ball"], None, 10)] == [fresh.server_id]
    # an edit to a body without text leaves the message out of search
    await store.apply_actions([action(a, "edit", indexed.server_id, body=b'{"sticker": "station"}')])
    assert await store.search_messages(b, [], ["station"], None, 10) == []
